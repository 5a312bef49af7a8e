//! `GET /health` (liveness) and `GET /ready` (readiness).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::server::error::ApiError;
use crate::server::state::AppState;

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok` while the process serves.
    pub status: String,
}

/// Readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyResponse {
    /// `ready`.
    pub status: String,
    /// Name of the gated model being served.
    pub model_name: String,
    /// Its version.
    pub model_version: String,
}

/// 503 `not_ready` once shutdown has begun, or while a required model is
/// not served.
pub(crate) fn check_ready(state: &AppState) -> Result<(), ApiError> {
    if !state.is_ready() {
        return Err(ApiError::unavailable(
            "not_ready",
            "the server is shutting down",
            5,
        ));
    }
    if !state.models.required_ready() {
        return Err(ApiError::unavailable(
            "not_ready",
            "a required model is not being served",
            5,
        ));
    }
    Ok(())
}

/// Liveness: 200 while the process serves.
#[utoipa::path(get, path = "/health", responses((status = 200, body = HealthResponse)))]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
    })
}

/// Readiness: 200 with the default model's version while it and every
/// model marked `required` are served; 503 once shutdown has begun.
#[utoipa::path(get, path = "/ready", responses(
    (status = 200, body = ReadyResponse),
    (status = 503, body = crate::server::error::ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<ReadyResponse>, ApiError> {
    check_ready(&state)?;
    let model = state.default_model()?;
    Ok(Json(ReadyResponse {
        status: "ready".into(),
        model_name: model.loaded.meta.model.name.clone(),
        model_version: model.loaded.meta.model.version.clone(),
    }))
}
