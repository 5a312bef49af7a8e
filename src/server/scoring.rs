//! Scoring: texts in, class-indexed predictions out, each batch with one
//! model version. The one scoring path behind `/predict`, `/predict/batch`
//! and the Open Inference Protocol's `infer`; each protocol writes its
//! answer from [`Scored`] itself, taking labels and probabilities by class
//! index in the model's class order, never by class name.

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use super::error::ApiError;
use super::loader::ServingModel;
use super::state::AppState;
use crate::classifier::{Contribution, Prediction};

/// Terms an explanation lists.
const EXPLAIN_TERMS: usize = 10;

/// Batches with more text than this are scored off the async workers: a
/// bigger batch would hold a worker long enough to delay other requests,
/// while for a smaller one the hop to the blocking pool costs more than the
/// scoring it moves.
const INLINE_BATCH_BYTES: usize = 64 * 1024;

/// One text, scored.
#[derive(Debug)]
pub(crate) struct Scored {
    /// Id to send label feedback for (`POST /feedback`).
    pub id: Uuid,
    /// The predicted class's index and the log probability of each class,
    /// in the order of the model's classes.
    pub prediction: Prediction,
    /// Terms that pushed toward the predicted class, when asked for.
    pub explanation: Option<Vec<Contribution>>,
}

impl Scored {
    /// The probability of each class, in the order of the model's classes.
    pub fn probabilities(&self) -> impl Iterator<Item = f64> + '_ {
        self.prediction.log_probabilities.iter().map(|v| v.exp())
    }
}

/// Texts scored by one model.
pub(crate) struct ScoredBatch {
    /// The model that scored them (newer than the one a request was checked
    /// against if a reload landed in between).
    pub model: Arc<ServingModel>,
    /// One per text, in order.
    pub rows: Vec<Scored>,
}

/// Refuses a text that is empty (only whitespace) or over `max_bytes`;
/// `index` names its place in a batch.
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

/// Scores one text with `model`, records its metrics and remembers it for
/// feedback.
fn score(state: &AppState, model: &ServingModel, text: &str, explain: bool) -> Scored {
    let classifier = &model.loaded.classifier;
    let started = Instant::now();
    let prediction = classifier.predict(text);
    let m = &model.series;
    m.duration.observe(started.elapsed().as_secs_f64());
    // Loading refuses a model that scores to non-finite numbers; should one
    // still appear, it counts as no confidence rather than turning the
    // histogram's sum and the live mean into NaN for good.
    let confidence = Some(prediction.confidence())
        .filter(|c| c.is_finite())
        .unwrap_or(0.0);
    let oov = prediction.oov_ratio();
    m.count_prediction(prediction.label);
    m.confidence.observe(confidence);
    if let Some(r) = oov {
        m.oov.observe(r);
    }
    let learning = &state.settings.learning;
    let shadow = if learning.enabled && learning.shadow_scoring {
        // The challenger of the model that scored, found by its slot.
        state.models.at(model.profile.slot).and_then(|entry| {
            let label = &classifier.classes()[prediction.label];
            let (tag, agreed) = entry.challenger.shadow(model, text, label)?;
            let result = if agreed { "agreed" } else { "disagreed" };
            state
                .metrics
                .challenger_shadow
                .with_label_values(&[&entry.name, result])
                .inc();
            Some(tag)
        })
    } else {
        None
    };
    let id = state.feedback.remember_shadowed(
        &model.profile,
        prediction.label,
        confidence,
        oov,
        text,
        shadow.map(|tag| tag.0),
    );
    let explanation = explain.then(|| classifier.explain(text, &prediction, EXPLAIN_TERMS));
    Scored {
        id,
        prediction,
        explanation,
    }
}

/// Checks one text against the `/predict` limits and scores it with
/// `model`.
pub(crate) async fn score_text(
    state: &AppState,
    model: Arc<ServingModel>,
    text: String,
    explain: bool,
) -> Result<(Arc<ServingModel>, Scored), ApiError> {
    check_text(&text, state.settings.server.max_text_bytes, None)?;
    let span = tracing::debug_span!("score", texts = 1, text_bytes = text.len());
    if text.len() <= INLINE_BATCH_BYTES {
        let scored = span.in_scope(|| score(state, &model, &text, explain));
        return Ok((model, scored));
    }
    // A large text (with `explain`, milliseconds of CPU) goes where large
    // batches go, so it cannot slow /health on the async workers.
    let scoring = model.clone();
    let scored = off_thread(state, move |state| {
        span.in_scope(|| score(state, &scoring, &text, explain))
    })
    .await?;
    Ok((model, scored))
}

fn score_all(state: &AppState, model: &ServingModel, texts: &[String]) -> Vec<Scored> {
    texts
        .iter()
        .map(|t| score(state, model, t, false))
        .collect()
}

/// Validates a batch against the `/predict/batch` limits and scores it with
/// `model`: one model version (even if a reload lands meanwhile).
pub(crate) async fn score_batch(
    state: &AppState,
    model: Arc<ServingModel>,
    texts: Vec<String>,
) -> Result<ScoredBatch, ApiError> {
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
    model.series.batch_size.observe(texts.len() as f64);
    let total_bytes: usize = texts.iter().map(String::len).sum();
    let span = tracing::debug_span!("score", texts = texts.len(), text_bytes = total_bytes);
    let rows = if total_bytes <= INLINE_BATCH_BYTES {
        span.in_scope(|| score_all(state, &model, &texts))
    } else {
        // Large batches take milliseconds of CPU: run them on the blocking
        // pool so they cannot starve /health, /metrics and small requests.
        let model = model.clone();
        off_thread(state, move |state| {
            span.in_scope(|| score_all(state, &model, &texts))
        })
        .await?
    };
    Ok(ScoredBatch { model, rows })
}

/// Runs `work` on the blocking pool once a batch slot is free. The slot is
/// held by the blocking task itself: if the client goes away, the work
/// still running keeps its slot until it ends, so abandoned requests cannot
/// pile more CPU work than there are slots.
async fn off_thread<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&AppState) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let waited = Instant::now();
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
