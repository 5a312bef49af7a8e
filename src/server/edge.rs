//! The edge every request passes: request id, tracing span, HTTP metrics,
//! the JSON error shape and the request timeout, as one hand-written layer.
//!
//! These were six tower layers (two `from_fn` middlewares, tower-http's
//! request-id pair, trace and timeout). axum clones a route's whole layer
//! stack for every request, and each `from_fn` clones and boxes the stack
//! below it again, so the six cost dozens of allocations per request, more
//! than a short text's classification. Here the stack is one future, with
//! the same behaviour: the same headers, span, log events (under
//! tower-http's targets), metric series and error bodies.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use hashbrown::HashTable;
use prometheus::{Histogram, IntCounter, IntGauge};
use tower::{Layer, Service, ServiceExt};
use tracing::instrument::WithSubscriber as _;
use tracing::Instrument;

use super::error::ErrorCode;
use super::exemplars::Slots;
use super::metrics::{Metrics, UNMATCHED_ROUTE};
use super::middleware::{acceptable_request_id, json_errors};
use super::routes::v2;
use crate::telemetry::otel;

/// The request-id header: kept from the client when acceptable, else made
/// here; echoed in the answer and named in every log line of the request.
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds [`Edge`] around each route (`Router::layer`), or around one
/// route answered without the router ([`EdgeLayer::for_route`]).
#[derive(Clone)]
pub(crate) struct EdgeLayer {
    shared: Arc<Shared>,
    route: Option<&'static str>,
}

/// What every request's edge needs, shared by all routes.
struct Shared {
    metrics: Arc<Metrics>,
    http: HttpSeries,
    timeout: Duration,
}

impl EdgeLayer {
    /// An edge that records into `metrics` and answers 408 after `timeout`.
    pub(crate) fn new(metrics: Arc<Metrics>, timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                http: HttpSeries::new(Arc::clone(&metrics)),
                metrics,
                timeout,
            }),
            route: None,
        }
    }

    /// The same edge for a route the server answers without the router:
    /// its requests carry no `MatchedPath`, so the route's template is
    /// given here.
    pub(crate) fn for_route(&self, route: &'static str) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            route: Some(route),
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            shared: Arc::clone(&self.shared),
            route: self.route,
        }
    }
}

/// The edge around one route; see the module documentation.
#[derive(Clone)]
pub(crate) struct Edge<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The route template when known without the router's `MatchedPath`.
    route: Option<&'static str>,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner service is made ready in `call` (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let answer = self.respond(req);
        Box::pin(async move { Ok(answer.await) })
    }
}

impl<S> Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    /// The answer to `req`, through the edge and everything below it.
    fn respond(&self, req: Request) -> impl Future<Output = Response> + Send + use<S> {
        let inner = self.inner.clone();
        let shared = Arc::clone(&self.shared);
        let route = self.route;
        async move { edge(&shared, route, inner, req).await }
    }
}

/// A route the connection answers itself, without the router: its edge's
/// future is awaited where it is, not boxed behind a `Service`, and the
/// route is not cloned for each request.
pub(crate) trait Direct: Send + Sync + 'static {
    /// The answer to `req`, through the edge and everything below it; it
    /// does not borrow the route.
    fn answer(&self, req: Request) -> impl Future<Output = Response> + Send + use<Self>;
}

impl<S> Direct for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    fn answer(&self, req: Request) -> impl Future<Output = Response> + Send + use<S> {
        self.respond(req)
    }
}

async fn edge<S>(
    shared: &Shared,
    route: Option<&'static str>,
    inner: S,
    mut req: Request,
) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let start = Instant::now();
    let id = request_id(&mut req);
    let method = method_label(req.method());
    // A clone of `MatchedPath` is a reference count, not a string copy.
    let matched = match route {
        Some(_) => None,
        None => req.extensions().get::<MatchedPath>().cloned(),
    };
    let route = route
        .or(matched.as_ref().map(MatchedPath::as_str))
        .unwrap_or(UNMATCHED_ROUTE);
    // Spans carry method, route, request id, status and latency; never
    // bodies or query strings (request text stays private). The id is
    // visible ASCII (see `request_id`).
    // The `model` label: the repository's names, swapped when models load.
    let names = shared.metrics.model_names.load_full();
    let model = names.label(route, req.uri().path());
    // With tracing on, the span also joins the client's trace (`traceparent`).
    let otel::RequestSpan { span, logs_only } = otel::request_span(
        req.method(),
        route,
        id.to_str().unwrap_or("-"),
        req.headers(),
    );
    let request = async move {
        let v2 = v2::is_v2_path(req.uri().path());
        let response = {
            // A guard, so a request dropped mid-flight (client gone) still decrements.
            let _in_flight = InFlight::new(&shared.metrics.http_in_flight);
            let response = match tokio::time::timeout(shared.timeout, inner.oneshot(req)).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                // An empty 408, which `json_errors` gives the error body.
                Err(_elapsed) => {
                    let mut response = Response::default();
                    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
                    response
                }
            };
            json_errors(response, v2).await
        };
        let status = response.status();
        let latency = start.elapsed();
        // The trace of a sampled request becomes its latency bucket's exemplar.
        let mut exemplar = None;
        if otel::enabled() {
            let span = tracing::Span::current();
            otel::record_response(&span, status);
            exemplar = otel::sampled_trace_id(&span);
        }
        let series = Series {
            method,
            route,
            model,
            status,
        };
        shared.http.record(series, latency, exemplar);
        let mut response = response;
        if !response.headers().contains_key(&REQUEST_ID) {
            response.headers_mut().insert(REQUEST_ID.clone(), id);
        }
        log_response(
            status,
            latency,
            response.extensions().get::<ErrorCode>().copied(),
        );
        response
    }
    .instrument(span);
    match logs_only {
        Some(logs) => request.with_subscriber(logs.clone()).await,
        None => request.await,
    }
}

/// The client's `x-request-id` when [acceptable](acceptable_request_id),
/// else a fresh random (version 4) UUID. An unacceptable one is removed
/// from the request, so nothing below sees it.
fn request_id(req: &mut Request) -> HeaderValue {
    if let Some(id) = req.headers().get(&REQUEST_ID) {
        if acceptable_request_id(id) {
            return id.clone();
        }
        req.headers_mut().remove(&REQUEST_ID);
    }
    // From the thread's generator rather than the operating system's
    // (`Uuid::new_v4`): one system call less per request.
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid.hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("a UUID is a valid header value")
}

/// The two events tower-http's `TraceLayer` logged for every answer, with
/// its targets, so log filters written for it keep working: the answer at
/// DEBUG, and a server error (5xx) at ERROR — at WARN when its `code` says
/// the client's request caused it ([`ErrorCode::is_server_fault`]).
fn log_response(status: StatusCode, latency: Duration, code: Option<ErrorCode>) {
    let latency = Millis(latency);
    tracing::debug!(
        target: "tower_http::trace::on_response",
        %latency,
        status = i32::from(status.as_u16()),
        "finished processing request"
    );
    if !status.is_server_error() {
        return;
    }
    match code {
        Some(code) if !code.is_server_fault() => tracing::warn!(
            target: "tower_http::trace::on_failure",
            classification = %format_args!("Status code: {status}"),
            code = code.0,
            %latency,
            "response failed: the model asked for is not being served"
        ),
        _ => tracing::error!(
            target: "tower_http::trace::on_failure",
            classification = %format_args!("Status code: {status}"),
            %latency,
            "response failed"
        ),
    }
}

/// A latency as tower-http writes it: whole milliseconds, `"3 ms"`.
struct Millis(Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.0.as_millis())
    }
}

/// Only standard methods become label values; anything else is folded.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Lowers the in-flight gauge when the request ends, however it ends.
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

/// The `nbserve_http_requests_total` and `nbserve_http_request_duration_seconds`
/// series, resolved once per (method, route, status).
///
/// `with_label_values` hashes every label with SipHash, takes the vector's
/// lock and clones the series on each call; a request costs two of them.
/// The labels come from a bounded set (route templates, eight method
/// labels, the statuses the server answers), so the series are cached, and
/// created only when first used, as before.
struct HttpSeries {
    metrics: Arc<Metrics>,
    table: RwLock<HashTable<SeriesEntry>>,
}

struct SeriesEntry {
    method: &'static str,
    status: u16,
    route: Box<str>,
    model: Box<str>,
    requests: IntCounter,
    duration: Histogram,
    exemplars: Arc<Slots>,
}

/// The labels of one answer's series.
struct Series<'a> {
    method: &'static str,
    route: &'a str,
    model: &'a str,
    status: StatusCode,
}

impl HttpSeries {
    fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            table: RwLock::new(HashTable::new()),
        }
    }

    /// Counts one answer and observes its latency; `exemplar`, the trace id
    /// of a sampled request, becomes its bucket's exemplar.
    fn record(&self, series: Series<'_>, latency: Duration, exemplar: Option<u128>) {
        let Series {
            method,
            route,
            model,
            status: code,
        } = series;
        let status = code.as_u16();
        let hash = series_hash(method, route, model, status);
        let matches = |e: &SeriesEntry| {
            e.status == status && e.method == method && &*e.route == route && &*e.model == model
        };
        let seconds = latency.as_secs_f64();
        {
            let table = self.table.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = table.find(hash, matches) {
                e.observe(seconds, exemplar);
                return;
            }
        }
        let entry = SeriesEntry {
            method,
            status,
            route: route.into(),
            model: model.into(),
            requests: self.metrics.http_requests.with_label_values(&[
                method,
                route,
                code.as_str(),
                model,
            ]),
            duration: self
                .metrics
                .http_duration
                .with_label_values(&[method, route, model]),
            exemplars: self.metrics.latency_exemplars.slots(method, route, model),
        };
        entry.observe(seconds, exemplar);
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if table.find(hash, matches).is_none() {
            table.insert_unique(hash, entry, |e| {
                series_hash(e.method, &e.route, &e.model, e.status)
            });
        }
    }
}

impl SeriesEntry {
    fn observe(&self, seconds: f64, exemplar: Option<u128>) {
        self.requests.inc();
        self.duration.observe(seconds);
        if let Some(trace_id) = exemplar {
            self.exemplars.record(seconds, trace_id);
        }
    }
}

/// A hash of a series' labels. They are few and none is chosen by a client
/// (route templates, not paths; model names of the repository, not of the
/// request), so speed is all that matters.
fn series_hash(method: &str, route: &str, model: &str, status: u16) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (u64::from(status) ^ method.len() as u64).wrapping_mul(K);
    // The route's length separates it from the model's bytes.
    let separator = (route.len() as u64).to_le_bytes();
    let words = route
        .as_bytes()
        .chunks(8)
        .chain(std::iter::once(&separator[..]));
    for chunk in words.chain(model.as_bytes().chunks(8)) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        series: &HttpSeries,
        method: &'static str,
        route: &str,
        model: &str,
        status: StatusCode,
    ) {
        let labels = Series {
            method,
            route,
            model,
            status,
        };
        series.record(labels, Duration::from_millis(1), None);
    }

    #[test]
    fn series_are_counted_per_method_route_status_and_model() {
        let metrics = Metrics::new("test");
        let series = HttpSeries::new(Arc::clone(&metrics));
        for _ in 0..3 {
            record(&series, "POST", "/predict", "a", StatusCode::OK);
        }
        record(
            &series,
            "POST",
            "/predict",
            "a",
            StatusCode::UNPROCESSABLE_ENTITY,
        );
        record(
            &series,
            "GET",
            "/predict",
            "a",
            StatusCode::METHOD_NOT_ALLOWED,
        );
        record(&series, "POST", "/predict/batch", "a", StatusCode::OK);
        // Same route and status, another model: its own series.
        record(
            &series,
            "POST",
            "/models/{name}/predict",
            "a",
            StatusCode::OK,
        );
        record(
            &series,
            "POST",
            "/models/{name}/predict",
            "b",
            StatusCode::OK,
        );
        record(
            &series,
            "POST",
            "/models/{name}/predict",
            "b",
            StatusCode::OK,
        );
        let count = |labels: &[&str]| metrics.http_requests.with_label_values(labels).get();
        assert_eq!(count(&["POST", "/predict", "200", "a"]), 3);
        assert_eq!(count(&["POST", "/predict", "422", "a"]), 1);
        assert_eq!(count(&["GET", "/predict", "405", "a"]), 1);
        assert_eq!(count(&["POST", "/predict/batch", "200", "a"]), 1);
        assert_eq!(count(&["POST", "/models/{name}/predict", "200", "a"]), 1);
        assert_eq!(count(&["POST", "/models/{name}/predict", "200", "b"]), 2);
        let observed = |labels: &[&str]| {
            metrics
                .http_duration
                .with_label_values(labels)
                .get_sample_count()
        };
        assert_eq!(observed(&["POST", "/predict", "a"]), 4);
        assert_eq!(observed(&["GET", "/predict", "a"]), 1);
        assert_eq!(observed(&["POST", "/models/{name}/predict", "b"]), 2);
    }

    #[test]
    fn a_sampled_request_is_its_latency_buckets_exemplar_in_openmetrics_only() {
        let metrics = Metrics::new("test");
        let series = HttpSeries::new(Arc::clone(&metrics));
        let trace_id = 0x4bf92f3577b34da6a3ce929d0e0e4736;
        let labels = |model| Series {
            method: "POST",
            route: "/predict",
            model,
            status: StatusCode::OK,
        };
        series.record(labels("a"), Duration::from_micros(700), Some(trace_id));
        // Not sampled: counted, no exemplar.
        series.record(labels("a"), Duration::from_millis(30), None);
        series.record(labels("b"), Duration::from_millis(30), None);
        let text = metrics.render_openmetrics();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(" # {")).collect();
        assert_eq!(
            lines,
            [concat!(
                "nbserve_http_request_duration_seconds_bucket{method=\"POST\",model=\"a\",",
                "route=\"/predict\",le=\"0.001\"} 1 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.0007 "
            )
            .to_owned()
                + lines.first().map_or("", |l| l.rsplit(' ').next().unwrap())],
            "{text}"
        );
        assert!(!metrics.render().contains("trace_id"));
    }

    #[test]
    fn millis_are_written_as_tower_http_writes_them() {
        assert_eq!(Millis(Duration::from_micros(2_900)).to_string(), "2 ms");
        assert_eq!(Millis(Duration::ZERO).to_string(), "0 ms");
    }
}
