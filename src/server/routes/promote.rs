//! `POST /admin/challenger/promote`: a model's challenger replaces it,
//! through the rules `retrain` promotes by: the serving gate
//! ([`gate::load_gated`]: size, validity, memory, `gate.min_f1_macro` on
//! `gate.holdout_path`) and the no-regression check against the model in
//! service on the same holdout; then registered in MLflow when the server
//! registers promotions ([`Tracked`]), kept in the model's versioned store
//! (`model.dir/versions` for the model `model.path` names,
//! `model.dir/stores/NAME/versions` for the others, so
//! `nbserve rollback --served-model NAME` brings the old one back) and
//! swapped in by a reload of that model alone. The model's own settings
//! ([`Settings::for_model`]) decide its file, store, gate and holdout, as
//! they do for `retrain`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gate::{self, ServingRule};
use crate::learning::Learner;
use crate::retraining::judge::no_regression;
use crate::retraining::store::{self, Keep, Store};
use crate::retraining::{read_model_file, Target};
use crate::server::auth::Authorized;
use crate::server::challenger::ChallengerError;
use crate::server::error::ApiError;
use crate::server::loader::ServingModel;
use crate::server::registration::Tracked;
use crate::server::repository::{ModelEntry, Why};
use crate::server::routes::admin::AdminToken;
use crate::server::state::AppState;
use crate::settings::Settings;

/// Kept versions after a promotion (as `retrain --keep`'s default).
const KEEP: usize = 5;

/// Which model's challenger to promote, and how far its holdout F1 macro
/// may fall below the model's.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// Largest allowed drop in F1 macro (default 0: no regression).
    #[serde(default)]
    pub max_regression: f64,
    /// The model (as `GET /models` lists it; default: the default model).
    #[serde(default)]
    pub model: Option<String>,
}

/// The promoted model.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromoteResponse {
    /// The server's name for the model it replaced (and now is).
    pub model: String,
    /// Its artifact's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `sha256:<hex>` of its artifact.
    pub checksum: String,
    /// Its F1 macro on the holdout.
    pub f1_macro: f64,
    /// The replaced model's.
    pub replaced_f1_macro: f64,
    /// Its kept file, relative to the model's store directory (none when
    /// the model's source is a registry alias).
    pub kept_file: Option<String>,
    /// The MLflow model version it was registered as, when the server
    /// registers promotions (`learning.register`, or a registry alias).
    pub registered: Option<RegisteredVersion>,
}

/// A registered MLflow model version.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredVersion {
    /// Registered model name.
    pub name: String,
    /// Version number.
    pub version: String,
    /// The alias moved to it, if any.
    pub alias: Option<String>,
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
    (status = 404, description = "no_challenger: nothing learned on the model; model_not_found: no such model", body = crate::server::error::ErrorBody),
    (status = 409, description = "holdout_required (the model has no holdout), not_a_file (its source pins a registry version), regression (worse than the model on the holdout), store_busy, or model_settings (its settings no longer describe it)", body = crate::server::error::ErrorBody),
    (status = 422, description = "gate_rejected: the servers would not serve it", body = crate::server::error::ErrorBody),
    (status = 503, description = "registry_unavailable: the promotion registers in MLflow, which failed; nothing was promoted", body = crate::server::error::ErrorBody),
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
            ApiError::unprocessable(
                "invalid_request",
                "expected {\"max_regression\": number, \"model\": string}, both optional",
            )
        })?
    };
    let max_regression = req.max_regression;
    if !max_regression.is_finite() || !(0.0..=1.0).contains(&max_regression) {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "max_regression must be within [0, 1]",
        ));
    }
    let entry = match &req.model {
        Some(name) => state.models.find(name)?,
        None => Arc::clone(state.models.default_entry()),
    };
    promote_challenger(&state, &entry, max_regression, Trigger::Manual)
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

/// Promotes the challenger of `entry`'s model, allowing its holdout F1
/// macro `max_regression` below the model's: the one path every trigger
/// takes; its outcome is counted.
pub async fn promote_challenger(
    state: &AppState,
    entry: &Arc<ModelEntry>,
    max_regression: f64,
    trigger: Trigger,
) -> Result<PromoteResponse, ApiError> {
    let result = attempt(state, entry, max_regression).await;
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
        .with_label_values(&[&entry.name, trigger_label, outcome])
        .inc();
    result
}

/// The promotion itself: gated, kept, swapped in.
async fn attempt(
    state: &AppState,
    entry: &Arc<ModelEntry>,
    max_regression: f64,
) -> Result<PromoteResponse, ApiError> {
    let champion = entry.ready()?;
    let challenger = &entry.challenger;
    challenger
        .restore(&champion, &state.settings.learning)
        .await;
    let learner = challenger.learner(&champion).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_challenger",
            format!("nothing was learned on model {} yet", entry.name),
        )
    })?;
    // The model's own source, store, gate and holdout, as `retrain
    // --served-model` sees them.
    let settings = state
        .settings
        .for_model(Some(&entry.name))
        .map_err(|e| refused("model_settings", e.to_string()))?;
    // Where it goes, as `retrain` decides: a file (registered too with
    // learning.register, which names the default model's registered
    // model), or a registry alias moved to a new version.
    let is_default = Arc::ptr_eq(entry, state.models.default_entry());
    let register = settings.learning.register.clone().filter(|_| is_default);
    let target = Target::new(&settings.model.path, register, None)
        .map_err(|e| refused("not_a_file", e.to_string()))?;
    let Some(holdout) = settings.gate.holdout_path.clone() else {
        return Err(refused(
            "holdout_required",
            "promotion compares both models on gate.holdout_path, which is not set",
        ));
    };
    let meta = &champion.loaded.meta.model;
    let run_name = format!("{}-{}+learned", meta.name, meta.version);
    // In a task of its own: a client going away, or the request timeout,
    // must not stop a promotion half way (registered but not written, or
    // its run left open).
    let (state, entry) = (state.clone(), Arc::clone(entry));
    let task = tokio::spawn(async move {
        let tracked = Tracked::start(&settings, &target, &run_name).await?;
        let promoted = put_in_service(
            &state,
            &settings,
            entry,
            &champion,
            learner,
            target,
            holdout,
            max_regression,
            tracked.as_ref(),
        )
        .await;
        if let Some(t) = &tracked {
            t.finish(promoted.as_ref().err()).await;
        }
        promoted
    });
    task.await.expect("promotion does not panic")
}

/// Gates the challenger's artifact against `settings` (its model's),
/// registers it (when `tracked`), keeps it and swaps it in.
#[allow(clippy::too_many_arguments)]
async fn put_in_service(
    state: &AppState,
    settings: &Settings,
    entry: Arc<ModelEntry>,
    champion: &ServingModel,
    learner: Learner,
    target: Target,
    holdout: PathBuf,
    max_regression: f64,
    tracked: Option<&Tracked>,
) -> Result<PromoteResponse, ApiError> {
    let replaced_f1 = champion.gate.f1_macro;
    let (meta_name, meta_version) = (
        champion.loaded.meta.model.name.clone(),
        champion.loaded.meta.model.version.clone(),
    );
    let tally = learner.tally();
    let run_id = tracked.map(Tracked::run_id);
    let rule = ServingRule::from(settings);
    let gated = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let test = crate::dataset::Dataset::holdout(&holdout).map_err(|e| {
            tracing::warn!(error = %e, "challenger promotion: holdout unreadable");
            ApiError::unprocessable("holdout_unavailable", "gate.holdout_path cannot be read")
        })?;
        let mut artifact = learner
            .artifact(&test, chrono::Utc::now())
            .map_err(|e| ApiError::from(ChallengerError::from(e)))?;
        if run_id.is_some() {
            // As `retrain` does: the artifact names the run it was logged in.
            artifact.mlflow_run_id = run_id;
            artifact.seal();
        }
        let bytes = artifact.file_bytes();
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
        Ok((artifact, bytes, servable.pass.f1_macro))
    })
    .await
    .expect("gating does not panic")?;
    let (artifact, bytes, f1_macro) = gated;
    // The registry first, as `retrain`: when it fails, no file has changed.
    let registered = match tracked {
        Some(t) => Some(
            t.register(artifact.clone(), tally, meta_version.clone())
                .await?,
        ),
        None => None,
    };
    let kept_file = match target {
        Target::File { path, .. } => {
            let settings = settings.clone();
            let (name, version) = (artifact.model.name.clone(), artifact.model.version.clone());
            let kept = tokio::task::spawn_blocking(move || {
                keep(
                    &settings,
                    &path,
                    &bytes,
                    (&name, &version),
                    (&meta_name, &meta_version),
                )
            });
            Some(kept.await.expect("keeping does not panic")?)
        }
        Target::Alias(_) => None,
    };
    // The same swap as a reload: requests in flight keep the old model.
    let model = entry.name.to_string();
    let served = state.load_model(entry, None, Why::Reload).await?;
    tracing::info!(
        model = %model,
        version = %artifact.model.version,
        f1_macro,
        replaced_f1_macro = replaced_f1,
        registered = registered.as_ref().map_or("", |r| r.version.as_str()),
        "challenger promoted"
    );
    Ok(PromoteResponse {
        model,
        name: served.loaded.meta.model.name.clone(),
        version: served.loaded.meta.model.version.clone(),
        checksum: served.loaded.meta.checksum.clone(),
        f1_macro,
        replaced_f1_macro: replaced_f1,
        kept_file,
        registered: registered.map(|r| RegisteredVersion {
            name: r.name,
            version: r.version,
            alias: r.alias,
        }),
    })
}

/// Writes `bytes` (the challenger `candidate`: name, version) to `path`
/// through the versioned store, keeping the model it replaces
/// (`replaced`: name, version); returns the kept file.
fn keep(
    settings: &Settings,
    path: &Path,
    bytes: &[u8],
    candidate: (&str, &str),
    replaced: (&str, &str),
) -> Result<String, ApiError> {
    let model_dir = &settings.model.dir;
    let _lock = store::lock(model_dir, Duration::from_secs(5))
        .map_err(|e| refused("store_busy", e.to_string()))?;
    let current = read_model_file(path, settings.model.max_bytes).ok();
    let replaced = current.as_ref().map(|c| Keep {
        bytes: &c.bytes,
        name: replaced.0,
        version: replaced.1,
    });
    let candidate = Keep {
        bytes,
        name: candidate.0,
        version: candidate.1,
    };
    Store::new(model_dir, settings.model.max_bytes)
        .promote(path, &candidate, replaced.as_ref(), KEEP)
        .map(|p| p.file)
        .map_err(|e| {
            tracing::warn!(error = %e, "challenger promotion: the store refused");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "promotion_failed",
                "the challenger could not be written to model.path",
            )
        })
}
