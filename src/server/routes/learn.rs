//! `POST /learn` and `POST /forget`: learning in place on a challenger
//! beside each served model ([`crate::server::challenger`]): the default
//! model's unless the body names another (`"model"`). Off unless
//! `learning.enabled`; both need `feedback.token` when it is set. What they
//! answer, and the routes that read a challenger, are in
//! [`super::challenger`].

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::learning::{Example, LearnError};
use crate::server::auth::{Authorized, TokenGuard};
use crate::server::challenger::{ChallengerError, Change};
use crate::server::error::ApiError;
use crate::server::extract::AppJson;
use crate::server::repository::ModelEntry;
use crate::server::routes::challenger::ChallengerResponse;
use crate::server::routes::feedback::authorize_labels;
use crate::server::scoring::check_text;
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

/// The answer of every learning route while `learning.enabled` is off.
pub(super) fn disabled() -> ApiError {
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
