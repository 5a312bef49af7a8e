//! The Open Inference Protocol (KServe V2, also Triton's and MLServer's) over
//! REST, beside the native API and served by the same model, scoring path
//! ([`predict::score_batch`]) and metrics.
//!
//! `POST /v2/models/{name}/infer` takes one input, `text` (`BYTES`, shape
//! `[N]`), and answers `label` (`BYTES`, `[N]`) and `probabilities` (`FP64`,
//! `[N, C]`, columns in the order of the model's `classes`, which the model
//! metadata lists). The prediction ids for `POST /feedback` come back in the
//! response `parameters.prediction_ids`, comma-separated (protocol parameters
//! are scalars). The binary tensor data extension is spoken both ways: a
//! request with an `Inference-Header-Content-Length` header carries its JSON
//! header first and raw tensor bytes after it (`BYTES` elements as a 4-byte
//! little-endian length and the bytes); outputs asked for with
//! `parameters.binary_data` (or the request's `binary_data_output`) come back
//! the same way. Errors are the protocol's `{"error": "..."}`
//! ([`protocol_error`] reshapes every error under `/v2`).
//!
//! [`types`] holds the request and answer as they travel, [`request`] reads
//! and checks a request (each output at most once), [`response`] writes the
//! answer (and says how large it can be).

mod request;
mod response;
mod types;

use std::collections::BTreeMap;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::predict::score_batch;
use crate::server::error::ApiError;
use crate::server::loader::ServingModel;
use crate::server::state::AppState;
use request::{bad, Output};
use response::infer_response;
pub use types::{
    RawParameters, V2InferRequest, V2InferResponse, V2InputTensor, V2OutputTensor,
    V2RequestedOutput,
};

/// Header giving the length of the JSON part of a binary-extension body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The one input tensor.
const INPUT: &str = "text";

/// Handler results; errors are reshaped by [`protocol_error`].
type V2Result<T> = Result<T, ApiError>;

/// True for paths whose errors take the protocol's shape.
pub(crate) fn is_v2_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// The routes under admission control (inference and metadata), for the
/// route table in [`super::admitted_routes`].
pub(crate) fn admitted_routes() -> [(&'static str, MethodRouter<AppState>); 4] {
    [
        ("/v2/models/{name}", get(model_metadata)),
        (
            "/v2/models/{name}/versions/{version}",
            get(version_metadata),
        ),
        ("/v2/models/{name}/infer", post(infer)),
        (
            "/v2/models/{name}/versions/{version}/infer",
            post(version_infer),
        ),
    ]
}

/// Health and server metadata, answered even at the concurrency limit like
/// `/health` and `/ready`.
pub(crate) fn health_routes() -> [(&'static str, MethodRouter<AppState>); 5] {
    [
        ("/v2", get(server_metadata)),
        ("/v2/health/live", get(live)),
        ("/v2/health/ready", get(ready)),
        ("/v2/models/{name}/ready", get(model_ready)),
        (
            "/v2/models/{name}/versions/{version}/ready",
            get(version_ready),
        ),
    ]
}

/// A protocol error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct V2ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// Rewrites an error answer of the app (`{"error": {"code", "message"}}`)
/// into the protocol's `{"error": "<message>"}`, keeping status and headers
/// (`Retry-After`, `Allow`).
pub(crate) async fn protocol_error(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    // Error bodies are a few hundred bytes; anything odd becomes the
    // status's generic message.
    let message = to_bytes(body, 64 * 1024)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| ApiError::from_status(parts.status).message);
    let body = serde_json::to_vec(&V2ErrorBody { error: message }).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// Server metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2ServerMetadata {
    /// `nbserve`.
    pub name: String,
    /// The server's version.
    pub version: String,
    /// Protocol extensions supported.
    pub extensions: Vec<String>,
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, body = V2ServerMetadata)))]
pub async fn server_metadata() -> Json<V2ServerMetadata> {
    Json(V2ServerMetadata {
        name: "nbserve".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: vec!["binary_tensor_data".into()],
    })
}

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2LiveResponse {
    /// Always true while the process serves.
    pub live: bool,
}

/// Readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2ReadyResponse {
    /// True while the server takes traffic.
    pub ready: bool,
}

/// Server liveness.
#[utoipa::path(get, path = "/v2/health/live", tag = "v2", responses((status = 200, body = V2LiveResponse)))]
pub async fn live() -> Json<V2LiveResponse> {
    Json(V2LiveResponse { live: true })
}

fn check_ready(state: &AppState) -> Result<(), ApiError> {
    if state.is_ready() {
        Ok(())
    } else {
        Err(ApiError::unavailable(
            "not_ready",
            "the server is shutting down",
            5,
        ))
    }
}

/// Server readiness: 503 once shutdown has begun (as `/ready`).
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2", responses(
    (status = 200, body = V2ReadyResponse),
    (status = 503, body = V2ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<V2ReadyResponse>, ApiError> {
    check_ready(&state)?;
    Ok(Json(V2ReadyResponse { ready: true }))
}

/// Model readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2ModelReadyResponse {
    /// The model's name.
    pub name: String,
    /// True while it is served.
    pub ready: bool,
}

/// The served model if `name` (and `version`, when given) name it; else 404.
fn served_model(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<std::sync::Arc<ServingModel>, ApiError> {
    let model = state.model.load_full();
    let m = &model.loaded.meta.model;
    if m.name != name {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_model",
            format!("no model of that name; this server serves '{}'", m.name),
        ));
    }
    if version.is_some_and(|v| v != m.version) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_version",
            format!("no such version; this server serves '{}'", m.version),
        ));
    }
    Ok(model)
}

async fn ready_answer(
    state: AppState,
    name: String,
    version: Option<String>,
) -> V2Result<Json<V2ModelReadyResponse>> {
    let model = served_model(&state, &name, version.as_deref())?;
    check_ready(&state)?;
    Ok(Json(V2ModelReadyResponse {
        name: model.loaded.meta.model.name.clone(),
        ready: true,
    }))
}

/// Model readiness.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2",
    params(("name" = String, Path, description = "Model name (as `/model` reports it)")),
    responses(
        (status = 200, body = V2ModelReadyResponse),
        (status = 404, description = "Unknown model", body = V2ErrorBody),
        (status = 503, description = "Shutting down", body = V2ErrorBody)))]
pub async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> V2Result<Json<V2ModelReadyResponse>> {
    ready_answer(state, name, None).await
}

/// Model version readiness.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "v2",
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Model version")),
    responses(
        (status = 200, body = V2ModelReadyResponse),
        (status = 404, description = "Unknown model or version", body = V2ErrorBody),
        (status = 503, description = "Shutting down", body = V2ErrorBody)))]
pub async fn version_ready(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> V2Result<Json<V2ModelReadyResponse>> {
    ready_answer(state, name, Some(version)).await
}

/// A tensor's name, datatype and shape (-1: any size).
#[derive(Debug, Serialize, ToSchema)]
pub struct V2TensorMetadata {
    /// Tensor name.
    pub name: String,
    /// Protocol datatype.
    pub datatype: String,
    /// Shape; -1 for a variable dimension.
    pub shape: Vec<i64>,
}

/// Model metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2ModelMetadata {
    /// Model name.
    pub name: String,
    /// The one version served.
    pub versions: Vec<String>,
    /// `nbserve_bernoulli_nb`.
    pub platform: String,
    /// The input: `text`, `BYTES`, `[-1]`.
    pub inputs: Vec<V2TensorMetadata>,
    /// The outputs: `label` and `probabilities`.
    pub outputs: Vec<V2TensorMetadata>,
    /// The class labels: the columns of `probabilities`, in order.
    pub classes: Vec<String>,
}

fn metadata_answer(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> V2Result<Json<V2ModelMetadata>> {
    let model = served_model(state, name, version)?;
    let meta = &model.loaded.meta;
    let tensor = |name: &str, datatype: &str, shape: Vec<i64>| V2TensorMetadata {
        name: name.into(),
        datatype: datatype.into(),
        shape,
    };
    Ok(Json(V2ModelMetadata {
        name: meta.model.name.clone(),
        versions: vec![meta.model.version.clone()],
        platform: "nbserve_bernoulli_nb".into(),
        inputs: vec![tensor(INPUT, "BYTES", vec![-1])],
        outputs: vec![
            tensor(Output::Label.name(), "BYTES", vec![-1]),
            tensor(
                Output::Probabilities.name(),
                "FP64",
                vec![-1, meta.classes.len() as i64],
            ),
        ],
        classes: meta.classes.clone(),
    }))
}

/// Model metadata: tensors and the class order of `probabilities`.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2",
    params(("name" = String, Path, description = "Model name (as `/model` reports it)")),
    responses(
        (status = 200, body = V2ModelMetadata),
        (status = 404, description = "Unknown model", body = V2ErrorBody)))]
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> V2Result<Json<V2ModelMetadata>> {
    metadata_answer(&state, &name, None)
}

/// Model version metadata.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "v2",
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Model version")),
    responses(
        (status = 200, body = V2ModelMetadata),
        (status = 404, description = "Unknown model or version", body = V2ErrorBody)))]
pub async fn version_metadata(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> V2Result<Json<V2ModelMetadata>> {
    metadata_answer(&state, &name, Some(&version))
}

async fn infer_answer(
    state: AppState,
    name: String,
    version: Option<String>,
    req: Request,
) -> V2Result<Response> {
    served_model(&state, &name, version.as_deref())?;
    let headers = req.headers().clone();
    let body = Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            bad("unreadable_body", "the request body could not be read")
        }
    })?;
    let request = request::decode(&headers, &body, state.settings.server.max_batch_size)?;
    drop(body);
    let (model, predictions) = score_batch(&state, request.texts).await?;
    // The model that scored may be newer than the one the name was checked
    // against (a reload landed): answer with the one that scored.
    Ok(infer_response(
        &model,
        request.id,
        &request.outputs,
        &predictions,
    ))
}

/// The answers of the two `infer` routes, for the OpenAPI document: one
/// list for both (the schemas it names are registered in [`crate::server::openapi::ApiDoc`]).
pub struct InferAnswers;

impl utoipa::IntoResponses for InferAnswers {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, ResponsesBuilder};
        let json = |schema: &str| {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build()
        };
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", json("V2ErrorBody"))
                .build()
        };
        let binary = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)));
        let outputs = ResponseBuilder::new()
            .description(
                "Outputs: JSON, or with binary outputs asked for, application/octet-stream \
                 with Inference-Header-Content-Length (JSON header, then the tensor data)",
            )
            .content("application/json", json("V2InferResponse"))
            .content(
                "application/octet-stream",
                ContentBuilder::new().schema(Some(binary)).build(),
            )
            .build();
        let responses = ResponsesBuilder::new()
            .response("200", outputs)
            .response(
                "400",
                error("Malformed request, wrong datatype or shape, or an output unknown or asked for more than once"),
            )
            .response("404", error("Unknown model or version"))
            .response("413", error("Body too large"))
            .response(
                "422",
                error("Over the /predict/batch limits, or an empty text"),
            )
            .response("503", error("Overloaded"))
            .build();
        responses.responses
    }
}

/// Inference. JSON, or the binary tensor data extension: with an
/// `Inference-Header-Content-Length` header the body is that many bytes of
/// JSON header, then the input's raw data.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "v2",
    params(("name" = String, Path, description = "Model name (as `/model` reports it)")),
    request_body(content = V2InferRequest, content_type = "application/json"),
    responses(InferAnswers))]
pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> V2Result<Response> {
    infer_answer(state, name, None, req).await
}

/// Inference on a named version (see `/v2/models/{name}/infer`).
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "v2",
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Model version")),
    request_body(content = V2InferRequest, content_type = "application/json"),
    responses(InferAnswers))]
pub async fn version_infer(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    req: Request,
) -> V2Result<Response> {
    infer_answer(state, name, Some(version), req).await
}
