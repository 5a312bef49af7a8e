//! Every Prometheus metric the server exports, described once, plus the HTTP
//! middleware that records request counts and latencies.
//!
//! Model quality measured offline is "evaluation"; this module is "metrics".

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    exponential_buckets, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::artifact::ModelMeta;
use crate::gate::GatePass;

/// Route label for requests that matched no route (bounded cardinality).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The server's metrics, registered in their own registry.
pub struct Metrics {
    registry: Registry,
    /// Requests by method, route template and status.
    pub http_requests: IntCounterVec,
    /// Request latency by method and route template.
    pub http_duration: HistogramVec,
    /// Requests being served.
    pub http_in_flight: IntGauge,
    /// Predictions by predicted label.
    pub predictions: IntCounterVec,
    /// The served model's `predictions` series, resolved once per model (see
    /// [`Metrics::count_prediction`]).
    prediction_series: ArcSwap<Vec<(String, IntCounter)>>,
    /// Model time per document.
    pub prediction_duration: Histogram,
    /// Probability of the predicted class.
    pub prediction_confidence: Histogram,
    /// Texts per batch request.
    pub batch_size: Histogram,
    /// Share of a document's tokens unseen at training time.
    pub oov_ratio: Histogram,
    /// 1 for the model being served.
    pub model_info: IntGaugeVec,
    /// Stored F1 macro of the served model.
    pub model_f1_macro: Gauge,
    /// Stored balanced accuracy of the served model.
    pub model_balanced_accuracy: Gauge,
    /// Stored accuracy of the served model.
    pub model_accuracy: Gauge,
    /// The configured gate minimum.
    pub gate_min_f1_macro: Gauge,
    /// F1 macro the gate judged the served model on (stored or holdout).
    pub gate_f1_macro: Gauge,
    /// The configured `server.max_concurrency` (saturation denominator).
    pub max_concurrency: IntGauge,
    /// Time a large batch waited for a blocking-pool slot.
    pub batch_slot_wait: Histogram,
    /// Reload attempts by result.
    pub model_reloads: IntCounterVec,
    /// When the served model was loaded.
    pub model_loaded_timestamp: Gauge,
    /// Requests shed because the server was at its concurrency limit.
    pub load_shed: IntCounter,
    /// Feedback by result.
    pub feedback: IntCounterVec,
    /// Labelled predictions by true and predicted label (classes² series).
    pub feedback_confusion: IntCounterVec,
    /// F1 macro over the live feedback window.
    pub live_f1_macro: Gauge,
    /// Balanced accuracy over the live feedback window.
    pub live_balanced_accuracy: Gauge,
    /// Accuracy over the live feedback window.
    pub live_accuracy: Gauge,
    /// Labelled predictions in the live window.
    pub live_window_samples: IntGauge,
    /// Jensen–Shannon divergence of recent predicted labels vs. the training prior.
    pub live_label_drift_js: Gauge,
    /// Share of each label among recent predictions.
    pub live_predicted_label_share: prometheus::GaugeVec,
    /// Mean top probability over recent predictions.
    pub live_mean_confidence: Gauge,
    /// Mean out-of-vocabulary share over recent predictions.
    pub live_oov_ratio: Gauge,
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid histogram")
}

impl Metrics {
    /// Creates and registers every metric; `version` goes into `nbserve_build_info`.
    pub fn new(version: &str) -> Arc<Self> {
        let registry = Registry::new();
        // 50 µs … 10 s: sub-millisecond predictions to slow batch requests,
        // with exact bounds at the usual SLO values (5, 10, 50, 100 ms).
        let latency = vec![
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let unit = vec![
            0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
        ];
        let confidence = vec![
            0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 0.999, 1.0,
        ];
        let m = Self {
            http_requests: IntCounterVec::new(
                Opts::new("nbserve_http_requests_total", "HTTP requests by method, route and status."),
                &["method", "route", "status"],
            )
            .expect("metric"),
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "nbserve_http_request_duration_seconds",
                    "HTTP request latency by method and route.",
                )
                .buckets(latency.clone()),
                &["method", "route"],
            )
            .expect("metric"),
            http_in_flight: IntGauge::new("nbserve_http_requests_in_flight", "HTTP requests being served.")
                .expect("metric"),
            predictions: IntCounterVec::new(
                Opts::new("nbserve_predictions_total", "Documents classified, by predicted label."),
                &["label"],
            )
            .expect("metric"),
            prediction_duration: histogram(
                "nbserve_prediction_duration_seconds",
                "Model time (tokenize + score) per document.",
                exponential_buckets(0.000001, 2.5, 16).expect("valid buckets"),
            ),
            prediction_confidence: histogram(
                "nbserve_prediction_confidence",
                "Probability of the predicted class.",
                confidence,
            ),
            batch_size: histogram(
                "nbserve_batch_size",
                "Texts per /predict/batch request.",
                exponential_buckets(1.0, 2.0, 12).expect("valid buckets"),
            ),
            oov_ratio: histogram(
                "nbserve_oov_token_ratio",
                "Share of a document's tokens not in the vocabulary.",
                unit,
            ),
            model_info: IntGaugeVec::new(
                Opts::new("nbserve_model_info", "The model being served (value 1)."),
                &["name", "version", "sha256"],
            )
            .expect("metric"),
            model_f1_macro: Gauge::new("nbserve_model_f1_macro", "Stored F1 macro of the served model.")
                .expect("metric"),
            model_balanced_accuracy: Gauge::new(
                "nbserve_model_balanced_accuracy",
                "Stored balanced accuracy of the served model.",
            )
            .expect("metric"),
            model_accuracy: Gauge::new("nbserve_model_accuracy", "Stored accuracy of the served model.")
                .expect("metric"),
            gate_min_f1_macro: Gauge::new(
                "nbserve_gate_min_f1_macro",
                "Minimum F1 macro the deployment gate requires.",
            )
            .expect("metric"),
            gate_f1_macro: Gauge::new(
                "nbserve_gate_f1_macro",
                "F1 macro the deployment gate judged the served model on (stored or holdout).",
            )
            .expect("metric"),
            max_concurrency: IntGauge::new(
                "nbserve_max_concurrency",
                "Configured limit of API requests in progress (server.max_concurrency).",
            )
            .expect("metric"),
            batch_slot_wait: histogram(
                "nbserve_batch_slot_wait_seconds",
                "Time a large /predict/batch request waited for a scoring slot.",
                latency.clone(),
            ),
            model_reloads: IntCounterVec::new(
                Opts::new("nbserve_model_reloads_total", "Model reload attempts by result."),
                &["result"],
            )
            .expect("metric"),
            model_loaded_timestamp: Gauge::new(
                "nbserve_model_loaded_timestamp_seconds",
                "Unix time the served model was loaded.",
            )
            .expect("metric"),
            load_shed: IntCounter::new(
                "nbserve_load_shed_total",
                "Requests answered 503 because the server was at its concurrency limit.",
            )
            .expect("metric"),
            feedback: IntCounterVec::new(
                Opts::new("nbserve_feedback_total", "Label feedback by result."),
                &["result"],
            )
            .expect("metric"),
            feedback_confusion: IntCounterVec::new(
                Opts::new(
                    "nbserve_feedback_confusion_total",
                    "Labelled predictions by true and predicted label.",
                ),
                &["true_label", "predicted_label"],
            )
            .expect("metric"),
            live_f1_macro: Gauge::new("nbserve_live_f1_macro", "F1 macro over the live feedback window.")
                .expect("metric"),
            live_balanced_accuracy: Gauge::new(
                "nbserve_live_balanced_accuracy",
                "Balanced accuracy over the live feedback window.",
            )
            .expect("metric"),
            live_accuracy: Gauge::new("nbserve_live_accuracy", "Accuracy over the live feedback window.")
                .expect("metric"),
            live_window_samples: IntGauge::new(
                "nbserve_live_window_samples",
                "Labelled predictions in the live evaluation window.",
            )
            .expect("metric"),
            live_label_drift_js: Gauge::new(
                "nbserve_live_label_drift_js",
                "Jensen-Shannon divergence (base 2) of recent predicted labels vs. the training prior.",
            )
            .expect("metric"),
            live_predicted_label_share: prometheus::GaugeVec::new(
                Opts::new(
                    "nbserve_live_predicted_label_share",
                    "Share of each label among recent predictions.",
                ),
                &["label"],
            )
            .expect("metric"),
            live_mean_confidence: Gauge::new(
                "nbserve_live_mean_confidence",
                "Mean probability of the predicted class over recent predictions.",
            )
            .expect("metric"),
            live_oov_ratio: Gauge::new(
                "nbserve_live_oov_ratio",
                "Mean out-of-vocabulary token share over recent predictions.",
            )
            .expect("metric"),
            prediction_series: ArcSwap::from_pointee(Vec::new()),
            registry,
        };
        let build_info = IntGaugeVec::new(
            Opts::new("nbserve_build_info", "Build information (value 1)."),
            &["version"],
        )
        .expect("metric");
        build_info.with_label_values(&[version]).set(1);
        let r = &m.registry;
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.http_requests.clone()),
            Box::new(m.http_duration.clone()),
            Box::new(m.http_in_flight.clone()),
            Box::new(m.predictions.clone()),
            Box::new(m.prediction_duration.clone()),
            Box::new(m.prediction_confidence.clone()),
            Box::new(m.batch_size.clone()),
            Box::new(m.oov_ratio.clone()),
            Box::new(m.model_info.clone()),
            Box::new(m.model_f1_macro.clone()),
            Box::new(m.model_balanced_accuracy.clone()),
            Box::new(m.model_accuracy.clone()),
            Box::new(m.gate_min_f1_macro.clone()),
            Box::new(m.gate_f1_macro.clone()),
            Box::new(m.max_concurrency.clone()),
            Box::new(m.batch_slot_wait.clone()),
            Box::new(m.model_reloads.clone()),
            Box::new(m.model_loaded_timestamp.clone()),
            Box::new(m.load_shed.clone()),
            Box::new(m.feedback.clone()),
            Box::new(m.feedback_confusion.clone()),
            Box::new(m.live_f1_macro.clone()),
            Box::new(m.live_balanced_accuracy.clone()),
            Box::new(m.live_accuracy.clone()),
            Box::new(m.live_window_samples.clone()),
            Box::new(m.live_label_drift_js.clone()),
            Box::new(m.live_predicted_label_share.clone()),
            Box::new(m.live_mean_confidence.clone()),
            Box::new(m.live_oov_ratio.clone()),
            Box::new(build_info),
        ];
        for c in collectors {
            r.register(c).expect("unique metric names");
        }
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector");
        // No live figures until feedback arrives: NaN, not a misleading 0.
        for g in [
            &m.live_f1_macro,
            &m.live_balanced_accuracy,
            &m.live_accuracy,
        ] {
            g.set(f64::NAN);
        }
        // Both results exist from the start so rate() and alerts see a zero baseline.
        for result in ["success", "failure"] {
            m.model_reloads.with_label_values(&[result]);
        }
        for result in ["accepted", "unknown_id", "invalid_label", "duplicate"] {
            m.feedback.with_label_values(&[result]);
        }
        Arc::new(m)
    }

    /// Publishes the served model's identity, stored evaluation and gate verdict.
    pub fn set_model(&self, meta: &ModelMeta, gate: &GatePass, loaded_at_secs: f64) {
        self.model_info.reset();
        self.model_info
            .with_label_values(&[&meta.model.name, &meta.model.version, &meta.checksum])
            .set(1);
        self.model_f1_macro.set(meta.evaluation.f1_macro);
        self.model_balanced_accuracy
            .set(meta.evaluation.balanced_accuracy);
        self.model_accuracy.set(meta.evaluation.accuracy);
        self.gate_min_f1_macro.set(gate.threshold);
        self.gate_f1_macro.set(gate.f1_macro);
        self.model_loaded_timestamp.set(loaded_at_secs);
        let series = meta
            .classes
            .iter()
            .map(|label| (label.clone(), self.predictions.with_label_values(&[label])))
            .collect();
        self.prediction_series.store(Arc::new(series));
        for label in &meta.classes {
            for predicted in &meta.classes {
                self.feedback_confusion
                    .with_label_values(&[label, predicted]);
            }
        }
    }

    /// Counts one prediction of `label`. The served model's classes hit
    /// handles resolved in [`Metrics::set_model`]; this runs once per
    /// document, and `with_label_values` would hash and look up the label
    /// each time. Other labels (a request still finishing on a model that a
    /// reload replaced) take the general path.
    pub fn count_prediction(&self, label: &str) {
        match self
            .prediction_series
            .load()
            .iter()
            .find(|(l, _)| l == label)
        {
            Some((_, counter)) => counter.inc(),
            None => self.predictions.with_label_values(&[label]).inc(),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

/// Records count, latency and in-flight gauge per matched route template.
pub async fn track_http(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    // Only standard methods become label values; anything else is folded.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    // A clone of `MatchedPath` is a reference count, not a string copy.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched
        .as_ref()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    let response = {
        // A guard, so a request dropped mid-flight (client gone) still decrements.
        let _in_flight = InFlight::new(&metrics.http_in_flight);
        next.run(req).await
    };
    metrics
        .http_requests
        .with_label_values(&[method, route, response.status().as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[method, route])
        .observe(start.elapsed().as_secs_f64());
    response
}

struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
