//! The middleware around the routes: the JSON error shape for answers of
//! the layers, request-id hygiene, admission control (concurrency and the
//! request-body memory budget), and the layer stack itself (its outer part,
//! request id to timeout, is [`super::edge`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::layer::util::{Identity, Stack};
use tower::util::MapResponseLayer;
use tower::util::Oneshot;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::limit::RequestBodyLimitLayer;

use super::edge::{Direct, EdgeLayer};
use super::error::ApiError;
use super::routes::v2;
use super::state::AppState;

/// Gives bare error responses from lower layers (405 from method routing,
/// 408 from the timeout) the app's JSON error body, keeping their headers
/// (`Allow` on 405).
/// Errors under `/v2` (`v2`: the request's path) then take the Open
/// Inference Protocol's shape.
pub(super) async fn json_errors(response: Response, v2: bool) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (mut parts, _) = response.into_parts();
        let fresh = ApiError::from_status(status).into_response();
        let (fresh_parts, body) = fresh.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.extend(fresh_parts.headers);
        let response = Response::from_parts(parts, body);
        return if v2 {
            v2::protocol_error(response).await
        } else {
            response
        };
    }
    if v2 && (status.is_client_error() || status.is_server_error()) {
        return v2::protocol_error(response).await;
    }
    response
}

/// Longest client-supplied `x-request-id` that is kept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a client's `x-request-id` is kept: not too long, and nothing but
/// visible ASCII; otherwise a fresh UUID is used instead. The id lands in
/// every log line of the request and is echoed in the response.
pub(super) fn acceptable_request_id(v: &header::HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID_LEN && b.iter().all(u8::is_ascii_graphic)
}

/// Admission control: beyond `server.max_concurrency` requests in progress,
/// answer 503 with `Retry-After` at once instead of queueing without bound.
/// Hand-written rather than tower's `LoadShed` + `ConcurrencyLimit` because
/// those surface an error type that would need converting back into the
/// app's JSON error with a `Retry-After` header anyway; a layer of its own
/// rather than `from_fn`, which clones and boxes the route below it on
/// every request.
///
/// Then memory admission: the request's body is reserved against
/// `server.max_inflight_body_bytes` before anything of it is read — its
/// declared length, or the whole body limit when it has none (chunked) —
/// and released when the answer is ready. Over budget → the same 503.
#[derive(Clone)]
pub(crate) struct Admission<S> {
    inner: S,
    state: AppState,
}

/// Builds [`Admission`] around each admitted route.
#[derive(Clone)]
struct AdmissionLayer(AppState);

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            state: self.0.clone(),
        }
    }
}

// Generic over the body: in the router the route below takes any body, and
// without the router the handler does.
impl<S, B> Service<axum::http::Request<B>> for Admission<S>
where
    S: Service<axum::http::Request<B>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Admitted<Oneshot<S, axum::http::Request<B>>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner service is made ready in `call` (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        // Decided at once, without awaiting anything: a future of its own
        // type rather than a boxed `async` block.
        match admit(&self.state, &req) {
            Ok(permits) => Admitted::Answering {
                answer: self.inner.clone().oneshot(req),
                permits: Some(permits),
            },
            Err(why) => Admitted::Refused {
                refusal: Some(ApiError::unavailable("overloaded", why, 1).into_response()),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of a route behind [`Admission`]: the route's own, with the
    /// request's permits held until it is ready, or the 503 refusal.
    #[project = AdmittedProjection]
    pub(crate) enum Admitted<F> {
        Answering {
            #[pin]
            answer: F,
            permits: Option<Permits>,
        },
        Refused {
            refusal: Option<Response>,
        },
    }
}

impl<F> Future for Admitted<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmittedProjection::Answering { answer, permits } => {
                let answer = std::task::ready!(answer.poll(cx));
                // Released as soon as the answer is ready.
                *permits = None;
                Poll::Ready(answer)
            }
            AdmittedProjection::Refused { refusal } => {
                Poll::Ready(Ok(refusal.take().expect("polled after completion")))
            }
        }
    }
}

/// What an admitted request holds while it is answered: a concurrency slot
/// and its body's reservation.
pub(crate) struct Permits {
    _concurrency: tokio::sync::OwnedSemaphorePermit,
    _body: Option<Reservation>,
}

/// Admits `req` (a concurrency slot, then its body's reservation) or
/// refuses it, counted, with the reason to answer in a 503.
fn admit<B>(state: &AppState, req: &axum::http::Request<B>) -> Result<Permits, &'static str> {
    let Ok(concurrency) = state.concurrency.clone().try_acquire_owned() else {
        state.metrics.load_shed.inc();
        return Err("the server is at its concurrency limit; retry shortly");
    };
    let kib = body_reservation(req, state.settings.server.body_limit_bytes).div_ceil(1024);
    // More KiB than a u32 holds cannot fit the budget either: refused below.
    let kib = u32::try_from(kib).unwrap_or(u32::MAX);
    let body = if kib == 0 {
        None
    } else {
        let Ok(permit) = state.body_budget.clone().try_acquire_many_owned(kib) else {
            state.metrics.body_budget_shed.inc();
            return Err("the server is at its memory budget for request bodies; retry shortly");
        };
        Some(Reservation::new(
            permit,
            &state.metrics.body_budget_reserved,
        ))
    };
    Ok(Permits {
        _concurrency: concurrency,
        _body: body,
    })
}

/// Reserved request-body KiB, shown in a gauge until released (also when
/// the request is dropped half-way: timeout, client gone).
struct Reservation {
    _permit: tokio::sync::OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
    bytes: i64,
}

impl Reservation {
    fn new(permit: tokio::sync::OwnedSemaphorePermit, gauge: &prometheus::IntGauge) -> Self {
        let bytes = permit.num_permits() as i64 * 1024;
        gauge.add(bytes);
        Self {
            _permit: permit,
            gauge: gauge.clone(),
            bytes,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.gauge.sub(self.bytes);
    }
}

/// Bytes a request's body may take: its declared length (at most `limit`;
/// a larger one is refused with 413 without being read), `limit` when the
/// length is unknown (chunked), 0 without a body.
fn body_reservation<B>(req: &axum::http::Request<B>, limit: usize) -> usize {
    let headers = req.headers();
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        return len
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(limit, |n| n.min(limit));
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        limit
    } else {
        0
    }
}

/// `api` behind admission control ([`Admission`]).
pub(crate) fn admitted(api: Router<AppState>, state: &AppState) -> Router<AppState> {
    api.route_layer(AdmissionLayer(state.clone()))
}

/// A response of the body-limit layer, turned back into axum's.
type LimitedResponse = axum::http::Response<tower_http::limit::ResponseBody<axum::body::Body>>;

/// The layers every route shares, outermost first: the edge (request ids,
/// tracing, metrics, the JSON error shape, the request timeout), then the
/// body limits.
type Shared = ServiceBuilder<
    Stack<
        RequestBodyLimitLayer,
        Stack<
            MapResponseLayer<fn(LimitedResponse) -> Response>,
            Stack<DefaultBodyLimit, Stack<EdgeLayer, Identity>>,
        >,
    >,
>;

fn shared(edge: EdgeLayer, body_limit: usize) -> Shared {
    let into_response: fn(LimitedResponse) -> Response = IntoResponse::into_response;
    ServiceBuilder::new()
        .layer(edge)
        // A declared Content-Length over the limit is refused at once
        // with 413, instead of waiting for a body the client may
        // never send; bodies without a length (chunked) are cut off
        // at the limit as they are read.
        .layer(DefaultBodyLimit::max(body_limit))
        // Innermost: it hands the routes a `Limited` body, which the
        // edge above (written for axum's `Body`) cannot take; its
        // answers get axum's body back.
        .map_response(into_response)
        .layer(RequestBodyLimitLayer::new(body_limit))
}

/// The edge for `state`'s settings and metrics.
fn edge(state: &AppState) -> EdgeLayer {
    let timeout = Duration::from_millis(state.settings.server.request_timeout_ms);
    EdgeLayer::new(state.metrics.clone(), timeout)
}

/// `app` inside the layers every route shares ([`Shared`]).
pub(crate) fn layered(app: Router<AppState>, state: &AppState) -> Router<AppState> {
    // One `layer` call for the whole stack. axum boxes each `Router::layer`
    // separately around every route, and every box clones the ones inside
    // it on each request: separate calls cost dozens of allocations per
    // request, one call a few.
    app.layer(shared(edge(state), state.settings.server.body_limit_bytes))
}

/// `handler`, an admitted route's, inside the same layers as [`layered`]
/// and [`admitted`] put around it in the router, for answering `route`
/// without the router. Nothing in this stack is boxed or cloned per request
/// beyond reference counts: the router's own cost (matching, two request
/// extensions, a boxed clone of every layer level per request) is the
/// largest part of a short request's.
pub(crate) fn direct<H, T>(handler: H, route: &'static str, state: &AppState) -> impl Direct
where
    H: Handler<T, AppState> + Sync,
    T: 'static,
{
    shared(
        edge(state).for_route(route),
        state.settings.server.body_limit_bytes,
    )
    .layer(AdmissionLayer(state.clone()))
    .service(handler.with_state(state.clone()))
}
