//! `POST /examples`: labelled texts sent directly (a "mark as spam" button),
//! appended to the feedback log for retraining. Off unless
//! `feedback.accept_examples`; the text is never logged elsewhere.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::ToSchema;

use crate::monitoring::{log_timestamp, ExampleRecord, LogOutcome};
use crate::server::auth::{Authorized, TokenGuard};
use crate::server::error::ApiError;
use crate::server::extract::AppJson;
use crate::server::routes::feedback::authorize_labels;
use crate::server::scoring::check_text;
use crate::server::state::AppState;

/// A text with its true label.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// The text (non-empty, at most `server.max_text_bytes` bytes).
    pub text: String,
    /// Its true class: one of the serving model's classes.
    pub label: String,
}

/// Many labelled texts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExampleBatch {
    /// The examples (1 to `server.max_batch_size`).
    pub examples: Vec<Example>,
}

/// One example, or a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ExamplesRequest {
    /// `{"text", "label"}`.
    One(Example),
    /// `{"examples": [{"text", "label"}, ...]}`.
    Many(ExampleBatch),
}

/// Examples appended to the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExamplesResponse {
    /// How many (all of the request's).
    pub accepted: usize,
}

/// Counts a refused request under `result` (one of
/// [`EXAMPLE_RESULTS`](crate::server::metrics::EXAMPLE_RESULTS)).
fn refused(state: &AppState, result: &'static str, e: ApiError) -> ApiError {
    state.metrics.examples.with_label_values(&[result]).inc();
    e
}

/// The token rule of `/examples`: that of the label-writing endpoints,
/// a refusal counted in `nbserve_examples_total`. Checked before the body
/// and before the on/off setting: without the token, a client learns
/// nothing about the server's settings.
pub struct ExamplesToken;

impl TokenGuard for ExamplesToken {
    fn check(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
        authorize_labels(state, headers).map_err(|e| refused(state, "unauthorized", e))
    }
}

/// Send labelled texts for retraining; all of a request's examples are
/// accepted or none.
#[utoipa::path(post, path = "/examples", request_body = ExamplesRequest,
    security((), ("bearer" = [])),
    responses(
    (status = 200, description = "Appended to the feedback log", body = ExamplesResponse),
    (status = 401, description = "feedback.token is set and the request does not carry it", body = crate::server::error::ErrorBody),
    (status = 404, description = "Examples are not accepted (feedback.accept_examples is off): code examples_disabled", body = crate::server::error::ErrorBody),
    (status = 422, description = "Invalid request, text, batch size or label", body = crate::server::error::ErrorBody),
    (status = 503, description = "The feedback log cannot take them now (queue full or write failed): retry", body = crate::server::error::ErrorBody),
))]
pub async fn examples(
    State(state): State<AppState>,
    _: Authorized<ExamplesToken>,
    body: Result<AppJson<ExamplesRequest>, ApiError>,
) -> Result<Json<ExamplesResponse>, ApiError> {
    if !state.settings.feedback.accept_examples {
        return Err(refused(
            &state,
            "disabled",
            ApiError::new(
                StatusCode::NOT_FOUND,
                "examples_disabled",
                "this server does not accept examples (feedback.accept_examples is off)",
            ),
        ));
    }
    let req = body.map_err(|e| refused(&state, "invalid_request", e))?.0;
    let (examples, batch) = match req {
        ExamplesRequest::One(e) => (vec![e], false),
        ExamplesRequest::Many(b) => (b.examples, true),
    };
    let max = state.settings.server.max_batch_size;
    if batch && (examples.is_empty() || examples.len() > max) {
        let code = if examples.is_empty() {
            "empty_batch"
        } else {
            "batch_too_large"
        };
        let e = ApiError::unprocessable(code, format!("examples must hold 1 to {max} entries"));
        return Err(refused(&state, "invalid_batch", e));
    }
    let at = |i: usize| {
        if batch {
            format!(" (examples[{i}])")
        } else {
            String::new()
        }
    };
    for (i, e) in examples.iter().enumerate() {
        check_text(&e.text, state.settings.server.max_text_bytes, None).map_err(|mut err| {
            err.message.push_str(&at(i));
            refused(&state, "invalid_text", err)
        })?;
    }
    let model = state.default_model()?;
    let classes = &model.profile.classes;
    if let Some(i) = examples.iter().position(|e| !classes.contains(&e.label)) {
        let e = ApiError::unprocessable(
            "invalid_label",
            format!(
                "label is not one of the model's classes ({}){}",
                classes.join(", "),
                at(i)
            ),
        );
        return Err(refused(&state, "invalid_label", e));
    }
    let received_at = log_timestamp();
    let records: Vec<ExampleRecord<'_>> = examples
        .iter()
        .map(|e| ExampleRecord::new(&e.text, &e.label, &model.profile, &received_at))
        .collect();
    let write = tracing::debug_span!("feedback_log_write", lines = records.len());
    match state
        .feedback
        .log_examples(&records)
        .outcome()
        .instrument(write)
        .await
    {
        LogOutcome::Queued | LogOutcome::Synced => {
            state
                .metrics
                .examples
                .with_label_values(&["accepted"])
                .inc_by(examples.len() as u64);
            Ok(Json(ExamplesResponse {
                accepted: examples.len(),
            }))
        }
        LogOutcome::NoLog | LogOutcome::Dropped | LogOutcome::Failed => Err(refused(
            &state,
            "log_unavailable",
            ApiError::unavailable(
                "log_unavailable",
                "the feedback log cannot take examples right now; retry shortly",
                1,
            ),
        )),
    }
}
