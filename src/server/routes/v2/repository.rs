//! The model repository extension (Triton's `model_repository`, which
//! tritonclient's `get_model_repository_index`, `load_model` and
//! `unload_model` speak), behind the admin token like `/admin/reload`:
//!
//! - `POST /v2/repository/index`: every model, with its version, state
//!   (`READY`, `LOADING`, `UNAVAILABLE`) and reason; artifacts of
//!   `model.repository` not loaded yet are listed `UNAVAILABLE` (at most
//!   as many as `models.max_count` leaves room for);
//! - `POST /v2/repository/models/{name}/load`: loads the model, or reloads
//!   it from its source when it is loaded (the gate, the memory budget and
//!   the model's lock as every load); a new artifact of `model.repository`
//!   becomes a model;
//! - `POST /v2/repository/models/{name}/unload`: stops serving it; refused
//!   (409) for the default model and models marked `required`.
//!
//! Bodies are optional JSON objects (tritonclient sends none, `{}` or
//! `{"parameters": {...}}`); a load that asks for a model configuration or
//! files of its own is refused: models come from the repository only.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::bad;
use crate::server::auth::Authorized;
use crate::server::error::ApiError;
use crate::server::extract::short;
use crate::server::poll::follow_source;
use crate::server::repository::{ModelEntry, ModelState, Why};
use crate::server::routes::admin::AdminToken;
use crate::server::state::AppState;

/// `POST /v2/repository/index`'s optional body.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct V2IndexRequest {
    /// Only the models ready to serve.
    #[serde(default)]
    pub ready: bool,
}

/// One model of the repository index.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2IndexEntry {
    /// The server's name for it.
    pub name: String,
    /// The served version (absent when not served).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `READY`, `LOADING` or `UNAVAILABLE`.
    pub state: String,
    /// Why it is not ready (or why its last reload was refused).
    pub reason: String,
}

/// A load or unload request's optional body.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct V2RepositoryRequest {
    /// Load: none supported (a `config` or files are refused). Unload:
    /// `unload_dependents` is accepted and has nothing to act on.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
}

/// An optional JSON body: empty (or whitespace) is the default.
fn optional_body<T: Default + serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        let message = short(e.to_string());
        if e.is_data() {
            ApiError::unprocessable("invalid_request", message)
        } else {
            bad("invalid_json", message)
        }
    })
}

fn index_entry(entry: &ModelEntry) -> V2IndexEntry {
    let status = entry.status();
    V2IndexEntry {
        name: entry.name.to_string(),
        version: entry.serving().map(|m| m.loaded.meta.model.version.clone()),
        state: status.state.v2().into(),
        reason: status.reason,
    }
}

/// The models of the repository, with their state.
#[utoipa::path(post, path = "/v2/repository/index", tag = "v2",
    request_body(content = Option<V2IndexRequest>, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<V2IndexEntry>),
        (status = 401, description = "Missing or wrong admin token", body = super::V2ErrorBody),
        (status = 403, description = "No admin token configured", body = super::V2ErrorBody),
        (status = 422, description = "A body that is not the index request", body = super::V2ErrorBody)))]
pub async fn index(
    State(state): State<AppState>,
    _: Authorized<AdminToken>,
    body: Bytes,
) -> Result<Json<Vec<V2IndexEntry>>, ApiError> {
    let req: V2IndexRequest = optional_body(&body)?;
    let mut rows: Vec<V2IndexEntry> = state
        .models
        .entries()
        .iter()
        .map(|e| index_entry(e))
        .collect();
    rows.extend(
        state
            .models
            .undiscovered()
            .into_iter()
            .map(|name| V2IndexEntry {
                name,
                version: None,
                state: ModelState::Unavailable.v2().into(),
                reason: "not loaded".into(),
            }),
    );
    if req.ready {
        rows.retain(|r| r.state == ModelState::Ready.v2());
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(rows))
}

/// Load (or reload) a model of the repository.
#[utoipa::path(post, path = "/v2/repository/models/{name}/load", tag = "v2",
    params(("name" = String, Path, description = "Model name (as the index lists it)")),
    request_body(content = Option<V2RepositoryRequest>, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Loaded: the model is served"),
        (status = 400, description = "A model configuration or files asked for", body = super::V2ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = super::V2ErrorBody),
        (status = 403, description = "No admin token configured", body = super::V2ErrorBody),
        (status = 404, description = "No such model in the repository", body = super::V2ErrorBody),
        (status = 409, description = "models.max_count models already", body = super::V2ErrorBody),
        (status = 422, description = "Invalid, rejected by its gate, or over models.max_total_bytes; a served version keeps serving", body = super::V2ErrorBody),
        (status = 503, description = "The registry did not answer", body = super::V2ErrorBody)))]
pub async fn load(
    State(state): State<AppState>,
    _: Authorized<AdminToken>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let req: V2RepositoryRequest = optional_body(&body)?;
    if req.parameters.is_some_and(|p| !p.is_empty()) {
        return Err(bad(
            "unsupported_parameters",
            "load takes no parameters: models come from the repository, not from the request",
        ));
    }
    let known = state.models.get(&name).is_some();
    let entry = match state.models.get_or_discover(&name) {
        Some(found) => found?,
        None => return Err(state.models.not_found()),
    };
    if !known {
        discovered(&state, &entry);
    }
    state.load_model(entry, None, Why::Reload).await?;
    Ok(StatusCode::OK)
}

/// A model found in `model.repository` by a load: the metrics' names, and
/// its poller.
fn discovered(state: &AppState, entry: &Arc<ModelEntry>) {
    state.models_changed();
    state.metrics.set_model_state(&entry.name, "unavailable");
    let secs = entry.spec.poll_interval_secs;
    if secs > 0 {
        tokio::spawn(follow_source(
            state.clone(),
            Arc::clone(entry),
            Duration::from_secs(secs),
        ));
    }
}

/// Stop serving a model (not the default model, nor a required one).
#[utoipa::path(post, path = "/v2/repository/models/{name}/unload", tag = "v2",
    params(("name" = String, Path, description = "Model name (as the index lists it)")),
    request_body(content = Option<V2RepositoryRequest>, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Unloaded (or not loaded)"),
        (status = 401, description = "Missing or wrong admin token", body = super::V2ErrorBody),
        (status = 403, description = "No admin token configured", body = super::V2ErrorBody),
        (status = 404, description = "No such model", body = super::V2ErrorBody),
        (status = 409, description = "The default model, or a model marked required", body = super::V2ErrorBody),
        (status = 422, description = "A body that is not an unload request", body = super::V2ErrorBody)))]
pub async fn unload(
    State(state): State<AppState>,
    _: Authorized<AdminToken>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let _: V2RepositoryRequest = optional_body(&body)?;
    let entry = state.models.find(&name)?;
    state.unload_model(entry).await?;
    Ok(StatusCode::OK)
}
