//! `POST /admin/reload`: bearer-token protected model reload.

use std::path::{Path, PathBuf};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::server::error::ApiError;
use crate::server::extract::short;
use crate::server::state::AppState;

/// Optional reload body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// A file inside the models directory; default: the file currently served.
    pub path: Option<String>,
}

/// The model now being served.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadResponse {
    /// `reloaded`.
    pub status: String,
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// Content checksum.
    pub sha256: String,
    /// F1 macro the gate judged.
    pub f1_macro: f64,
}

/// Checks `Authorization: Bearer <token>` in constant time, length included:
/// `ct_eq` on slices returns early when lengths differ, so both sides are
/// hashed to 32 bytes first.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.settings.admin.token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "admin endpoints are disabled: no admin token is configured",
        ));
    };
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let digest = |s: &str| sha2::Sha256::digest(s.as_bytes());
    if bool::from(digest(given).ct_eq(&digest(expected))) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// Resolves `requested` inside `dir`, refusing anything that escapes it
/// (`..`, absolute paths elsewhere, symlinks pointing out).
pub fn confine(dir: &Path, requested: &str) -> Result<PathBuf, ApiError> {
    let bad = |m: &str| ApiError::unprocessable("invalid_model_path", m.to_owned());
    if requested.is_empty() || requested.contains('\0') {
        return Err(bad(
            "path must name a model file inside the models directory",
        ));
    }
    let root = dir
        .canonicalize()
        .map_err(|_| bad("the models directory is not available"))?;
    let candidate = root
        .join(requested)
        .canonicalize()
        .map_err(|_| bad("no such model file in the models directory"))?;
    if !candidate.starts_with(&root) || !candidate.is_file() {
        return Err(bad(
            "path must name a model file inside the models directory",
        ));
    }
    Ok(candidate)
}

/// Load the model file again (or another file in the models directory),
/// validate and gate it; swap only on success.
#[utoipa::path(post, path = "/admin/reload", request_body(content = Option<ReloadRequest>),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ReloadResponse),
        (status = 401, body = crate::server::error::ErrorBody),
        (status = 403, body = crate::server::error::ErrorBody),
        (status = 422, description = "Invalid, rejected or unreadable model; the old model keeps serving", body = crate::server::error::ErrorBody),
    ))]
pub async fn reload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReloadResponse>, ApiError> {
    authorize(&state, &headers)?;
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
    let path = req
        .path
        .as_deref()
        .map(|p| confine(&state.settings.model.dir, p))
        .transpose()
        // A refused path is a failed reload too: the alert must see it.
        .inspect_err(|_| state.metrics.count_reload(false))?;
    let m = state.reload(path).await?;
    Ok(Json(ReloadResponse {
        status: "reloaded".into(),
        name: m.loaded.meta.model.name.clone(),
        version: m.loaded.meta.model.version.clone(),
        sha256: m.loaded.meta.checksum.clone(),
        f1_macro: m.gate.f1_macro,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confine_accepts_inside_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir(&models).unwrap();
        std::fs::write(models.join("a.json"), "{}").unwrap();
        std::fs::write(dir.path().join("secret.json"), "{}").unwrap();
        assert!(confine(&models, "a.json").is_ok());
        for bad in [
            "../secret.json",
            "/etc/passwd",
            "",
            "nope.json",
            ".",
            "a.json\0",
        ] {
            let e = confine(&models, bad).unwrap_err();
            assert_eq!(e.code, "invalid_model_path", "{bad}");
            assert!(!e.message.contains(dir.path().to_str().unwrap()));
        }
    }
}
