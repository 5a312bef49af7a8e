//! Monitoring a served model: every prediction is remembered for label
//! feedback, feedback feeds a live evaluation, recent predictions feed drift
//! signals. No HTTP here: the server calls [`FeedbackStore`].
//!
//! One job per module, all behind the store's one lock:
//! - `ids`: prediction ids that name a ring slot and prove they were issued;
//! - `ring`: remembered predictions, 16 bytes each, in bounded memory (at
//!   most `capacity`, none older than `max_age`, oldest dropped first);
//! - `window`: the last `window` labelled predictions, scored with the same
//!   [`ConfusionMatrix::evaluate`](crate::classifier::ConfusionMatrix::evaluate)
//!   as offline evaluation;
//! - `drift`: the last `window` predictions, labelled or not;
//! - `log`: the crash-safe JSON-lines log of accepted feedback.

mod drift;
mod ids;
mod log;
mod ring;
mod window;

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use drift::{js_divergence, DriftSignals};
pub use window::LiveQuality;

use drift::DriftWindow;
use ids::{IdCodec, NONCE_MASK};
use log::FeedbackLog;

use crate::settings::LogFsync;
use ring::Ring;
use window::LabelledWindow;

/// Why feedback was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedbackError {
    /// Never issued, expired or evicted.
    #[error("unknown or expired prediction id")]
    UnknownId,
    /// Not one of the predicting model's classes.
    #[error("label is not one of the model's classes ({0})")]
    InvalidLabel(String),
    /// Feedback was already given for this prediction.
    #[error("feedback was already recorded for this prediction")]
    Duplicate,
}

impl FeedbackError {
    /// The `result` label value for `nbserve_feedback_total`.
    pub fn result_label(&self) -> &'static str {
        match self {
            FeedbackError::UnknownId => "unknown_id",
            FeedbackError::InvalidLabel(_) => "invalid_label",
            FeedbackError::Duplicate => "duplicate",
        }
    }
}

/// What a remembered prediction needs to know about the model that made it:
/// its version, its classes and their training prior (for drift).
#[derive(Debug, PartialEq)]
pub struct ModelProfile {
    /// Model version.
    pub version: String,
    /// Class labels in index order.
    pub classes: Vec<String>,
    /// Training class prior (shares), for drift.
    pub prior: Vec<f64>,
}

/// Accepted feedback, as returned to the caller and appended to the log.
#[derive(Debug, Clone, Serialize)]
pub struct FeedbackRecord {
    /// The prediction.
    pub prediction_id: String,
    /// The true label given.
    pub label: String,
    /// The label the model predicted.
    pub predicted_label: String,
    /// Version of the model that predicted.
    pub model_version: String,
    /// When the prediction was made (RFC 3339).
    pub predicted_at: String,
    /// When feedback arrived (RFC 3339).
    pub received_at: String,
}

/// Everything behind the store's lock.
struct Inner {
    ring: Ring,
    labelled: LabelledWindow,
    drift: DriftWindow,
}

/// The store; cheap to share behind an `Arc`.
pub struct FeedbackStore {
    window: usize,
    ids: IdCodec,
    inner: Mutex<Inner>,
    log: Option<Mutex<FeedbackLog>>,
}

impl FeedbackStore {
    /// A store remembering `capacity` predictions for `max_age`, appending
    /// feedback to `log_path` if given. `window` sizes both windows: the
    /// last `window` labelled predictions are scored, and the last `window`
    /// predictions give the drift signals.
    pub fn new(
        capacity: usize,
        max_age: std::time::Duration,
        window: usize,
        log_path: Option<&Path>,
    ) -> std::io::Result<Self> {
        let log = match log_path {
            Some(p) => Some(Mutex::new(FeedbackLog::open(p, LogFsync::Interval)?)),
            None => None,
        };
        Ok(Self {
            window,
            ids: IdCodec::new(),
            inner: Mutex::new(Inner {
                ring: Ring::new(capacity, max_age),
                labelled: LabelledWindow::new(window),
                drift: DriftWindow::new(window),
            }),
            log,
        })
    }

    /// Sets when the log is synced to disk (`interval` unless told).
    pub fn with_log_fsync(self, policy: LogFsync) -> Self {
        self.with_log(|log| log.fsync = policy);
        self
    }

    /// Runs `f` on the log, if there is one.
    fn with_log<T>(&self, f: impl FnOnce(&mut FeedbackLog) -> T) -> Option<T> {
        let log = self.log.as_ref()?;
        Some(f(&mut log.lock().unwrap_or_else(|e| e.into_inner())))
    }

    /// Reopens the log at its path (SIGHUP: after rotation by copy or rename).
    pub fn reopen_log(&self) {
        self.with_log(FeedbackLog::reopen);
    }

    /// Syncs the log if the `interval` policy has one due.
    pub fn sync_log_if_due(&self) {
        self.with_log(FeedbackLog::sync_if_due);
    }

    /// Failed writes, syncs and reopens of the log so far.
    pub fn log_errors(&self) -> u64 {
        self.with_log(|l| l.errors()).unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a prediction and returns its id.
    pub fn remember(
        &self,
        model: &Arc<ModelProfile>,
        predicted: usize,
        confidence: f64,
        oov: Option<f64>,
    ) -> Uuid {
        let nonce = rand::random::<u64>() & NONCE_MASK;
        let mut g = self.lock();
        let seq = g.ring.push(model, nonce, predicted);
        g.drift.push(model, predicted, confidence, oov);
        drop(g);
        self.ids.encode(seq, nonce)
    }

    /// Records the true `label` of prediction `id`.
    pub fn submit(&self, id: &str, label: &str) -> Result<FeedbackRecord, FeedbackError> {
        // `parse_str` also takes upper case, braces, `urn:uuid:` and no hyphens.
        let uuid = Uuid::parse_str(id).map_err(|_| FeedbackError::UnknownId)?;
        let (seq, nonce) = self.ids.decode(uuid).ok_or(FeedbackError::UnknownId)?;
        let mut g = self.lock();
        let answered = g.ring.answer(seq, nonce, label)?;
        g.labelled
            .push(&answered.model, answered.truth, answered.predicted);
        drop(g);
        // Wall time now, minus the monotonic age of the prediction: ordered
        // with `received_at` even if the system clock was stepped meanwhile.
        let received_at = Utc::now();
        let predicted_at = received_at - answered.age;
        let model = &answered.model;
        let record = FeedbackRecord {
            // The id as issued, whatever form it came in: the log is joined on it.
            prediction_id: uuid.hyphenated().to_string(),
            label: label.to_owned(),
            predicted_label: model.classes[answered.predicted].clone(),
            model_version: model.version.clone(),
            predicted_at: predicted_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            received_at: received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        self.with_log(|log| log.append_record(&record));
        Ok(record)
    }

    /// The live evaluation of the labelled window.
    pub fn live_quality(&self) -> LiveQuality {
        self.lock().labelled.quality()
    }

    /// Drift signals over recent predictions.
    pub fn drift(&self) -> Option<DriftSignals> {
        self.lock().drift.signals()
    }

    /// Predictions currently remembered.
    pub fn remembered(&self) -> usize {
        self.lock().ring.len()
    }

    /// Window size setting (of both windows).
    pub fn window_size(&self) -> usize {
        self.window
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use chrono::DateTime;

    use super::ids::NONCE_BITS;
    use super::*;

    pub(crate) fn model() -> Arc<ModelProfile> {
        Arc::new(ModelProfile {
            version: "v1".into(),
            classes: vec!["ham".into(), "spam".into()],
            prior: vec![0.7, 0.3],
        })
    }

    #[test]
    fn feedback_lifecycle_and_errors() {
        let s = FeedbackStore::new(10, Duration::from_secs(60), 100, None).unwrap();
        let m = model();
        let id = s.remember(&m, 1, 0.9, Some(0.1)).to_string();
        assert_eq!(
            s.submit(&id, "nope").unwrap_err(),
            FeedbackError::InvalidLabel("ham, spam".into())
        );
        let r = s.submit(&id, "ham").unwrap();
        assert_eq!(r.predicted_label, "spam");
        assert_eq!(s.submit(&id, "ham").unwrap_err(), FeedbackError::Duplicate);
        assert_eq!(
            s.submit("not-a-uuid", "ham").unwrap_err(),
            FeedbackError::UnknownId
        );
        assert_eq!(
            s.submit(&uuid::Uuid::new_v4().to_string(), "ham")
                .unwrap_err(),
            FeedbackError::UnknownId
        );
        let q = s.live_quality();
        assert_eq!(q.samples, 1);
        assert_eq!(q.evaluation.unwrap().accuracy, 0.0);
    }

    #[test]
    fn records_carry_the_id_as_issued() {
        let s = FeedbackStore::new(10, Duration::from_secs(60), 10, None).unwrap();
        let m = model();
        let id = s.remember(&m, 0, 0.9, None);
        let issued = id.to_string();
        let upper = format!("urn:uuid:{}", issued.to_uppercase());
        let r = s.submit(&upper, "ham").unwrap();
        assert_eq!(r.prediction_id, issued);
        let simple = id.simple().to_string();
        assert_eq!(
            s.submit(&simple, "ham").unwrap_err(),
            FeedbackError::Duplicate
        );
    }

    #[test]
    fn expired_predictions_are_unknown() {
        let s = FeedbackStore::new(10, Duration::from_millis(0), 100, None).unwrap();
        let id = s.remember(&model(), 0, 0.9, None).to_string();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.submit(&id, "ham").unwrap_err(), FeedbackError::UnknownId);
    }

    #[test]
    fn a_forged_or_altered_id_is_unknown() {
        let s = FeedbackStore::new(10, Duration::from_secs(60), 10, None).unwrap();
        let id = s.remember(&model(), 0, 0.9, None);
        let (high, low) = id.as_u64_pair();
        // Every bit of the nonce is checked.
        for bit in 0..NONCE_BITS {
            let forged = Uuid::from_u64_pair(high, low ^ (1 << bit)).to_string();
            assert_eq!(
                s.submit(&forged, "ham").unwrap_err(),
                FeedbackError::UnknownId
            );
        }
        // A neighbouring sequence number that was never issued.
        let (seq, nonce) = s.ids.decode(id).unwrap();
        let next = s.ids.encode(seq + 1, nonce).to_string();
        assert_eq!(
            s.submit(&next, "ham").unwrap_err(),
            FeedbackError::UnknownId
        );
        assert!(s.submit(&id.to_string(), "ham").is_ok());
    }

    #[test]
    fn records_carry_the_prediction_time() {
        let s = FeedbackStore::new(10, Duration::from_secs(60), 10, None).unwrap();
        let before = Utc::now();
        let id = s.remember(&model(), 0, 0.9, None).to_string();
        let after = Utc::now();
        std::thread::sleep(Duration::from_millis(20));
        let submit_started = Utc::now();
        let r = s.submit(&id, "ham").unwrap();
        let submit_ended = Utc::now();
        let at = DateTime::parse_from_rfc3339(&r.predicted_at).unwrap();
        let received = DateTime::parse_from_rfc3339(&r.received_at).unwrap();
        // Bounds from clock readings only, none on how fast this machine is:
        // the prediction time is the feedback time minus the monotonic age of
        // the prediction, so it is no earlier than `before` and no later than
        // `after` plus however long `submit` took (the age is read inside
        // it); milliseconds as written to the log, so 2 ms of rounding.
        let ms = chrono::Duration::milliseconds(1);
        let slack = submit_ended - submit_started + ms * 2;
        assert!(
            at >= before - ms * 2 && at <= after + slack,
            "{at} not within {before}..{after} + {slack}"
        );
        assert!(received >= submit_started - ms && received <= submit_ended + ms);
        assert!(received - at >= ms * 19, "{at} then {received}");
    }
}
