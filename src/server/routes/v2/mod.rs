//! The Open Inference Protocol (KServe V2, also Triton's and MLServer's) over
//! REST, beside the native API and served by the same model, scoring path
//! ([`score_batch`](crate::server::scoring::score_batch)) and metrics.
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
//! [`handlers`] answers the routes; [`types`] holds what travels (requests,
//! answers, metadata, the model's tensors); [`request`] reads and checks a
//! request (each output at most once); [`response`] writes the answer from
//! the class-indexed scores (and says how large it can be); [`binary`] is
//! the binary tensor data codec; [`repository`] is the model repository
//! extension (index, load, unload).

mod binary;
pub(crate) mod handlers;
pub(crate) mod repository;
mod request;
mod response;
mod types;

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use serde_json::Value;

use crate::server::error::ApiError;
use crate::server::state::AppState;
pub use binary::HEADER_LENGTH;
use handlers::{
    infer, live, model_metadata, model_ready, ready, server_metadata, version_infer,
    version_metadata, version_ready,
};
pub use types::{
    BinaryDataSize, InferParameters, RawParameters, V2ErrorBody, V2InferRequest, V2InferResponse,
    V2InputTensor, V2LiveResponse, V2ModelMetadata, V2ModelReadyResponse, V2OutputTensor,
    V2ReadyResponse, V2RequestedOutput, V2ServerMetadata, V2TensorMetadata,
};

/// A 400 answer: the request is not one this protocol can read.
fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// True for paths whose errors take the protocol's shape.
pub(crate) fn is_v2_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// The routes under admission control (inference and metadata), for the
/// route table in [`super::admitted_routes`].
pub(crate) fn admitted_routes() -> [(&'static str, MethodRouter<AppState>); 7] {
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
        ("/v2/repository/index", post(repository::index)),
        ("/v2/repository/models/{name}/load", post(repository::load)),
        (
            "/v2/repository/models/{name}/unload",
            post(repository::unload),
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
