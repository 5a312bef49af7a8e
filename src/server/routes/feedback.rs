//! `POST /feedback` and `POST /feedback/batch`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::ToSchema;

use crate::monitoring::{FeedbackError, LogReceipt};
use crate::server::auth::{check_bearer, Authorized, FailedAuthLog, TokenGuard};
use crate::server::error::ApiError;
use crate::server::extract::AppJson;
use crate::server::repository::ModelEntry;
use crate::server::shadow::ShadowTag;
use crate::server::state::AppState;

/// The true label of an earlier prediction.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// `prediction_id` from a `/predict` answer.
    pub prediction_id: String,
    /// The true class.
    pub label: String,
}

/// Many feedback items.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBatchRequest {
    /// The items (1 to `server.max_batch_size`).
    pub items: Vec<FeedbackRequest>,
}

/// Accepted feedback.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackResponse {
    /// `accepted`.
    pub status: String,
    /// The prediction.
    pub prediction_id: String,
    /// Whether the model was right.
    pub correct: bool,
}

/// Outcome of one batch item.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackItemResult {
    /// The prediction.
    pub prediction_id: String,
    /// `accepted`, `unknown_id`, `invalid_label` or `duplicate`.
    pub result: String,
}

/// Outcomes of a feedback batch, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackBatchResponse {
    /// Items accepted.
    pub accepted: usize,
    /// Items rejected.
    pub rejected: usize,
    /// Per-item outcome.
    pub results: Vec<FeedbackItemResult>,
}

/// Failed authentications on the label-writing endpoints, logged rate-limited.
static FAILED_AUTH: FailedAuthLog = FailedAuthLog::new("feedback");

/// The endpoints that write labels into the feedback log (`/feedback`,
/// `/feedback/batch`, `/examples`) are open without `feedback.token`; with
/// it, they need it. A failure is logged (rate-limited, without the token);
/// the caller counts it in its own metric.
pub(crate) fn authorize_labels(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.settings.feedback.token.as_deref() else {
        return Ok(());
    };
    check_bearer(headers, expected).inspect_err(|_| FAILED_AUTH.record())
}

/// The token rule of `/feedback` and `/feedback/batch`: [`authorize_labels`],
/// a refusal counted in `nbserve_feedback_total`. Checked before the body,
/// whose errors come second: an unauthenticated client learns nothing
/// about what it sent.
pub struct FeedbackToken;

impl TokenGuard for FeedbackToken {
    fn check(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
        authorize_labels(state, headers).inspect_err(|_| {
            state
                .metrics
                .feedback
                .with_label_values(&["unauthorized"])
                .inc();
        })
    }
}

/// One recorded label.
struct Recorded {
    /// The model was right.
    correct: bool,
    /// The receipt of its log line (awaited before answering: under
    /// `log_fsync = always` it completes once the line is synced).
    logged: LogReceipt,
    /// The model whose challenger's answer it also judged.
    scored_challenger: Option<Arc<ModelEntry>>,
}

/// Records one item.
fn record(state: &AppState, item: &FeedbackRequest) -> Result<Recorded, FeedbackError> {
    let m = &state.metrics;
    match state
        .feedback
        .submit_logged(&item.prediction_id, &item.label)
    {
        Ok((r, receipt)) => {
            m.feedback.with_label_values(&["accepted"]).inc();
            m.feedback_confusion
                .with_label_values(&[&r.model, &r.label, &r.predicted_label])
                .inc();
            // The challenger's answer to the same prediction, judged by
            // the same label.
            let scored_challenger = r
                .shadow
                .and_then(|tag| Some((tag, state.models.get(&r.model)?)))
                .filter(|(tag, entry)| {
                    entry.challenger.record_feedback(
                        ShadowTag(*tag),
                        &r.label,
                        &r.predicted_label,
                        state.feedback.window_size(),
                    )
                })
                .map(|(_, entry)| entry);
            Ok(Recorded {
                correct: r.label == r.predicted_label,
                logged: receipt,
                scored_challenger,
            })
        }
        Err(e) => {
            m.feedback.with_label_values(&[e.result_label()]).inc();
            Err(e)
        }
    }
}

/// Give the true label of a prediction.
#[utoipa::path(post, path = "/feedback", request_body = FeedbackRequest,
    security((), ("bearer" = [])),
    responses(
    (status = 202, body = FeedbackResponse),
    (status = 401, description = "feedback.token is set and the request does not carry it", body = crate::server::error::ErrorBody),
    (status = 404, description = "Unknown or expired prediction id", body = crate::server::error::ErrorBody),
    (status = 409, description = "Feedback already given", body = crate::server::error::ErrorBody),
    (status = 422, description = "Label not a class of the model", body = crate::server::error::ErrorBody),
))]
pub async fn feedback(
    State(state): State<AppState>,
    _: Authorized<FeedbackToken>,
    AppJson(req): AppJson<FeedbackRequest>,
) -> Result<(StatusCode, Json<FeedbackResponse>), ApiError> {
    let Recorded {
        correct,
        logged,
        scored_challenger,
    } = record(&state, &req)?;
    // A failed or dropped line is counted by the log; the feedback itself is
    // accepted (it is in the live window) either way.
    logged
        .outcome()
        .instrument(tracing::debug_span!("feedback_log_write", lines = 1))
        .await;
    if let Some(entry) = scored_challenger {
        crate::server::auto_promote::consider(&state, &entry).await;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(FeedbackResponse {
            status: "accepted".into(),
            prediction_id: req.prediction_id,
            correct,
        }),
    ))
}

/// Give many true labels at once; each item succeeds or fails on its own.
#[utoipa::path(post, path = "/feedback/batch", request_body = FeedbackBatchRequest,
    security((), ("bearer" = [])),
    responses(
    (status = 202, body = FeedbackBatchResponse),
    (status = 401, description = "feedback.token is set and the request does not carry it", body = crate::server::error::ErrorBody),
    (status = 422, body = crate::server::error::ErrorBody),
))]
pub async fn feedback_batch(
    State(state): State<AppState>,
    _: Authorized<FeedbackToken>,
    AppJson(req): AppJson<FeedbackBatchRequest>,
) -> Result<(StatusCode, Json<FeedbackBatchResponse>), ApiError> {
    let max = state.settings.server.max_batch_size;
    if req.items.is_empty() || req.items.len() > max {
        return Err(ApiError::unprocessable(
            if req.items.is_empty() {
                "empty_batch"
            } else {
                "batch_too_large"
            },
            format!("items must hold 1 to {max} entries"),
        ));
    }
    // The models whose challengers the labels judged (few: at most the
    // repository's).
    let (mut receipts, mut scored_challengers) = (Vec::new(), Vec::<Arc<ModelEntry>>::new());
    let results: Vec<FeedbackItemResult> = req
        .items
        .iter()
        .map(|item| FeedbackItemResult {
            prediction_id: item.prediction_id.clone(),
            result: match record(&state, item) {
                Ok(r) => {
                    receipts.push(r.logged);
                    if let Some(entry) = r.scored_challenger {
                        if !scored_challengers.iter().any(|e| e.slot == entry.slot) {
                            scored_challengers.push(entry);
                        }
                    }
                    "accepted".into()
                }
                Err(e) => e.result_label().into(),
            },
        })
        .collect();
    // All lines are queued already; under `always` they are synced together.
    let lines = receipts.len();
    async {
        for logged in receipts {
            logged.outcome().await;
        }
    }
    .instrument(tracing::debug_span!("feedback_log_write", lines))
    .await;
    for entry in &scored_challengers {
        crate::server::auto_promote::consider(&state, entry).await;
    }
    let accepted = results.iter().filter(|r| r.result == "accepted").count();
    Ok((
        StatusCode::ACCEPTED,
        Json(FeedbackBatchResponse {
            accepted,
            rejected: results.len() - accepted,
            results,
        }),
    ))
}
