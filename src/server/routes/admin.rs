//! `POST /admin/reload`: bearer-token protected model reload.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::server::auth::{check_bearer, Authorized, FailedAuthLog, TokenGuard};
use crate::server::error::ApiError;
use crate::server::extract::short;
use crate::server::repository::Why;
use crate::server::state::AppState;

/// Optional reload body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// A file inside the models directory; default: the file currently served.
    pub path: Option<String>,
    /// The model to reload (as `GET /models` lists it); default: the
    /// default model.
    pub model: Option<String>,
}

/// The model now being served.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadResponse {
    /// `reloaded`.
    pub status: String,
    /// The server's name for the model.
    pub model: String,
    /// Model name (the artifact's).
    pub name: String,
    /// Model version.
    pub version: String,
    /// Content checksum.
    pub sha256: String,
    /// F1 macro the gate judged.
    pub f1_macro: f64,
}

/// The token rule of `/admin/*`: off without `admin.token` (403); with it,
/// they need it (401, logged rate-limited).
pub struct AdminToken;

impl TokenGuard for AdminToken {
    fn check(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = state.settings.admin.token.as_deref() else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "admin endpoints are disabled: no admin token is configured",
            ));
        };
        check_bearer(headers, expected).inspect_err(|_| FAILED_LOGINS.record())
    }
}

/// Failed admin authentications, logged rate-limited.
static FAILED_LOGINS: FailedAuthLog = FailedAuthLog::new("admin");

/// Load a model's file again (or another file in the models directory),
/// validate and gate it; swap only on success. Other models are not touched.
#[utoipa::path(post, path = "/admin/reload", request_body(content = Option<ReloadRequest>),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ReloadResponse),
        (status = 401, body = crate::server::error::ErrorBody),
        (status = 403, body = crate::server::error::ErrorBody),
        (status = 404, description = "No such model: code model_not_found", body = crate::server::error::ErrorBody),
        (status = 422, description = "Invalid, rejected or unreadable model; the old model keeps serving", body = crate::server::error::ErrorBody),
    ))]
pub async fn reload(
    State(state): State<AppState>,
    _: Authorized<AdminToken>,
    body: Bytes,
) -> Result<Json<ReloadResponse>, ApiError> {
    // The body is optional, so it is parsed by hand rather than by AppJson.
    let req: ReloadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            // Capped like AppJson's messages: serde quotes unknown field names.
            let message = short(e.to_string());
            if e.is_data() {
                ApiError::unprocessable("invalid_request", message)
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
            }
        })?
    };
    let entry = match &req.model {
        Some(name) => state.models.find(name)?,
        None => Arc::clone(state.models.default_entry()),
    };
    let model = entry.name.to_string();
    let m = state.load_model(entry, req.path, Why::Reload).await?;
    Ok(Json(ReloadResponse {
        status: "reloaded".into(),
        model,
        name: m.loaded.meta.model.name.clone(),
        version: m.loaded.meta.model.version.clone(),
        sha256: m.loaded.meta.checksum.clone(),
        f1_macro: m.gate.f1_macro,
    }))
}
