//! Every Prometheus metric the server exports, described once (the edge,
//! [`super::edge`], records the HTTP ones).
//!
//! Model quality measured offline is "evaluation"; this module is "metrics".

use std::sync::Arc;

use arc_swap::ArcSwap;

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::exemplars::LatencyExemplars;
use super::model_metrics::{ModelNames, Published};
use super::openmetrics;

/// Route label for requests that matched no route (bounded cardinality).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The request-latency histogram, the one with exemplars.
const HTTP_DURATION: &str = "nbserve_http_request_duration_seconds";

/// 50 µs … 10 s: sub-millisecond predictions to slow batch requests, with
/// exact bounds at the usual SLO values (5, 10, 50, 100 ms).
const LATENCY: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// Shares in [0, 1].
const UNIT: &[f64] = &[
    0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
];
/// Top-class probabilities (at least 1 / classes).
const CONFIDENCE: &[f64] = &[
    0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 0.999, 1.0,
];

/// Constructors that read as one line per metric in [`metrics!`].
trait Make: Sized {
    /// Labels or buckets, by metric kind.
    type Extra: ?Sized;
    fn make(name: &str, help: &str, extra: &Self::Extra) -> Self;
}

macro_rules! make_plain {
    ($($ty:ty),*) => {$(
        impl Make for $ty {
            type Extra = ();
            fn make(name: &str, help: &str, _: &()) -> Self {
                <$ty>::new(name, help).expect("valid metric")
            }
        }
    )*};
}
make_plain!(IntCounter, IntGauge, Gauge);

macro_rules! make_labelled {
    ($($ty:ty),*) => {$(
        impl Make for $ty {
            type Extra = [&'static str];
            fn make(name: &str, help: &str, labels: &[&'static str]) -> Self {
                <$ty>::new(Opts::new(name, help), labels).expect("valid metric")
            }
        }
    )*};
}
make_labelled!(IntCounterVec, IntGaugeVec, GaugeVec);

impl Make for Histogram {
    type Extra = [f64];
    fn make(name: &str, help: &str, buckets: &[f64]) -> Self {
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
            .expect("valid histogram")
    }
}

impl Make for HistogramVec {
    /// Buckets, then labels.
    type Extra = (Vec<f64>, &'static [&'static str]);
    fn make(name: &str, help: &str, (buckets, labels): &Self::Extra) -> Self {
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.clone()),
            labels,
        )
        .expect("valid histogram")
    }
}

/// Declares [`Metrics`]: each metric is one entry — field, type, name, help,
/// labels or buckets — and is created and registered from it.
macro_rules! metrics {
    ($( $(#[doc = $doc:literal])* $field:ident: $ty:ty = ($name:literal, $help:literal, $extra:expr); )*) => {
        /// The server's metrics, registered in their own registry.
        pub struct Metrics {
            registry: Registry,
            /// The repository's model names, for the `model` label of the
            /// HTTP metrics (see [`ModelNames`]).
            pub(super) model_names: ArcSwap<ModelNames>,
            /// The label values each model's series were published with.
            pub(super) published: std::sync::Mutex<std::collections::BTreeMap<String, Published>>,
            /// The request-latency histogram's `trace_id` exemplars.
            pub(super) latency_exemplars: LatencyExemplars,
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Metrics {
            fn create() -> Self {
                let m = Self {
                    registry: Registry::new(),
                    model_names: ArcSwap::from_pointee(ModelNames::default()),
                    published: Default::default(),
                    latency_exemplars: LatencyExemplars::new(HTTP_DURATION, LATENCY),
                    $( $field: <$ty as Make>::make($name, $help, &$extra), )*
                };
                $( m.register(Box::new(m.$field.clone())); )*
                m
            }

            /// Every metric the server registers, as collectors: what the
            /// generated reference (`nbserve reference metrics`) describes.
            pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
                #[allow(unused_mut)]
                let mut all: Vec<Box<dyn Collector>> = vec![$( Box::new(self.$field.clone()) ),*];
                #[cfg(target_os = "linux")]
                all.push(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
                all
            }
        }
    };
}

fn exponential(start: f64, factor: f64, count: usize) -> Vec<f64> {
    exponential_buckets(start, factor, count).expect("valid buckets")
}

/// The results `nbserve_feedback_total` counts: `unauthorized` counts
/// requests refused for want of `feedback.token`, the others items.
pub const FEEDBACK_RESULTS: [&str; 5] = [
    "accepted",
    "unknown_id",
    "invalid_label",
    "duplicate",
    "unauthorized",
];

/// The results `nbserve_examples_total` counts: `accepted` counts examples,
/// the others refused requests.
pub const EXAMPLE_RESULTS: [&str; 8] = [
    "accepted",
    "disabled",
    "unauthorized",
    "invalid_request",
    "invalid_batch",
    "invalid_text",
    "invalid_label",
    "log_unavailable",
];

/// Unix seconds of an artifact's RFC 3339 `created_at`; NaN when it does not
/// parse, so a freshness alert stays silent rather than judging a made-up age.
pub(super) fn created_at_secs(created_at: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(created_at)
        .map_or(f64::NAN, |t| t.timestamp_millis() as f64 / 1000.0)
}

/// The outcomes `nbserve_challenger_promotions_total` counts: `refused`
/// is every other 4xx (nothing to promote, no holdout, the store busy...),
/// `failed` a 5xx.
pub const PROMOTION_OUTCOMES: [&str; 5] = [
    "promoted",
    "gate_rejected",
    "regression",
    "refused",
    "failed",
];

/// The results `nbserve_model_polls_total` counts.
pub const POLL_RESULTS: [&str; 4] = ["unchanged", "reloaded", "refused", "error"];

metrics! {
    /// Requests by method, route template and status.
    http_requests: IntCounterVec = ("nbserve_http_requests_total", "HTTP requests by method, route, status and model (empty for routes of no model).", ["method", "route", "status", "model"]);
    /// Request latency by method and route template.
    http_duration: HistogramVec = ("nbserve_http_request_duration_seconds", "HTTP request latency by method, route and model (empty for routes of no model).", (LATENCY.to_vec(), &["method", "route", "model"]));
    /// Requests being served.
    http_in_flight: IntGauge = ("nbserve_http_requests_in_flight", "HTTP requests being served.", ());
    /// Predictions by predicted label.
    predictions: IntCounterVec = ("nbserve_predictions_total", "Documents classified, by model and predicted label.", ["model", "label"]);
    /// Model time per document.
    prediction_duration: HistogramVec = ("nbserve_prediction_duration_seconds", "Model time (tokenize + score) per document, by model.", (exponential(0.000001, 2.5, 16), &["model"]));
    /// Probability of the predicted class.
    prediction_confidence: HistogramVec = ("nbserve_prediction_confidence", "Probability of the predicted class, by model.", (CONFIDENCE.to_vec(), &["model"]));
    /// Texts per batch request.
    batch_size: HistogramVec = ("nbserve_batch_size", "Texts per batch request (/predict/batch, V2 infer), by model.", (exponential(1.0, 2.0, 12), &["model"]));
    /// Share of a document's tokens unseen at training time.
    oov_ratio: HistogramVec = ("nbserve_oov_token_ratio", "Share of a document's tokens not in the vocabulary, by model.", (UNIT.to_vec(), &["model"]));
    /// 1 for each model being served.
    model_info: IntGaugeVec = ("nbserve_model_info", "Each model being served (value 1): model is the server's name for it, name and version the artifact's; source_* are its MLflow registry version and run.", ["model", "name", "version", "sha256", "source_version", "source_run_id"]);
    /// Stored F1 macro of each served model.
    model_f1_macro: GaugeVec = ("nbserve_model_f1_macro", "Stored F1 macro of the served model.", ["model"]);
    /// Stored balanced accuracy of each served model.
    model_balanced_accuracy: GaugeVec = ("nbserve_model_balanced_accuracy", "Stored balanced accuracy of the served model.", ["model"]);
    /// Stored accuracy of each served model.
    model_accuracy: GaugeVec = ("nbserve_model_accuracy", "Stored accuracy of the served model.", ["model"]);
    /// The gate minimum in force for each model.
    gate_min_f1_macro: GaugeVec = ("nbserve_gate_min_f1_macro", "Minimum F1 macro the deployment gate requires of the model.", ["model"]);
    /// F1 macro the gate judged each served model on (stored or holdout).
    gate_f1_macro: GaugeVec = ("nbserve_gate_f1_macro", "F1 macro the deployment gate judged the served model on (stored or holdout).", ["model"]);
    /// Each model's state (value 1 for its current state).
    model_state: IntGaugeVec = ("nbserve_model_state", "Each model of the repository (value 1) in its state: ready, loading or unavailable.", ["model", "state"]);
    /// Each served model's estimated resident bytes.
    model_resident_bytes: IntGaugeVec = ("nbserve_model_resident_bytes", "Estimated bytes each served model keeps (vocabulary and scoring tables), counted against models.max_total_bytes.", ["model"]);
    /// The configured `models.max_total_bytes`.
    models_max_total_bytes: IntGauge = ("nbserve_models_max_total_bytes", "Configured memory budget across loaded models (models.max_total_bytes).", ());
    /// The configured `server.max_concurrency` (saturation denominator).
    max_concurrency: IntGauge = ("nbserve_max_concurrency", "Configured limit of API requests in progress (server.max_concurrency).", ());
    /// Time a large batch waited for a blocking-pool slot.
    batch_slot_wait: Histogram = ("nbserve_batch_slot_wait_seconds", "Time a large /predict/batch request waited for a scoring slot.", *LATENCY);
    /// Source polls by result.
    model_polls: IntCounterVec = ("nbserve_model_polls_total", "Polls of each model's source by result (unchanged, reloaded, refused, error).", ["model", "result"]);
    /// Reload attempts by result.
    model_reloads: IntCounterVec = ("nbserve_model_reloads_total", "Model load and reload attempts by model and result.", ["model", "result"]);
    /// Reloads whose caller went away before they finished.
    model_reloads_abandoned: IntCounter = ("nbserve_model_reloads_abandoned_total", "Reloads whose client went away (timeout, disconnect) before they finished; each still completes.", ());
    /// When the served model's artifact was created (its `created_at`).
    model_created_timestamp: GaugeVec = ("nbserve_model_created_timestamp_seconds", "Unix time the served model's artifact was created (its created_at; NaN when unparsable): the model's age is time() minus this.", ["model"]);
    /// When the served model was loaded.
    model_loaded_timestamp: GaugeVec = ("nbserve_model_loaded_timestamp_seconds", "Unix time the served model was loaded.", ["model"]);
    /// Open client connections.
    connections_open: IntGauge = ("nbserve_connections_open", "Open client connections.", ());
    /// Connections closed at once because `server.max_connections` were open.
    connections_refused: IntCounter = ("nbserve_connections_refused_total", "Connections closed on accept because server.max_connections were open.", ());
    /// Connections closed because a response write made no progress for `server.write_timeout_ms`.
    connections_write_timeouts: IntCounter = ("nbserve_connection_write_timeouts_total", "Connections closed because the client did not read its response within server.write_timeout_ms.", ());
    /// Request-body bytes admitted and not yet released.
    body_budget_reserved: IntGauge = ("nbserve_body_budget_reserved_bytes", "Request-body bytes reserved against server.max_inflight_body_bytes.", ());
    /// Requests shed because their body did not fit the byte budget.
    body_budget_shed: IntCounter = ("nbserve_body_budget_shed_total", "Requests answered 503 because their body did not fit server.max_inflight_body_bytes.", ());
    /// Requests shed because the server was at its concurrency limit.
    load_shed: IntCounter = ("nbserve_load_shed_total", "Requests answered 503 because the server was at its concurrency limit.", ());
    /// Feedback by result.
    feedback: IntCounterVec = ("nbserve_feedback_total", "Label feedback items by result; result=unauthorized counts requests refused without the feedback token.", ["result"]);
    /// Failed feedback-log writes, syncs and reopens.
    feedback_log_errors: IntCounter = ("nbserve_feedback_log_errors_total", "Failed feedback-log writes, syncs and reopens (the feedback is still counted).", ());
    /// Feedback-log lines dropped because the writer's queue was full.
    feedback_log_dropped: IntCounter = ("nbserve_feedback_log_dropped_total", "Feedback-log lines dropped because the log writer's queue was full (a slow or stalled disk; never with log_fsync=always).", ());
    /// Bytes of prediction text kept for feedback lines.
    feedback_kept_text_bytes: IntGauge = ("nbserve_feedback_kept_text_bytes", "Bytes of prediction text kept for feedback lines (feedback.keep_text; at most feedback.text_budget_bytes).", ());
    /// `POST /examples` outcomes: examples accepted, requests refused by reason.
    examples: IntCounterVec = ("nbserve_examples_total", "POST /examples: examples accepted (result=accepted), requests refused by reason (other results).", ["result"]);
    /// Labelled predictions by true and predicted label (classes² series).
    feedback_confusion: IntCounterVec = ("nbserve_feedback_confusion_total", "Labelled predictions by model, true and predicted label.", ["model", "true_label", "predicted_label"]);
    /// F1 macro over the live feedback window.
    live_f1_macro: GaugeVec = ("nbserve_live_f1_macro", "F1 macro over the model's live feedback window.", ["model"]);
    /// Balanced accuracy over the live feedback window.
    live_balanced_accuracy: GaugeVec = ("nbserve_live_balanced_accuracy", "Balanced accuracy over the model's live feedback window.", ["model"]);
    /// Accuracy over the live feedback window.
    live_accuracy: GaugeVec = ("nbserve_live_accuracy", "Accuracy over the model's live feedback window.", ["model"]);
    /// Labelled predictions in the live window.
    live_window_samples: IntGaugeVec = ("nbserve_live_window_samples", "Labelled predictions in the model's live evaluation window.", ["model"]);
    /// Jensen–Shannon divergence of recent predicted labels vs. the training prior.
    live_label_drift_js: GaugeVec = ("nbserve_live_label_drift_js", "Jensen-Shannon divergence (base 2) of the model's recent predicted labels vs. its training prior.", ["model"]);
    /// Share of each label among recent predictions.
    live_predicted_label_share: GaugeVec = ("nbserve_live_predicted_label_share", "Share of each label among the model's recent predictions.", ["model", "label"]);
    /// Mean top probability over recent predictions.
    live_mean_confidence: GaugeVec = ("nbserve_live_mean_confidence", "Mean probability of the predicted class over the model's recent predictions.", ["model"]);
    /// Mean out-of-vocabulary share over recent predictions.
    live_oov_ratio: GaugeVec = ("nbserve_live_oov_ratio", "Mean out-of-vocabulary token share over the model's recent predictions.", ["model"]);
    /// Examples each model's challenger learned and forgot.
    challenger_examples: IntCounterVec = ("nbserve_challenger_examples_total", "Examples the model's challenger learned (change=learned) and forgot (change=forgotten) through POST /learn and POST /forget.", ["model", "change"]);
    /// Shadow-scored predictions, by agreement with the champion.
    challenger_shadow: IntCounterVec = ("nbserve_challenger_shadow_predictions_total", "Served predictions of the model its challenger also scored (learning.shadow_scoring), by whether it chose the champion's class (result=agreed or disagreed).", ["model", "result"]);
    /// Live F1 macro of champion and challenger on the same labels.
    challenger_live_f1_macro: GaugeVec = ("nbserve_challenger_live_f1_macro", "F1 macro of the model (role=champion) and its challenger (role=challenger) over the same labelled shadow-scored predictions (NaN while there are none).", ["model", "role"]);
    /// Labels in the live comparison window.
    challenger_live_labels: IntGaugeVec = ("nbserve_challenger_live_labels", "Labelled predictions both the model and its challenger scored, in the live comparison window (at most feedback.window).", ["model"]);
    /// Bytes each challenger's learned part holds.
    challenger_learned_bytes: IntGaugeVec = ("nbserve_challenger_learned_bytes", "Bytes the model's challenger's learned part holds (its counts and the ledger of learned examples; at most learning.max_bytes).", ["model"]);
    /// Challengers reset because their champion was replaced.
    challenger_resets: IntCounterVec = ("nbserve_challenger_resets_total", "Challengers of the model dropped because the model they learned on was replaced (reload, poll or promotion) before the next learn or forget, which starts a new one on the new model (the learning log keeps what was learned).", ["model"]);
    /// Promotion attempts by trigger and outcome.
    challenger_promotions: IntCounterVec = ("nbserve_challenger_promotions_total", "Challenger promotions attempted for the model, by trigger (manual: POST /admin/challenger/promote; auto: learning.auto_promote) and outcome (promoted, gate_rejected, regression, refused, failed).", ["model", "trigger", "outcome"]);
    /// Spans the trace exporter sent to the collector.
    trace_spans_exported: IntCounter = ("nbserve_trace_spans_exported_total", "OpenTelemetry spans accepted by the collector (0 while trace.enabled is off).", ());
    /// Spans lost on the way to the collector, by reason.
    trace_spans_dropped: IntCounterVec = ("nbserve_trace_spans_dropped_total", "OpenTelemetry spans dropped: reason=queue_full (the exporter's bounded queue, OTEL_BSP_MAX_QUEUE_SIZE, was full) or export_failed (the collector was down, slow or refused them).", ["reason"]);
    /// The build (value 1, label `version`).
    build_info: IntGaugeVec = ("nbserve_build_info", "Build information (value 1).", ["version"]);
}

impl Metrics {
    /// Creates and registers every metric; `version` goes into `nbserve_build_info`.
    pub fn new(version: &str) -> Arc<Self> {
        let m = Self::create();
        m.build_info.with_label_values(&[version]).set(1);
        #[cfg(target_os = "linux")]
        m.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        // Each model's live figures, reload and poll results are created
        // with the model (see `model_metrics`).
        for result in FEEDBACK_RESULTS {
            m.feedback.with_label_values(&[result]);
        }
        for result in EXAMPLE_RESULTS {
            m.examples.with_label_values(&[result]);
        }
        Arc::new(m)
    }

    fn register(&self, c: Box<dyn Collector>) {
        self.registry.register(c).expect("unique metric names");
    }

    /// Makes the challenger series of `model`, so rate() and alerts see a
    /// zero baseline.
    pub(super) fn create_challenger_series(&self, model: &str) {
        for change in ["learned", "forgotten"] {
            self.challenger_examples.with_label_values(&[model, change]);
        }
        for result in ["agreed", "disagreed"] {
            self.challenger_shadow.with_label_values(&[model, result]);
        }
        for trigger in ["manual", "auto"] {
            for outcome in PROMOTION_OUTCOMES {
                self.challenger_promotions
                    .with_label_values(&[model, trigger, outcome]);
            }
        }
        self.challenger_learned_bytes.with_label_values(&[model]);
        self.challenger_resets.with_label_values(&[model]);
        self.set_challenger_live(model, &crate::server::shadow::LiveComparison::default());
    }

    /// The live comparison of `model` and its challenger.
    pub fn set_challenger_live(&self, model: &str, live: &crate::server::shadow::LiveComparison) {
        let f1 = &self.challenger_live_f1_macro;
        for (role, value) in [
            ("champion", live.champion_f1_macro),
            ("challenger", live.challenger_f1_macro),
        ] {
            f1.with_label_values(&[model, role])
                .set(value.unwrap_or(f64::NAN));
        }
        self.challenger_live_labels
            .with_label_values(&[model])
            .set(i64::try_from(live.labels).unwrap_or(i64::MAX));
    }

    /// Counts one reload abandoned by its caller.
    pub fn count_abandoned_reload(&self) {
        self.model_reloads_abandoned.inc();
    }

    /// Brings the trace exporter's counts (kept by the exporter, which
    /// knows nothing of this registry) into their counters.
    pub fn sync_trace_counts(&self, counts: crate::telemetry::otel::SpanCounts) {
        let catch_up = |c: &IntCounter, total: u64| c.inc_by(total.saturating_sub(c.get()));
        catch_up(&self.trace_spans_exported, counts.exported);
        let dropped = &self.trace_spans_dropped;
        catch_up(
            &dropped.with_label_values(&["queue_full"]),
            counts.dropped_queue_full,
        );
        catch_up(
            &dropped.with_label_values(&["export_failed"]),
            counts.dropped_export_failed,
        );
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }

    /// The OpenMetrics exposition of every metric, the request-latency
    /// buckets with their `trace_id` exemplars.
    pub fn render_openmetrics(&self) -> String {
        openmetrics::encode(&self.registry.gather(), self.latency_exemplars.snapshot())
    }
}
#[cfg(test)]
mod tests {
    use super::created_at_secs;

    #[test]
    fn created_at_parses_rfc3339_with_offsets_and_fractions() {
        assert_eq!(created_at_secs("2020-01-02T03:04:05Z"), 1_577_934_245.0);
        assert_eq!(
            created_at_secs("2020-01-02T04:04:05+01:00"),
            1_577_934_245.0
        );
        assert_eq!(
            created_at_secs("2020-01-02T03:04:05.250Z"),
            1_577_934_245.25
        );
    }

    #[test]
    fn unparsable_created_at_is_nan_not_zero() {
        // 0 would read as a model 56 years old and page.
        assert!(created_at_secs("yesterday").is_nan());
        assert!(created_at_secs("").is_nan());
    }
}
