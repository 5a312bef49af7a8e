//! `POST /admin/challenger/promote`: the challenger replaces the served
//! model, through the rules `retrain` promotes by: the serving gate
//! ([`gate::load_gated`]: size, validity, memory, `gate.min_f1_macro` on
//! `gate.holdout_path`) and the no-regression check against the model in
//! service on the same holdout; then kept in `model.dir/versions` (so
//! `nbserve rollback` brings the old one back) and swapped in by a reload.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gate::{self, ServingRule};
use crate::retraining::judge::no_regression;
use crate::retraining::read_model_file;
use crate::retraining::store::{self, Keep, Store};
use crate::server::auth::Authorized;
use crate::server::challenger::ChallengerError;
use crate::server::error::ApiError;
use crate::server::routes::admin::AdminToken;
use crate::server::state::AppState;

/// Kept versions after a promotion (as `retrain --keep`'s default).
const KEEP: usize = 5;

/// How far the challenger's holdout F1 macro may fall below the served
/// model's.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// Largest allowed drop in F1 macro (default 0: no regression).
    #[serde(default)]
    pub max_regression: f64,
}

/// The promoted model.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromoteResponse {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `sha256:<hex>` of its artifact.
    pub checksum: String,
    /// Its F1 macro on the holdout.
    pub f1_macro: f64,
    /// The replaced model's.
    pub replaced_f1_macro: f64,
    /// Its kept file, relative to `model.dir`.
    pub kept_file: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// Promote the challenger: gated, kept, swapped in.
#[utoipa::path(post, path = "/admin/challenger/promote", request_body(content = Option<PromoteRequest>),
    security(("bearer" = [])),
    responses(
    (status = 200, body = PromoteResponse),
    (status = 401, body = crate::server::error::ErrorBody),
    (status = 403, body = crate::server::error::ErrorBody),
    (status = 404, description = "no_challenger: nothing learned on the served model", body = crate::server::error::ErrorBody),
    (status = 409, description = "holdout_required, not_a_file (model.path names the registry), regression (worse than the served model on the holdout), or store_busy", body = crate::server::error::ErrorBody),
    (status = 422, description = "gate_rejected: the servers would not serve it", body = crate::server::error::ErrorBody),
))]
pub async fn promote(
    State(state): State<AppState>,
    _: Authorized<AdminToken>,
    body: axum::body::Bytes,
) -> Result<Json<PromoteResponse>, ApiError> {
    // The body is optional, as /admin/reload's.
    let req: PromoteRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PromoteRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            ApiError::unprocessable("invalid_request", "expected {\"max_regression\": number}")
        })?
    };
    let max_regression = req.max_regression;
    if !max_regression.is_finite() || !(0.0..=1.0).contains(&max_regression) {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "max_regression must be within [0, 1]",
        ));
    }
    promote_challenger(&state, max_regression, Trigger::Manual)
        .await
        .map(Json)
}

/// Who asked for a promotion (the `trigger` of
/// `nbserve_challenger_promotions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `POST /admin/challenger/promote`.
    Manual,
    /// `learning.auto_promote`.
    Auto,
}

/// Promotes the challenger of the served model, allowing its holdout F1
/// macro `max_regression` below the served model's: the one path every
/// trigger takes; its outcome is counted.
pub async fn promote_challenger(
    state: &AppState,
    max_regression: f64,
    trigger: Trigger,
) -> Result<PromoteResponse, ApiError> {
    let result = attempt(state, max_regression).await;
    let outcome = match &result {
        Ok(_) => "promoted",
        Err(e) if e.status.is_server_error() => "failed",
        Err(e) if matches!(e.code, "gate_rejected" | "regression") => e.code,
        Err(_) => "refused",
    };
    let trigger_label = match trigger {
        Trigger::Manual => "manual",
        Trigger::Auto => "auto",
    };
    state
        .metrics
        .challenger_promotions
        .with_label_values(&[trigger_label, outcome])
        .inc();
    result
}

/// The promotion itself: gated, kept, swapped in.
async fn attempt(state: &AppState, max_regression: f64) -> Result<PromoteResponse, ApiError> {
    let champion = state.default_model()?;
    state
        .challenger
        .restore(&champion, &state.settings.learning)
        .await;
    let learner = state.challenger.learner(&champion).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_challenger",
            "nothing was learned on the served model yet",
        )
    })?;
    let Some(path) = champion.source.file().map(ToOwned::to_owned) else {
        return Err(refused(
            "not_a_file",
            "model.path names the registry: register the challenger's artifact and move the alias",
        ));
    };
    let Some(holdout) = state.settings.gate.holdout_path.clone() else {
        return Err(refused(
            "holdout_required",
            "promotion compares both models on gate.holdout_path, which is not set",
        ));
    };
    let settings = state.settings.clone();
    let replaced_f1 = champion.gate.f1_macro;
    let (meta_name, meta_version) = (
        champion.loaded.meta.model.name.clone(),
        champion.loaded.meta.model.version.clone(),
    );
    let done = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let test = crate::dataset::Dataset::holdout(&holdout).map_err(|e| {
            tracing::warn!(error = %e, "challenger promotion: holdout unreadable");
            ApiError::unprocessable("holdout_unavailable", "gate.holdout_path cannot be read")
        })?;
        let artifact = learner
            .artifact(&test, chrono::Utc::now())
            .map_err(|e| ApiError::from(ChallengerError::from(e)))?;
        let bytes = artifact.file_bytes();
        let rule = ServingRule::from(&settings);
        let servable = gate::load_gated(&bytes[..], &rule)
            .map_err(|e| ApiError::unprocessable("gate_rejected", e.to_string()))?;
        let judged = no_regression(servable.pass.f1_macro, Some(replaced_f1), max_regression);
        if judged.passed != Some(true) {
            return Err(refused(
                "regression",
                format!(
                    "the challenger's F1 macro on the holdout ({:.4}) is below the served model's ({replaced_f1:.4}) minus max_regression ({max_regression})",
                    servable.pass.f1_macro
                ),
            ));
        }
        let model_dir = &settings.model.dir;
        let _lock = store::lock(model_dir, Duration::from_secs(5))
            .map_err(|e| refused("store_busy", e.to_string()))?;
        let current = read_model_file(&path, settings.model.max_bytes).ok();
        let replaced = current.as_ref().map(|c| Keep {
            bytes: &c.bytes,
            name: &meta_name,
            version: &meta_version,
        });
        let candidate = Keep {
            bytes: &bytes,
            name: &artifact.model.name,
            version: &artifact.model.version,
        };
        let promoted = Store::new(model_dir, settings.model.max_bytes)
            .promote(&path, &candidate, replaced.as_ref(), KEEP)
            .map_err(|e| {
                tracing::warn!(error = %e, "challenger promotion: the store refused");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "promotion_failed",
                    "the challenger could not be written to model.path",
                )
            })?;
        Ok((artifact, servable.pass.f1_macro, promoted.file))
    })
    .await
    .expect("promotion does not panic")?;
    let (artifact, f1_macro, kept_file) = done;
    // The same swap as a reload: requests in flight keep the old model.
    let served = state.reload(None).await?;
    tracing::info!(
        version = %artifact.model.version,
        f1_macro,
        replaced_f1_macro = replaced_f1,
        "challenger promoted"
    );
    Ok(PromoteResponse {
        name: served.loaded.meta.model.name.clone(),
        version: served.loaded.meta.model.version.clone(),
        checksum: served.loaded.meta.checksum.clone(),
        f1_macro,
        replaced_f1_macro: replaced_f1,
        kept_file,
    })
}
