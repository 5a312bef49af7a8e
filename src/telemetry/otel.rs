//! OpenTelemetry traces: off unless `trace.enabled`, then configured by the
//! standard `OTEL_*` variables ([`OtelConfig`]) and exported over
//! OTLP/HTTP-protobuf by a bounded batch exporter ([`batch`]).
//!
//! `tracing` spans become OpenTelemetry spans through `tracing-opentelemetry`.
//! The request path has two hooks, both here: [`request_span`] (the server
//! span, its W3C `traceparent`/`tracestate` parent and semantic-convention
//! attributes) and [`record_response`] (its status). With tracing off both
//! cost one relaxed atomic load, and the phase spans (`decode`, `score`, …)
//! are at DEBUG, disabled by the log filter before they are built.
//!
//! Spans carry methods, routes, statuses, sizes and ids; never request text.

pub mod batch;
pub mod config;
pub mod sampling;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Status, TraceContextExt as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use batch::{span_counts, SpanCounts};
pub use config::OtelConfig;
use config::{SamplerConfig, Sampling};

/// Whether spans are exported; read on every request (one relaxed load).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether tracing was switched on in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Keeps the trace pipeline alive; dropping it exports what is queued
/// (bounded by a timeout) and stops the export thread.
pub struct Pipeline {
    provider: SdkTracerProvider,
    /// The log subscriber alone, for requests not sampled, until published.
    logs_only: Option<tracing::Dispatch>,
}

impl Pipeline {
    /// Keeps `logs`, the log subscriber without the trace layer, for
    /// [`Pipeline::publish_logs_only`].
    pub(super) fn with_logs_only(mut self, logs: tracing::Dispatch) -> Self {
        self.logs_only = Some(logs);
        self
    }

    /// From now on, requests not sampled run under the log subscriber alone
    /// ([`sampling::logs_only`]). Call once the subscriber with traces is
    /// the global default.
    pub(super) fn publish_logs_only(&mut self) {
        if let Some(logs) = self.logs_only.take() {
            sampling::set_logs_only(logs);
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        let _ = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
    }
}

/// Longest the exit waits for the last spans to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the tracer provider and the `tracing` layer that feeds it.
/// Errors (an endpoint that is not a URL, no thread) are returned as text
/// for a warning: the server then runs without traces.
pub(super) fn pipeline<S>(
    config: &OtelConfig,
) -> Result<
    (
        Pipeline,
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(config.traces_endpoint.clone())
        .with_headers(Default::default())
        .build()
        .map_err(|e| format!("OTLP exporter {}: {e}", config.traces_endpoint))?;
    let mut attributes = vec![
        KeyValue::new("service.name", config.service_name.clone()),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    ];
    attributes.extend(
        config
            .resource
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    let resource = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(attributes)
        .build();
    let processor = batch::BoundedBatch::new(exporter, config.batch, &resource)
        .map_err(|e| format!("cannot start the span export thread: {e}"))?;
    sampling::configure(config.sampler);
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampling::Presampled(sampler(config.sampler)))
        .with_resource(resource)
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("nbserve");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_level(false)
        .with_location(false)
        .with_threads(false)
        .with_target(false);
    ENABLED.store(true, Ordering::Relaxed);
    Ok((
        Pipeline {
            provider,
            logs_only: None,
        },
        layer,
    ))
}

fn sampler(config: SamplerConfig) -> Sampler {
    let root = match config.root {
        Sampling::AlwaysOn => Sampler::AlwaysOn,
        Sampling::AlwaysOff => Sampler::AlwaysOff,
        Sampling::Ratio(r) => Sampler::TraceIdRatioBased(r),
    };
    if config.parent_based {
        Sampler::ParentBased(Box::new(root))
    } else {
        root
    }
}

/// Reads propagation headers from an `http::HeaderMap`.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one HTTP request. Its log fields are the method, the route
/// template and the request id; with tracing on it is also an OpenTelemetry
/// server span named `METHOD route`, child of the caller's `traceparent`
/// (and `tracestate`) when one is sent, with the semantic-convention
/// attributes `http.request.method` and `http.route`.
///
/// The sampling decision is taken before the span is built
/// ([`sampling::decide`]): a request not sampled costs its log span only,
/// and runs under the log-only subscriber when there is one
/// ([`RequestSpan::logs_only`]).
pub fn request_span(
    method: &Method,
    route: &str,
    request_id: &str,
    headers: &HeaderMap,
) -> RequestSpan {
    if !enabled() {
        let span = tracing::info_span!("request", method = %method, route, request_id);
        return RequestSpan::in_default(span);
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if !sampling::decide(&parent) {
        let unsampled = || tracing::info_span!(target: sampling::UNSAMPLED, "request", method = %method, route, request_id);
        return match sampling::logs_only() {
            Some(logs) => RequestSpan {
                span: tracing::dispatcher::with_default(logs, unsampled),
                logs_only: Some(logs),
            },
            None => RequestSpan::in_default(unsampled()),
        };
    }
    let span = tracing::info_span!(
        "request",
        method = %method,
        route,
        request_id,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    // Before the span is first entered: name, kind and parent are fixed then.
    span.record("otel.name", format!("{method} {route}"));
    span.record("otel.kind", "server");
    let _ = span.set_parent(parent);
    span.set_attribute("http.request.method", method.as_str().to_owned());
    span.set_attribute("http.route", route.to_owned());
    RequestSpan::in_default(span)
}

/// A request's span ([`request_span`]) and the subscriber its request runs
/// under.
pub struct RequestSpan {
    /// The request's span: enter it around the request's work.
    pub span: Span,
    /// For a request not sampled, the log-only subscriber its span belongs
    /// to: run the request with it as the default (`WithSubscriber`), so
    /// everything under the span is built for the logs alone. `None`: the
    /// default subscriber.
    pub logs_only: Option<&'static tracing::Dispatch>,
}

impl RequestSpan {
    fn in_default(span: Span) -> Self {
        Self {
            span,
            logs_only: None,
        }
    }
}

/// Whether `span` is in a trace being exported: tracing is on and it is not
/// a request left out by sampling.
fn traced(span: &Span) -> bool {
    enabled()
        && span
            .metadata()
            .is_some_and(|m| m.target() != sampling::UNSAMPLED)
}

/// The span of a batch command (`retrain`): with tracing on, an
/// OpenTelemetry span named `name`, child of the W3C trace context the
/// caller gives through the environment (`TRACEPARENT`, `TRACESTATE`: a
/// scheduler's flow or a CI job has no headers to send), so the job's
/// spans join the caller's trace. `vars` is the process environment.
pub fn job_span(name: &'static str, vars: impl IntoIterator<Item = (String, String)>) -> Span {
    let span = tracing::info_span!("job", job = name, otel.name = tracing::field::Empty);
    if enabled() {
        span.record("otel.name", name);
        let carrier = EnvironmentCarrier(
            vars.into_iter()
                .filter_map(|(k, v)| match k.as_str() {
                    "TRACEPARENT" => Some(("traceparent", v)),
                    "TRACESTATE" => Some(("tracestate", v)),
                    _ => None,
                })
                .collect(),
        );
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
    span
}

/// Marks a [`job_span`] failed, with `reason` (an error's text, never data).
pub fn record_failure(span: &Span, reason: String) {
    if enabled() {
        span.set_status(Status::error(reason));
    }
}

/// The propagation fields found in the environment, by their header names.
struct EnvironmentCarrier(Vec<(&'static str, String)>);

impl Extractor for EnvironmentCarrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

/// The trace id of `span` when it is sampled (exported): what a latency
/// exemplar links to. `None` for a span not sampled, or with tracing off.
pub fn sampled_trace_id(span: &Span) -> Option<u128> {
    if !traced(span) {
        return None;
    }
    let context = span.context();
    let span = context.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| u128::from_be_bytes(sc.trace_id().to_bytes()))
}

/// Records the answer's status on a [`request_span`]:
/// `http.response.status_code`, and an error status for a 5xx (a 4xx is
/// the client's error, not the server's, for a server span).
pub fn record_response(span: &Span, status: StatusCode) {
    if !traced(span) {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_status(Status::error(status.as_str().to_owned()));
    }
}
