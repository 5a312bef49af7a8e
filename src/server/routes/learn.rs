//! `POST /learn`, `POST /forget`, `GET /challenger`,
//! `GET /challenger/artifact`: learning in place on a challenger beside
//! each served model ([`crate::server::challenger`]): the default model's
//! unless the request names another (`"model"` in the body of the writes,
//! `/models/{name}/challenger[/artifact]` for the reads). Off unless
//! `learning.enabled`; the writes need `feedback.token` when it is set.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gate::GateSource;
use crate::learning::{Example, LearnError};
use crate::server::auth::{Authorized, TokenGuard};
use crate::server::challenger::{Challenger, ChallengerError, ChallengerView, Change};
use crate::server::error::ApiError;
use crate::server::extract::AppJson;
use crate::server::repository::ModelEntry;
use crate::server::routes::feedback::authorize_labels;
use crate::server::routes::models::Named;
use crate::server::scoring::check_text;
use crate::server::shadow::LiveComparison;
use crate::server::state::AppState;

/// A labelled text to learn or forget.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelledText {
    /// The text (non-empty, at most `server.max_text_bytes` bytes).
    pub text: String,
    /// Its class: one of the served model's classes unless
    /// `learning.allow_new_classes`.
    pub label: String,
}

/// Examples to learn or forget, all or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LearnRequest {
    /// The examples (1 to `server.max_batch_size`).
    pub examples: Vec<LabelledText>,
    /// The model whose challenger changes (as `GET /models` lists it;
    /// default: the default model).
    #[serde(default)]
    pub model: Option<String>,
}

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
    fn new(model: &str, v: &ChallengerView, challenger: &Challenger) -> Self {
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

/// The token rule of `/learn`, `/forget` and the challenger's artifact:
/// that of the label-writing endpoints, checked before the body and the
/// on/off setting.
pub struct LearnToken;

impl TokenGuard for LearnToken {
    fn check(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
        authorize_labels(state, headers)
    }
}

impl From<ChallengerError> for ApiError {
    fn from(e: ChallengerError) -> Self {
        let (status, code) = match &e {
            ChallengerError::Full { .. } => (StatusCode::INSUFFICIENT_STORAGE, "challenger_full"),
            ChallengerError::OverBudget { .. } => {
                (StatusCode::INSUFFICIENT_STORAGE, "challenger_over_budget")
            }
            ChallengerError::Log => (StatusCode::SERVICE_UNAVAILABLE, "log_unavailable"),
            ChallengerError::Learn(l) => match l {
                LearnError::NoStatistics => (StatusCode::CONFLICT, "no_statistics"),
                LearnError::NotLearned { .. } => (StatusCode::CONFLICT, "not_learned"),
                LearnError::UnknownLabel { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "invalid_label")
                }
                LearnError::Counts(_) => (StatusCode::CONFLICT, "counts_overflow"),
                // A challenger that cannot be fitted (a label no served
                // model may have, pruning that keeps no term): the request
                // made it so.
                LearnError::Mismatch(_) | LearnError::Fit(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "unfittable")
                }
            },
        };
        ApiError::new(status, code, e.to_string())
    }
}

fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "learning_disabled",
        "this server does not learn in place (learning.enabled is off)",
    )
}

/// Checks the batch, its texts and labels (names no served model may have).
fn examples(state: &AppState, req: Vec<LabelledText>) -> Result<Vec<Example>, ApiError> {
    let max = state.settings.server.max_batch_size;
    if req.is_empty() || req.len() > max {
        let code = if req.is_empty() {
            "empty_batch"
        } else {
            "batch_too_large"
        };
        return Err(ApiError::unprocessable(
            code,
            format!("examples must hold 1 to {max} entries"),
        ));
    }
    for (i, e) in req.iter().enumerate() {
        check_text(&e.text, state.settings.server.max_text_bytes, Some(i))?;
        let problem = if e.label.is_empty() {
            Some("is empty".to_owned())
        } else {
            crate::artifact::name_problem(&e.label)
        };
        if let Some(problem) = problem {
            return Err(ApiError::unprocessable(
                "invalid_label",
                format!("the label {problem} (examples[{i}])"),
            ));
        }
    }
    Ok(req
        .into_iter()
        .map(|e| Example::new(e.text, e.label))
        .collect())
}

async fn change(
    state: AppState,
    change: Change,
    req: LearnRequest,
) -> Result<Json<ChallengerResponse>, ApiError> {
    if !state.settings.learning.enabled {
        return Err(disabled());
    }
    let entry = named_or_default(&state, req.model.as_deref())?;
    let examples = examples(&state, req.examples)?;
    let n = examples.len();
    let champion = entry.ready()?;
    let learning = &state.settings.learning;
    let model = &*entry.name;
    let view = entry
        .challenger
        .apply(champion, change, examples, learning)
        .await
        .inspect_err(|e| tracing::info!(model, examples = n, change = ?change, error = %e, "challenger change refused"))?;
    tracing::info!(model, examples = n, change = ?change, learned = view.tally.learned, forgotten = view.tally.forgotten, "challenger changed");
    let counted = match change {
        Change::Learn => "learned",
        Change::Forget => "forgotten",
    };
    state
        .metrics
        .challenger_examples
        .with_label_values(&[model, counted])
        .inc_by(n as u64);
    if change == Change::Learn {
        crate::server::auto_promote::consider(&state, &entry).await;
    }
    Ok(Json(ChallengerResponse::new(
        model,
        view.as_ref(),
        &entry.challenger,
    )))
}

/// The model `name` (404 `model_not_found` when there is none), or the
/// default model.
fn named_or_default(state: &AppState, name: Option<&str>) -> Result<Arc<ModelEntry>, ApiError> {
    match name {
        Some(name) => state.models.find(name),
        None => Ok(Arc::clone(state.models.default_entry())),
    }
}

/// The answers of `/learn` (`FORGET` false) and `/forget`, for the OpenAPI
/// document: one list (its schemas are registered in
/// [`crate::server::openapi::ApiDoc`]).
pub struct ChangeAnswers<const FORGET: bool>;

/// `POST /learn`'s answers.
pub type LearnAnswers = ChangeAnswers<false>;
/// `POST /forget`'s answers.
pub type ForgetAnswers = ChangeAnswers<true>;

impl<const FORGET: bool> utoipa::IntoResponses for ChangeAnswers<FORGET> {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        use crate::server::openapi::json_answer as answer;
        use utoipa::openapi::ResponsesBuilder;
        let error = |description: &str| answer(description, "ErrorBody");
        let (done, conflict) = if FORGET {
            ("Forgotten; the challenger as it now is", "An example was never learned (code not_learned), or the served model has no statistics (code no_statistics); nothing changed")
        } else {
            (
                "Learned; the challenger as it now is",
                "The served model has no statistics (schema < 3): code no_statistics",
            )
        };
        let responses = ResponsesBuilder::new()
            .response("200", answer(done, "ChallengerResponse"))
            .response(
                "401",
                error("feedback.token is set and the request does not carry it"),
            )
            .response(
                "404",
                error("learning.enabled is off (code learning_disabled), or no such model (code model_not_found)"),
            )
            .response("409", error(conflict))
            .response("422", error("Invalid request, text, batch size or label"))
            .response(
                "503",
                error("The model is not being served: code model_unavailable"),
            );
        if FORGET {
            return responses.build().into();
        }
        responses
            .response(
                "507",
                error("The challenger would pass learning.max_bytes (code challenger_full) or what models.max_total_bytes leaves beside the served models (code challenger_over_budget); nothing changed"),
            )
            .build()
            .into()
    }
}

/// What `/learn` and `/forget` take, in the order it is checked: the
/// feedback token (before the body is read), then the batch.
pub struct ChangeCall {
    state: AppState,
    req: LearnRequest,
}

impl axum::extract::FromRequest<AppState> for ChangeCall {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, ApiError> {
        use axum::extract::FromRequestParts;
        let (mut parts, body) = req.into_parts();
        Authorized::<LearnToken>::from_request_parts(&mut parts, state).await?;
        let request = axum::extract::Request::from_parts(parts, body);
        let AppJson(req) = AppJson::<LearnRequest>::from_request(request, state).await?;
        Ok(Self {
            state: state.clone(),
            req,
        })
    }
}

impl ChangeCall {
    async fn apply(self, kind: Change) -> Result<Json<ChallengerResponse>, ApiError> {
        change(self.state, kind, self.req).await
    }
}

/// Learn labelled examples on the challenger (all or none).
#[utoipa::path(post, path = "/learn", request_body = LearnRequest,
    security((), ("bearer" = [])),
    responses(LearnAnswers))]
pub async fn learn(call: ChangeCall) -> Result<Json<ChallengerResponse>, ApiError> {
    call.apply(Change::Learn).await
}

/// Forget learned examples exactly (all or none).
#[utoipa::path(post, path = "/forget", request_body = LearnRequest,
    security((), ("bearer" = [])),
    responses(ForgetAnswers))]
pub async fn forget(call: ChangeCall) -> Result<Json<ChallengerResponse>, ApiError> {
    call.apply(Change::Forget).await
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
