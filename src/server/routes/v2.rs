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

use std::collections::BTreeMap;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::predict::{score_batch, PredictResponse};
use crate::server::error::ApiError;
use crate::server::loader::ServingModel;
use crate::server::state::AppState;

/// Header giving the length of the JSON part of a binary-extension body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The one input tensor.
const INPUT: &str = "text";
/// Output tensor names, in the default order.
const LABEL: &str = "label";
const PROBABILITIES: &str = "probabilities";

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
            tensor(LABEL, "BYTES", vec![-1]),
            tensor(PROBABILITIES, "FP64", vec![-1, meta.classes.len() as i64]),
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

/// An input tensor.
#[derive(Debug, Deserialize, ToSchema)]
pub struct V2InputTensor {
    /// Must be `text`.
    pub name: String,
    /// `[N]`.
    pub shape: Vec<i64>,
    /// Must be `BYTES`.
    pub datatype: String,
    /// `binary_data_size` when the data follows the JSON header.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// The texts (flat or nested, row-major) unless sent as binary.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub data: Option<Value>,
}

/// A requested output.
#[derive(Debug, Deserialize, ToSchema)]
pub struct V2RequestedOutput {
    /// `label` or `probabilities`.
    pub name: String,
    /// `binary_data: true` to get it as binary tensor data.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
}

/// An inference request (the JSON header of a binary-extension body).
#[derive(Debug, Deserialize, ToSchema)]
pub struct V2InferRequest {
    /// Echoed in the response.
    #[serde(default)]
    pub id: Option<String>,
    /// `binary_data_output: true` for every output as binary tensor data.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// Exactly one: `text`.
    pub inputs: Vec<V2InputTensor>,
    /// Outputs to return (default: all).
    #[serde(default)]
    pub outputs: Option<Vec<V2RequestedOutput>>,
}

/// An output tensor.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2OutputTensor {
    /// `label` or `probabilities`.
    pub name: String,
    /// `BYTES` or `FP64`.
    pub datatype: String,
    /// `[N]` or `[N, C]`.
    pub shape: Vec<usize>,
    /// `binary_data_size` when the data follows the JSON header.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// The values, row-major, unless sent as binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<Value>,
}

/// An inference response (the JSON header of a binary-extension body).
#[derive(Debug, Serialize, ToSchema)]
pub struct V2InferResponse {
    /// The served model's name.
    pub model_name: String,
    /// Its version.
    pub model_version: String,
    /// The request's `id`, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `prediction_ids`: the ids for `POST /feedback`, comma-separated, in order.
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// The outputs asked for, in the order asked.
    pub outputs: Vec<V2OutputTensor>,
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// A boolean parameter; anything but a boolean is an error.
fn flag(params: Option<&Map<String, Value>>, key: &str) -> Result<Option<bool>, ApiError> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(
            "invalid_parameter",
            format!("parameter '{key}' must be a boolean"),
        )),
    }
}

/// Splits a body into its JSON header and the binary data after it.
fn split_body<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let len = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| {
            bad(
                "invalid_header",
                "Inference-Header-Content-Length must be a byte count",
            )
        })?;
    if len > body.len() {
        return Err(bad(
            "invalid_header",
            format!(
                "Inference-Header-Content-Length is {len}; the body has {} bytes",
                body.len()
            ),
        ));
    }
    Ok(body.split_at(len))
}

/// Decodes binary `BYTES` elements: a 4-byte little-endian length, then the bytes.
fn decode_bytes_elements(mut raw: &[u8]) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let (len, rest) = raw
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("invalid_binary_data", "a BYTES element is cut short"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(bad("invalid_binary_data", "a BYTES element is cut short"));
        }
        let (element, rest) = rest.split_at(len);
        let text = std::str::from_utf8(element).map_err(|_| {
            bad(
                "invalid_binary_data",
                format!("text element {} is not UTF-8", out.len()),
            )
        })?;
        out.push(text.to_owned());
        raw = rest;
    }
    Ok(out)
}

/// Collects the strings of JSON tensor data, flat or nested (row-major).
fn collect_strings(value: Value, out: &mut Vec<String>) -> Result<(), ApiError> {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => {
            for item in items {
                collect_strings(item, out)?;
            }
        }
        _ => {
            return Err(bad(
                "invalid_data",
                "the text tensor holds something other than strings",
            ))
        }
    }
    Ok(())
}

/// The texts of the one input tensor, from JSON data or the binary part.
fn input_texts(mut inputs: Vec<V2InputTensor>, binary: &[u8]) -> Result<Vec<String>, ApiError> {
    if inputs.len() != 1 || inputs[0].name != INPUT {
        return Err(bad(
            "invalid_inputs",
            format!("expected exactly one input, '{INPUT}'"),
        ));
    }
    let input = inputs.remove(0);
    if input.datatype != "BYTES" {
        return Err(bad(
            "wrong_datatype",
            format!(
                "input '{INPUT}' must have datatype BYTES, not {}",
                crate::server::extract::short(input.datatype)
            ),
        ));
    }
    let n = match input.shape.as_slice() {
        [n] if *n >= 0 => *n as usize,
        _ => {
            return Err(bad(
                "invalid_shape",
                format!("input '{INPUT}' must have shape [N]"),
            ))
        }
    };
    let binary_size = match input
        .parameters
        .as_ref()
        .and_then(|p| p.get("binary_data_size"))
    {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad("invalid_parameter", "binary_data_size must be a byte count"))?,
        ),
    };
    let texts = match (binary_size, input.data) {
        (Some(size), None) => {
            if size as usize != binary.len() {
                return Err(bad(
                    "invalid_binary_data",
                    format!(
                        "binary_data_size is {size}; {} bytes follow the header",
                        binary.len()
                    ),
                ));
            }
            decode_bytes_elements(binary)?
        }
        (None, Some(data)) if binary.is_empty() => {
            let mut texts = Vec::new();
            collect_strings(data, &mut texts)?;
            texts
        }
        _ => {
            return Err(bad(
                "invalid_data",
                "send the texts either as JSON data or as binary data with binary_data_size",
            ))
        }
    };
    if texts.len() != n {
        return Err(bad(
            "invalid_shape",
            format!("shape [{n}] but {} texts", texts.len()),
        ));
    }
    Ok(texts)
}

/// Which outputs to send, in order, and whether each goes as binary data.
fn requested_outputs(req: &V2InferRequest) -> Result<Vec<(&'static str, bool)>, ApiError> {
    let all_binary = flag(req.parameters.as_ref(), "binary_data_output")?.unwrap_or(false);
    let Some(outputs) = &req.outputs else {
        return Ok(vec![(LABEL, all_binary), (PROBABILITIES, all_binary)]);
    };
    outputs
        .iter()
        .map(|o| {
            let name = match o.name.as_str() {
                LABEL => LABEL,
                PROBABILITIES => PROBABILITIES,
                _ => {
                    return Err(bad(
                        "unknown_output",
                        format!("outputs are '{LABEL}' and '{PROBABILITIES}'"),
                    ))
                }
            };
            let binary = flag(o.parameters.as_ref(), "binary_data")?.unwrap_or(all_binary);
            Ok((name, binary))
        })
        .collect()
}

/// Encodes an output's values as binary tensor data.
fn encode_binary(name: &str, predictions: &[PredictResponse], classes: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in predictions {
        if name == LABEL {
            out.extend_from_slice(&(p.label.len() as u32).to_le_bytes());
            out.extend_from_slice(p.label.as_bytes());
        } else {
            for c in classes {
                out.extend_from_slice(&probability(p, c).to_le_bytes());
            }
        }
    }
    out
}

fn probability(p: &PredictResponse, class: &str) -> f64 {
    p.probabilities.get(class).copied().unwrap_or(0.0)
}

/// Builds the answer: a JSON body, or a JSON header and binary data after it.
fn infer_response(
    model: &ServingModel,
    id: Option<String>,
    outputs: &[(&'static str, bool)],
    predictions: &[PredictResponse],
) -> Response {
    let classes = &model.loaded.meta.classes;
    let n = predictions.len();
    let mut binary = Vec::new();
    let tensors = outputs
        .iter()
        .map(|&(name, as_binary)| {
            let (datatype, shape) = if name == LABEL {
                ("BYTES", vec![n])
            } else {
                ("FP64", vec![n, classes.len()])
            };
            let (parameters, data) = if as_binary {
                let bytes = encode_binary(name, predictions, classes);
                let mut p = Map::new();
                p.insert("binary_data_size".into(), bytes.len().into());
                binary.extend_from_slice(&bytes);
                (Some(p), None)
            } else if name == LABEL {
                (
                    None,
                    Some(
                        predictions
                            .iter()
                            .map(|p| Value::from(p.label.clone()))
                            .collect(),
                    ),
                )
            } else {
                let values = predictions
                    .iter()
                    .flat_map(|p| classes.iter().map(|c| Value::from(probability(p, c))));
                (None, Some(values.collect()))
            };
            V2OutputTensor {
                name: name.into(),
                datatype: datatype.into(),
                shape,
                parameters,
                data,
            }
        })
        .collect();
    let ids: Vec<&str> = predictions
        .iter()
        .map(|p| p.prediction_id.as_str())
        .collect();
    let mut parameters = Map::new();
    parameters.insert("prediction_ids".into(), ids.join(",").into());
    let answer = V2InferResponse {
        model_name: model.loaded.meta.model.name.clone(),
        model_version: model.loaded.meta.model.version.clone(),
        id,
        parameters,
        outputs: tensors,
    };
    let mut body = serde_json::to_vec(&answer).unwrap_or_default();
    if binary.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    let header_len = body.len();
    body.extend_from_slice(&binary);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                HeaderName::from_static(HEADER_LENGTH),
                header_len.to_string(),
            ),
        ],
        body,
    )
        .into_response()
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
    let (json, binary) = split_body(&headers, &body)?;
    // serde's derived structs also accept an array of their fields in order.
    if json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(bad(
            "invalid_json",
            "the request header must be a JSON object",
        ));
    }
    let request: V2InferRequest = serde_json::from_slice(json)
        .map_err(|e| bad("invalid_json", crate::server::extract::short(e.to_string())))?;
    let outputs = requested_outputs(&request)?;
    let texts = input_texts(request.inputs, binary)?;
    let (model, predictions) = score_batch(&state, texts).await?;
    // The model that scored may be newer than the one the name was checked
    // against (a reload landed): answer with the one that scored.
    Ok(infer_response(&model, request.id, &outputs, &predictions))
}

/// The answers of the two `infer` routes, for the OpenAPI document: one
/// list for both (the schemas it names are registered in [`super::ApiDoc`]).
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
            .response("400", error("Malformed request, wrong datatype or shape"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(texts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for t in texts {
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        out
    }

    #[test]
    fn bytes_elements_round_trip_and_reject_truncation() {
        let raw = encode(&["hello", "", "wörld"]);
        assert_eq!(
            decode_bytes_elements(&raw).unwrap(),
            vec!["hello", "", "wörld"]
        );
        for cut in 1..raw.len() {
            let ok = decode_bytes_elements(&raw[..cut]);
            // Only cuts at element boundaries decode.
            assert_eq!(ok.is_ok(), [9, 13].contains(&cut), "cut at {cut}");
        }
        assert!(decode_bytes_elements(&[1, 0, 0, 0, 0xff]).is_err());
    }

    #[test]
    fn nested_json_data_flattens_row_major() {
        let mut out = Vec::new();
        collect_strings(serde_json::json!([["a", "b"], ["c"]]), &mut out).unwrap();
        assert_eq!(out, vec!["a", "b", "c"]);
        assert!(collect_strings(serde_json::json!([1]), &mut Vec::new()).is_err());
    }
}
