//! The handlers: health, metadata and inference.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use utoipa::openapi::RefOr;

use super::bad;
use super::request::decode;
use super::response::infer_response;
use super::types::{
    Output, V2ErrorBody, V2InferRequest, V2LiveResponse, V2ModelMetadata, V2ModelReadyResponse,
    V2ReadyResponse, V2ServerMetadata, V2TensorMetadata, INPUT,
};
use crate::server::error::ApiError;
use crate::server::loader::ServingModel;
use crate::server::scoring::score_batch;
use crate::server::state::AppState;

/// Handler results; errors are reshaped by [`super::protocol_error`].
type V2Result<T> = Result<T, ApiError>;

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, body = V2ServerMetadata)))]
pub async fn server_metadata() -> Json<V2ServerMetadata> {
    Json(V2ServerMetadata {
        name: "nbserve".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: vec!["binary_tensor_data".into(), "model_repository".into()],
    })
}

/// Server liveness.
#[utoipa::path(get, path = "/v2/health/live", tag = "v2", responses((status = 200, body = V2LiveResponse)))]
pub async fn live() -> Json<V2LiveResponse> {
    Json(V2LiveResponse { live: true })
}

use crate::server::routes::health::check_ready;

/// Server readiness: 503 once shutdown has begun, or while a required model
/// is not served (as `/ready`).
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2", responses(
    (status = 200, body = V2ReadyResponse),
    (status = 503, body = V2ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<V2ReadyResponse>, ApiError> {
    check_ready(&state)?;
    Ok(Json(V2ReadyResponse { ready: true }))
}

/// The model `name` (and `version`, when given) names: 404 for an unknown
/// model or version, 503 for a model not being served.
fn served_model(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<ServingModel>, ApiError> {
    let model = state.models.find(name)?.ready()?;
    let m = &model.loaded.meta.model;
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
    let entry = state.models.find(&name)?;
    served_model(&state, &name, version.as_deref())?;
    if !state.is_ready() {
        check_ready(&state)?;
    }
    Ok(Json(V2ModelReadyResponse {
        name: entry.name.to_string(),
        ready: true,
    }))
}

/// Model readiness.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2",
    params(("name" = String, Path, description = "Model name (as `/model` reports it)")),
    responses(
        (status = 200, body = V2ModelReadyResponse),
        (status = 404, description = "Unknown model", body = V2ErrorBody),
        (status = 503, description = "Shutting down, or the model is not being served", body = V2ErrorBody)))]
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
        (status = 503, description = "Shutting down, or the model is not being served", body = V2ErrorBody)))]
pub async fn version_ready(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> V2Result<Json<V2ModelReadyResponse>> {
    ready_answer(state, name, Some(version)).await
}

fn metadata_answer(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> V2Result<Json<V2ModelMetadata>> {
    let entry = state.models.find(name)?;
    let model = served_model(state, name, version)?;
    let meta = &model.loaded.meta;
    let tensor = |name: &str, datatype: &str, shape: Vec<i64>| V2TensorMetadata {
        name: name.into(),
        datatype: datatype.into(),
        shape,
    };
    Ok(Json(V2ModelMetadata {
        name: entry.name.to_string(),
        versions: vec![meta.model.version.clone()],
        platform: format!("nbserve_{}_nb", meta.training.model_kind().name()),
        inputs: vec![tensor(INPUT, "BYTES", vec![-1])],
        outputs: Output::ALL
            .into_iter()
            .map(|output| {
                let shape = match output {
                    Output::Label => vec![-1],
                    Output::Probabilities => vec![-1, meta.classes.len() as i64],
                };
                tensor(output.name(), output.datatype(), shape)
            })
            .collect(),
        classes: meta.classes.clone(),
    }))
}

/// Model metadata: tensors and the class order of `probabilities`.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2",
    params(("name" = String, Path, description = "Model name (as `/model` reports it)")),
    responses(
        (status = 200, body = V2ModelMetadata),
        (status = 404, description = "Unknown model", body = V2ErrorBody),
        (status = 503, description = "The model is not being served", body = V2ErrorBody)))]
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
        (status = 404, description = "Unknown model or version", body = V2ErrorBody),
        (status = 503, description = "The model is not being served", body = V2ErrorBody)))]
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
    let model = served_model(&state, &name, version.as_deref())?;
    let headers = req.headers().clone();
    let body = Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            bad("unreadable_body", "the request body could not be read")
        }
    })?;
    let request = decode(&headers, &body, state.settings.server.max_batch_size)?;
    drop(body);
    // The model checked is the one that scores, whatever lands meanwhile.
    let batch = score_batch(&state, model, request.texts).await?;
    Ok(infer_response(&batch, request.id, &request.outputs))
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
            .response(
                "503",
                error("Overloaded, or the model is not being served"),
            )
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
