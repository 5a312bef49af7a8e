//! `GET /challenger`, `GET /challenger/artifact` and their per-model
//! routes `/models/{name}/challenger[/artifact]`: a model's challenger as it
//! is ([`ChallengerResponse`], also what `/learn` and `/forget` answer), and
//! as an ordinary schema-3 artifact. The artifact needs `feedback.token`
//! when it is set (it holds the learned texts' counts), like the writes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::gate::GateSource;
use crate::server::auth::Authorized;
use crate::server::challenger::{Challenger, ChallengerError, ChallengerView};
use crate::server::error::ApiError;
use crate::server::repository::ModelEntry;
use crate::server::routes::learn::{disabled, LearnToken};
use crate::server::routes::models::Named;
use crate::server::shadow::LiveComparison;
use crate::server::state::AppState;

/// The challenger after a change, or as it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengerResponse {
    /// The server's name for the model it is the challenger of.
    pub model: String,
    /// The served model it learns on top of.
    pub champion: ChampionRef,
    /// Examples learned, in total.
    pub learned: u64,
    /// Examples forgotten, in total.
    pub forgotten: u64,
    /// Examples learned and not forgotten.
    pub net_examples: u64,
    /// Bytes its learned part holds (`learning.max_bytes` caps them).
    pub learned_bytes: u64,
    /// Its classes.
    pub classes: Vec<String>,
    /// Its vocabulary size after pruning.
    pub vocabulary_size: usize,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    /// Served predictions the challenger also scored
    /// (`learning.shadow_scoring`), on the current champion.
    pub shadow_scored: u64,
    /// Those where it chose the champion's class.
    pub shadow_agreed: u64,
    /// Live F1 macro of both models on the same labelled predictions: those
    /// the challenger also scored whose label came by `/feedback`.
    pub live: LiveComparison,
    /// F1 macro of both on `gate.holdout_path` (`GET /challenger` only,
    /// when it is set): the figures promotion judges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holdout: Option<HoldoutComparison>,
}

/// Both models' F1 macro on the holdout.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldoutComparison {
    /// The served model's, as the gate judged it when it was loaded.
    pub champion_f1_macro: f64,
    /// The challenger's (`null` when the holdout cannot be evaluated).
    pub challenger_f1_macro: Option<f64>,
}

/// A served model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChampionRef {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `sha256:<hex>` of its artifact.
    pub checksum: String,
}

impl ChallengerResponse {
    /// The answer for `v`, the current snapshot of `challenger`, of the
    /// model `model`.
    pub(super) fn new(model: &str, v: &ChallengerView, challenger: &Challenger) -> Self {
        let agreement = challenger.agreement();
        Self {
            model: model.to_owned(),
            live: challenger.live(),
            holdout: None,
            shadow_scored: agreement.scored,
            shadow_agreed: agreement.agreed,
            champion: ChampionRef {
                name: v.champion.0.clone(),
                version: v.champion.1.clone(),
                checksum: v.champion.2.clone(),
            },
            learned: v.tally.learned,
            forgotten: v.tally.forgotten,
            net_examples: v.net_examples,
            learned_bytes: v.learned_bytes,
            classes: v.classifier.classes().to_vec(),
            vocabulary_size: v.classifier.vocabulary().len(),
            updated_at: v
                .updated_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

fn no_challenger(entry: &ModelEntry) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_challenger",
        format!("nothing was learned on model {} yet", entry.name),
    )
}

/// The model `entry` serves, its challenger restored from the learning
/// log first; refused when learning is off.
async fn restored_champion(
    state: &AppState,
    entry: &ModelEntry,
) -> Result<Arc<crate::server::ServingModel>, ApiError> {
    if !state.settings.learning.enabled {
        return Err(disabled());
    }
    let champion = entry.ready()?;
    entry
        .challenger
        .restore(&champion, &state.settings.learning)
        .await;
    Ok(champion)
}

/// The default model's challenger: what it learned and forgot.
#[utoipa::path(get, path = "/challenger",
    responses(
    (status = 200, body = ChallengerResponse),
    (status = 404, description = "learning_disabled, or no_challenger: nothing learned on the default model yet", body = crate::server::error::ErrorBody),
    (status = 503, description = "The model is not being served: code model_unavailable", body = crate::server::error::ErrorBody),
))]
pub async fn challenger(
    State(state): State<AppState>,
) -> Result<Json<ChallengerResponse>, ApiError> {
    let entry = Arc::clone(state.models.default_entry());
    challenger_of(&state, &entry).await
}

/// The challenger of the model `name`.
#[utoipa::path(get, path = "/models/{name}/challenger",
    params(("name" = String, Path, description = "Model name (as `GET /models` lists it)")),
    responses(
    (status = 200, body = ChallengerResponse),
    (status = 404, description = "learning_disabled, model_not_found, or no_challenger: nothing learned on the model yet", body = crate::server::error::ErrorBody),
    (status = 503, description = "The model is not being served: code model_unavailable", body = crate::server::error::ErrorBody),
))]
pub async fn challenger_named(
    State(state): State<AppState>,
    Named(entry): Named,
) -> Result<Json<ChallengerResponse>, ApiError> {
    challenger_of(&state, &entry).await
}

async fn challenger_of(
    state: &AppState,
    entry: &ModelEntry,
) -> Result<Json<ChallengerResponse>, ApiError> {
    let champion = restored_champion(state, entry).await?;
    let challenger = &entry.challenger;
    let view = challenger
        .view(&champion)
        .ok_or_else(|| no_challenger(entry))?;
    let mut answer = ChallengerResponse::new(&entry.name, view.as_ref(), challenger);
    if let Some(path) = &entry.spec.gate.holdout_path {
        // The gate re-evaluates the served model on the holdout when it
        // loads it; the challenger's figure is cached per generation.
        let champion_f1 = (matches!(champion.gate.gate_source, GateSource::Holdout { .. }))
            .then_some(champion.gate.f1_macro);
        if let Some(champion_f1_macro) = champion_f1 {
            answer.holdout = Some(HoldoutComparison {
                champion_f1_macro,
                challenger_f1_macro: challenger.holdout_f1(&view, path).await,
            });
        }
    }
    Ok(Json(answer))
}

/// The default model's challenger as an ordinary schema-3 artifact,
/// evaluated on `gate.holdout_path`: any nbserve can serve it (and learn on
/// it).
#[utoipa::path(get, path = "/challenger/artifact",
    security((), ("bearer" = [])),
    responses(
    (status = 200, description = "The artifact's JSON", content_type = "application/json"),
    (status = 401, description = "feedback.token is set and the request does not carry it", body = crate::server::error::ErrorBody),
    (status = 404, description = "learning_disabled, or no_challenger", body = crate::server::error::ErrorBody),
    (status = 409, description = "gate.holdout_path is not set (code holdout_required): an artifact carries an evaluation", body = crate::server::error::ErrorBody),
    (status = 422, description = "The challenger cannot be evaluated on the holdout", body = crate::server::error::ErrorBody),
    (status = 503, description = "The model is not being served: code model_unavailable", body = crate::server::error::ErrorBody),
))]
pub async fn challenger_artifact(
    State(state): State<AppState>,
    _: Authorized<LearnToken>,
) -> Result<Response, ApiError> {
    let entry = Arc::clone(state.models.default_entry());
    artifact_of(&state, &entry).await
}

/// The challenger of the model `name` as an ordinary schema-3 artifact,
/// evaluated on that model's holdout.
#[utoipa::path(get, path = "/models/{name}/challenger/artifact",
    params(("name" = String, Path, description = "Model name (as `GET /models` lists it)")),
    security((), ("bearer" = [])),
    responses(
    (status = 200, description = "The artifact's JSON", content_type = "application/json"),
    (status = 401, description = "feedback.token is set and the request does not carry it", body = crate::server::error::ErrorBody),
    (status = 404, description = "learning_disabled, model_not_found, or no_challenger", body = crate::server::error::ErrorBody),
    (status = 409, description = "The model has no holdout (code holdout_required): an artifact carries an evaluation", body = crate::server::error::ErrorBody),
    (status = 422, description = "The challenger cannot be evaluated on the holdout", body = crate::server::error::ErrorBody),
    (status = 503, description = "The model is not being served: code model_unavailable", body = crate::server::error::ErrorBody),
))]
pub async fn challenger_artifact_named(
    State(state): State<AppState>,
    _: Authorized<LearnToken>,
    Named(entry): Named,
) -> Result<Response, ApiError> {
    artifact_of(&state, &entry).await
}

async fn artifact_of(state: &AppState, entry: &ModelEntry) -> Result<Response, ApiError> {
    let champion = restored_champion(state, entry).await?;
    let learner = entry
        .challenger
        .learner(&champion)
        .await
        .ok_or_else(|| no_challenger(entry))?;
    let Some(holdout) = entry.spec.gate.holdout_path.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "holdout_required",
            "the challenger's artifact is evaluated on its model's gate.holdout_path, which is not set",
        ));
    };
    let bytes = tokio::task::spawn_blocking(move || {
        let test = crate::dataset::Dataset::holdout(&holdout).map_err(|e| {
            tracing::warn!(error = %e, "challenger artifact: holdout unreadable");
            ApiError::unprocessable("holdout_unavailable", "gate.holdout_path cannot be read")
        })?;
        learner
            .artifact(&test, chrono::Utc::now())
            .map(|a| a.file_bytes())
            .map_err(|e| ApiError::from(ChallengerError::from(e)))
    })
    .await
    .expect("fitting does not panic")?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
