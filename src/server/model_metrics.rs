//! The metrics of each model: every per-request and per-model series
//! carries a `model` label, the server's name for the model. Names are at
//! most `models.max_count`, so the label is bounded; the HTTP metrics put
//! a name in it only when it is one of the repository's (see
//! [`ModelNames::label`]).
//!
//! A model's series are created when it loads and removed when it is
//! unloaded, so an unloaded model leaves no stale gauge behind.

use std::sync::Arc;

use prometheus::{Histogram, HistogramOpts, IntCounter};

use super::loader::ServingModel;
use super::metrics::{created_at_secs, Metrics, POLL_RESULTS};
use crate::monitoring::{DriftSignals, LiveQuality};

/// The routes of the default model that do not name it.
const DEFAULT_ROUTES: [&str; 4] = ["/predict", "/predict/batch", "/model", "/model/quality"];

/// The route prefixes whose next path segment names a model.
const NAMED_PREFIXES: [&str; 3] = ["/models/", "/v2/models/", "/v2/repository/models/"];

/// The repository's names, for the `model` label of the HTTP metrics.
#[derive(Debug, Default)]
pub struct ModelNames {
    /// The default model.
    pub default: Arc<str>,
    /// Every model of the repository.
    pub names: Vec<Arc<str>>,
}

impl ModelNames {
    /// The `model` label of a request to `route` (a route template) at
    /// `path`: the default model's name on its own routes, the name in the
    /// path when it is one of the repository's, else empty.
    pub fn label(&self, route: &str, path: &str) -> &str {
        if DEFAULT_ROUTES.contains(&route) {
            return &self.default;
        }
        let Some(rest) = NAMED_PREFIXES
            .iter()
            .find_map(|prefix| route.starts_with(prefix).then(|| path.strip_prefix(prefix)))
            .flatten()
        else {
            return "";
        };
        let segment = rest.split('/').next().unwrap_or("");
        self.names
            .iter()
            .find(|n| &***n == segment)
            .map_or("", |n| n)
    }
}

/// One loaded model's per-document series, resolved once per load so
/// scoring a document looks nothing up.
#[derive(Clone)]
pub struct ModelSeries {
    /// `nbserve_predictions_total`, by class index.
    pub predictions: Vec<IntCounter>,
    /// `nbserve_prediction_duration_seconds`.
    pub duration: Histogram,
    /// `nbserve_prediction_confidence`.
    pub confidence: Histogram,
    /// `nbserve_oov_token_ratio`.
    pub oov: Histogram,
    /// `nbserve_batch_size`.
    pub batch_size: Histogram,
}

impl ModelSeries {
    /// Series registered nowhere: a model not (yet) published counts
    /// into them.
    pub fn detached() -> Self {
        let histogram = || {
            Histogram::with_opts(HistogramOpts::new("detached", "not exported"))
                .expect("valid histogram")
        };
        Self {
            predictions: Vec::new(),
            duration: histogram(),
            confidence: histogram(),
            oov: histogram(),
            batch_size: histogram(),
        }
    }

    /// Counts one prediction of class `label`.
    pub fn count_prediction(&self, label: usize) {
        if let Some(counter) = self.predictions.get(label) {
            counter.inc();
        }
    }
}

/// The label values a model's series were published with.
#[derive(Debug, Default)]
pub struct Published {
    /// `nbserve_model_info`'s labels after `model`.
    info: Option<[String; 5]>,
    /// The classes its per-label series were made for.
    classes: Vec<String>,
}

/// The states `nbserve_model_state` shows.
pub const MODEL_STATES: [&str; 3] = ["ready", "loading", "unavailable"];

impl Metrics {
    /// Sets the repository's names (for the HTTP metrics' `model` label)
    /// and makes each model's state, reload and poll series, so rate() and
    /// alerts see a zero baseline.
    pub fn set_model_names(&self, default: &str, names: &[Arc<str>]) {
        for name in names {
            for result in ["success", "failure"] {
                self.model_reloads.with_label_values(&[name, result]);
            }
            for result in POLL_RESULTS {
                self.model_polls.with_label_values(&[name, result]);
            }
            self.create_challenger_series(name);
        }
        self.model_names.store(Arc::new(ModelNames {
            default: Arc::from(default),
            names: names.to_vec(),
        }));
    }

    /// Shows `model` in `state` (one of [`MODEL_STATES`]).
    pub fn set_model_state(&self, model: &str, state: &str) {
        for s in MODEL_STATES {
            self.model_state
                .with_label_values(&[model, s])
                .set(i64::from(s == state));
        }
    }

    /// The per-document series of `model` with these `classes`.
    pub fn series(&self, model: &str, classes: &[String]) -> ModelSeries {
        ModelSeries {
            predictions: classes
                .iter()
                .map(|label| self.predictions.with_label_values(&[model, label]))
                .collect(),
            duration: self.prediction_duration.with_label_values(&[model]),
            confidence: self.prediction_confidence.with_label_values(&[model]),
            oov: self.oov_ratio.with_label_values(&[model]),
            batch_size: self.batch_size.with_label_values(&[model]),
        }
    }

    fn published(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Published>> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `served` as the model `model`: its identity, stored
    /// evaluation, gate verdict, times and size. Series of a replaced
    /// version's labels that this one lacks are removed.
    pub fn set_model(&self, model: &str, served: &ServingModel) {
        let meta = &served.loaded.meta;
        let loaded_at_secs = served.loaded_at.timestamp_millis() as f64 / 1000.0;
        let info = [
            meta.model.name.clone(),
            meta.model.version.clone(),
            meta.checksum.clone(),
            served
                .registry_version
                .as_ref()
                .map_or_else(String::new, |v| v.version.clone()),
            meta.mlflow_run_id.clone().unwrap_or_default(),
        ];
        let first = {
            let mut published = self.published();
            let first = !published.contains_key(model);
            let entry = published.entry(model.to_owned()).or_default();
            if let Some(old) = entry.info.take() {
                let _ = self
                    .model_info
                    .remove_label_values(&info_labels(model, &old));
            }
            self.forget_labels(model, &entry.classes, &meta.classes);
            entry.classes = meta.classes.clone();
            self.model_info
                .with_label_values(&info_labels(model, &info))
                .set(1);
            entry.info = Some(info);
            first
        };
        let labels = [model];
        self.model_f1_macro
            .with_label_values(&labels)
            .set(meta.evaluation.f1_macro);
        self.model_balanced_accuracy
            .with_label_values(&labels)
            .set(meta.evaluation.balanced_accuracy);
        self.model_accuracy
            .with_label_values(&labels)
            .set(meta.evaluation.accuracy);
        self.gate_min_f1_macro
            .with_label_values(&labels)
            .set(served.gate.threshold);
        self.gate_f1_macro
            .with_label_values(&labels)
            .set(served.gate.f1_macro);
        self.model_loaded_timestamp
            .with_label_values(&labels)
            .set(loaded_at_secs);
        self.model_created_timestamp
            .with_label_values(&labels)
            .set(created_at_secs(&meta.created_at));
        self.model_resident_bytes
            .with_label_values(&labels)
            .set(i64::try_from(served.resident_bytes).unwrap_or(i64::MAX));
        // No live figures until feedback arrives: NaN, not a misleading 0.
        if first {
            for g in [
                &self.live_f1_macro,
                &self.live_balanced_accuracy,
                &self.live_accuracy,
            ] {
                g.with_label_values(&labels).set(f64::NAN);
            }
        }
        for label in &meta.classes {
            for predicted in &meta.classes {
                self.feedback_confusion
                    .with_label_values(&[model, label, predicted]);
            }
        }
        self.set_model_state(model, "ready");
    }

    /// Removes the per-label series of `model`'s `old` classes that `new`
    /// lacks (every one when `new` is empty).
    fn forget_labels(&self, model: &str, old: &[String], new: &[String]) {
        let gone = |label: &String| !new.contains(label);
        for label in old {
            if gone(label) {
                let _ = self.predictions.remove_label_values(&[model, label]);
                let _ = self
                    .live_predicted_label_share
                    .remove_label_values(&[model, label]);
            }
            for other in old {
                if gone(label) || gone(other) {
                    let _ = self
                        .feedback_confusion
                        .remove_label_values(&[model, label, other]);
                }
            }
        }
    }

    /// Removes every series of the unloaded `model` but its state, reload
    /// and poll counters (which go on counting its loads).
    pub fn forget_model(&self, model: &str) {
        if let Some(old) = self.published().remove(model) {
            if let Some(info) = old.info {
                let _ = self
                    .model_info
                    .remove_label_values(&info_labels(model, &info));
            }
            self.forget_labels(model, &old.classes, &[]);
        }
        let labels = [model];
        for g in [
            &self.model_f1_macro,
            &self.model_balanced_accuracy,
            &self.model_accuracy,
            &self.gate_min_f1_macro,
            &self.gate_f1_macro,
            &self.model_loaded_timestamp,
            &self.model_created_timestamp,
            &self.live_f1_macro,
            &self.live_balanced_accuracy,
            &self.live_accuracy,
            &self.live_label_drift_js,
            &self.live_mean_confidence,
            &self.live_oov_ratio,
        ] {
            let _ = g.remove_label_values(&labels);
        }
        let _ = self.live_window_samples.remove_label_values(&labels);
        let _ = self.model_resident_bytes.remove_label_values(&labels);
        for h in [
            &self.prediction_duration,
            &self.prediction_confidence,
            &self.oov_ratio,
            &self.batch_size,
        ] {
            let _ = h.remove_label_values(&labels);
        }
        self.set_model_state(model, "unavailable");
    }

    /// Counts one poll of `model`'s source; `result` is one of [`POLL_RESULTS`].
    pub fn count_poll(&self, model: &str, result: &str) {
        self.model_polls.with_label_values(&[model, result]).inc();
    }

    /// Counts one load or reload attempt of `model` (`success` or `failure`).
    pub fn count_reload(&self, model: &str, succeeded: bool) {
        let result = if succeeded { "success" } else { "failure" };
        self.model_reloads.with_label_values(&[model, result]).inc();
    }

    /// Copies `model`'s live figures into their gauges (at scrape time).
    /// Figures not yet known keep their previous value (NaN at load).
    pub fn set_live(&self, model: &str, live: &LiveQuality, drift: Option<&DriftSignals>) {
        let labels = [model];
        self.live_window_samples
            .with_label_values(&labels)
            .set(live.samples as i64);
        if let Some(e) = &live.evaluation {
            self.live_f1_macro
                .with_label_values(&labels)
                .set(e.f1_macro);
            self.live_balanced_accuracy
                .with_label_values(&labels)
                .set(e.balanced_accuracy);
            self.live_accuracy
                .with_label_values(&labels)
                .set(e.accuracy);
        }
        if let Some(d) = drift {
            self.live_label_drift_js
                .with_label_values(&labels)
                .set(d.label_js_divergence);
            self.live_mean_confidence
                .with_label_values(&labels)
                .set(d.mean_confidence);
            self.live_oov_ratio
                .with_label_values(&labels)
                .set(d.mean_oov_ratio);
            for (label, share) in &d.predicted_label_share {
                self.live_predicted_label_share
                    .with_label_values(&[model, label])
                    .set(*share);
            }
        }
    }
}

/// `nbserve_model_info`'s label values.
fn info_labels<'a>(model: &'a str, info: &'a [String; 5]) -> [&'a str; 6] {
    [model, &info[0], &info[1], &info[2], &info[3], &info[4]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_label_is_a_repository_name_or_empty() {
        let names = ModelNames {
            default: "spam-nb".into(),
            names: vec!["spam-cnb".into(), "spam-nb".into()],
        };
        let label = |route, path| names.label(route, path);
        assert_eq!(label("/predict", "/predict"), "spam-nb");
        assert_eq!(label("/model/quality", "/model/quality"), "spam-nb");
        assert_eq!(
            label("/models/{name}/predict", "/models/spam-cnb/predict"),
            "spam-cnb"
        );
        assert_eq!(
            label("/v2/models/{name}/infer", "/v2/models/spam-cnb/infer"),
            "spam-cnb"
        );
        assert_eq!(
            label(
                "/v2/repository/models/{name}/load",
                "/v2/repository/models/spam-nb/load"
            ),
            "spam-nb"
        );
        // Unknown names never become label values.
        assert_eq!(label("/models/{name}", "/models/anything-at-all"), "");
        assert_eq!(label("/models/{name}", "/models/spam-cnb%2F"), "");
        assert_eq!(label("/health", "/health"), "");
        assert_eq!(label("unmatched", "/models/spam-nb"), "");
    }
}
