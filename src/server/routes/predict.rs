//! `POST /predict` and `POST /predict/batch`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::server::error::ApiError;
use crate::server::extract::AppJson;
use crate::server::loader::ServingModel;
use crate::server::state::AppState;

/// One text to classify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// The text (non-empty, at most `server.max_text_bytes` bytes).
    pub text: String,
    /// Also return the terms that pushed toward the predicted class.
    #[serde(default)]
    pub explain: bool,
}

/// Many texts to classify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The texts (1 to `server.max_batch_size`).
    pub texts: Vec<String>,
}

/// A term's push toward the predicted class.
#[derive(Debug, Serialize, ToSchema)]
pub struct TermContribution {
    /// Vocabulary term.
    pub term: String,
    /// Log-odds it adds to the predicted class over the runner-up.
    pub log_odds: f64,
}

/// One prediction.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictResponse {
    /// Id to send label feedback for (`POST /feedback`).
    pub prediction_id: String,
    /// Predicted label.
    pub label: String,
    /// Probability per class.
    pub probabilities: BTreeMap<String, f64>,
    /// Version of the model that scored this text.
    pub model_version: String,
    /// Top terms toward the predicted class, when `explain` was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Vec<TermContribution>>,
}

/// Predictions for a batch, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One per text.
    pub predictions: Vec<PredictResponse>,
    /// Version of the model that scored the batch.
    pub model_version: String,
}

pub(crate) fn check_text(
    text: &str,
    max_bytes: usize,
    index: Option<usize>,
) -> Result<(), ApiError> {
    let at = index.map(|i| format!(" (texts[{i}])")).unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "empty_text",
            format!("text must contain non-whitespace characters{at}"),
        ));
    }
    if text.len() > max_bytes {
        return Err(ApiError::unprocessable(
            "text_too_long",
            format!("text is {} bytes; the limit is {max_bytes}{at}", text.len()),
        ));
    }
    Ok(())
}

/// Scores one text with `model`, records metrics and remembers it for feedback.
fn score(state: &AppState, model: &ServingModel, text: &str, explain: bool) -> PredictResponse {
    let classifier = &model.loaded.classifier;
    let started = Instant::now();
    let prediction = classifier.predict(text);
    let m = &state.metrics;
    m.prediction_duration
        .observe(started.elapsed().as_secs_f64());
    let classes = classifier.classes();
    let label = &classes[prediction.label];
    // Loading refuses a model that scores to non-finite numbers; should one
    // still appear, it counts as no confidence rather than turning the
    // histogram's sum and the live mean into NaN for good.
    let confidence = Some(prediction.confidence())
        .filter(|c| c.is_finite())
        .unwrap_or(0.0);
    let oov = prediction.oov_ratio();
    m.count_prediction(label);
    m.prediction_confidence.observe(confidence);
    if let Some(r) = oov {
        m.oov_ratio.observe(r);
    }
    let id = state
        .feedback
        .remember_text(&model.profile, prediction.label, confidence, oov, text);
    let explanation = explain.then(|| {
        classifier
            .explain(text, &prediction, 10)
            .into_iter()
            .map(|c| TermContribution {
                term: c.term,
                log_odds: c.log_odds,
            })
            .collect()
    });
    PredictResponse {
        prediction_id: id.to_string(),
        label: label.clone(),
        probabilities: classes
            .iter()
            .cloned()
            .zip(prediction.probabilities())
            .collect(),
        model_version: model.loaded.meta.model.version.clone(),
        explanation,
    }
}

/// Batches with more text than this are scored off the async workers
/// (about 0.2 ms of CPU at the measured tokenize+score rate).
const INLINE_BATCH_BYTES: usize = 64 * 1024;

fn score_all(state: &AppState, model: &ServingModel, texts: &[String]) -> Vec<PredictResponse> {
    texts
        .iter()
        .map(|t| score(state, model, t, false))
        .collect()
}

/// Validates a batch against the `/predict/batch` limits and scores it with
/// one model version (even if a reload lands meanwhile): the one scoring
/// path behind `/predict/batch` and the Open Inference Protocol's `infer`.
pub(crate) async fn score_batch(
    state: &AppState,
    texts: Vec<String>,
) -> Result<(Arc<ServingModel>, Vec<PredictResponse>), ApiError> {
    let max = state.settings.server.max_batch_size;
    if texts.is_empty() {
        return Err(ApiError::unprocessable(
            "empty_batch",
            "texts must hold at least one text",
        ));
    }
    if texts.len() > max {
        return Err(ApiError::unprocessable(
            "batch_too_large",
            format!("{} texts; the limit is {max}", texts.len()),
        ));
    }
    for (i, t) in texts.iter().enumerate() {
        check_text(t, state.settings.server.max_text_bytes, Some(i))?;
    }
    state.metrics.batch_size.observe(texts.len() as f64);
    let model = state.model.load_full();
    let total_bytes: usize = texts.iter().map(String::len).sum();
    let predictions = if total_bytes <= INLINE_BATCH_BYTES {
        score_all(state, &model, &texts)
    } else {
        // Large batches take milliseconds of CPU: run them on the blocking
        // pool so they cannot starve /health, /metrics and small requests.
        let model = model.clone();
        off_thread(state, move |state| score_all(state, &model, &texts)).await?
    };
    Ok((model, predictions))
}

/// Classify one text.
#[utoipa::path(post, path = "/predict", request_body = PredictRequest,
    responses(
        (status = 200, description = "Prediction", body = PredictResponse),
        (status = 400, description = "Malformed JSON", body = crate::server::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::server::error::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::server::error::ErrorBody),
        (status = 422, description = "Invalid request", body = crate::server::error::ErrorBody),
        (status = 503, description = "Overloaded", body = crate::server::error::ErrorBody),
    ))]
pub async fn predict(
    State(state): State<AppState>,
    AppJson(req): AppJson<PredictRequest>,
) -> Result<Json<PredictResponse>, ApiError> {
    check_text(&req.text, state.settings.server.max_text_bytes, None)?;
    let model = state.model.load_full();
    if req.text.len() <= INLINE_BATCH_BYTES {
        return Ok(Json(score(&state, &model, &req.text, req.explain)));
    }
    // A large text (with `explain`, milliseconds of CPU) goes where large
    // batches go, so it cannot slow /health on the async workers.
    off_thread(&state, move |state| {
        score(state, &model, &req.text, req.explain)
    })
    .await
    .map(Json)
}

/// Runs `work` on the blocking pool once a batch slot is free. The slot is
/// held by the blocking task itself: if the client goes away, the work
/// still running keeps its slot until it ends, so abandoned requests cannot
/// pile more CPU work than there are slots.
async fn off_thread<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&AppState) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let waited = std::time::Instant::now();
    let slot = Arc::clone(&state.batch_slots)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::from_status(axum::http::StatusCode::SERVICE_UNAVAILABLE))?;
    state
        .metrics
        .batch_slot_wait
        .observe(waited.elapsed().as_secs_f64());
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work(&state)
    })
    .await
    .map_err(|_| ApiError::from_status(axum::http::StatusCode::INTERNAL_SERVER_ERROR))
}

/// Classify many texts with one model version.
#[utoipa::path(post, path = "/predict/batch", request_body = BatchRequest,
    responses(
        (status = 200, description = "Predictions", body = BatchResponse),
        (status = 400, description = "Malformed JSON", body = crate::server::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::server::error::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::server::error::ErrorBody),
        (status = 422, description = "Invalid request", body = crate::server::error::ErrorBody),
        (status = 503, description = "Overloaded", body = crate::server::error::ErrorBody),
    ))]
pub async fn predict_batch(
    State(state): State<AppState>,
    AppJson(req): AppJson<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    let (model, predictions) = score_batch(&state, req.texts).await?;
    Ok(Json(BatchResponse {
        predictions,
        model_version: model.loaded.meta.model.version.clone(),
    }))
}
