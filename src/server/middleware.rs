//! The middleware around the routes: the JSON error shape for answers of
//! the layers, request-id hygiene, admission control (concurrency and the
//! request-body memory budget), and the layer stack itself.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::error::ApiError;
use super::metrics::track_http;
use super::routes::v2;
use super::state::AppState;
use crate::telemetry::otel;

/// Gives bare error responses from lower layers (405 from method routing,
/// 408 from the timeout) the app's JSON error body, keeping their headers
/// (`Allow` on 405).
/// Errors under `/v2` then take the Open Inference Protocol's shape.
async fn json_errors(req: Request, next: Next) -> Response {
    let v2 = v2::is_v2_path(req.uri().path());
    let response = next.run(req).await;
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

/// Drops a client's `x-request-id` that is too long or holds anything but
/// visible ASCII, so a fresh UUID is used instead: the id lands in every log
/// line of the request and is echoed in the response.
async fn sanitize_request_id(mut req: Request, next: Next) -> Response {
    let acceptable = |v: &header::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= MAX_REQUEST_ID_LEN && b.iter().all(u8::is_ascii_graphic)
    };
    if let Some(v) = req.headers().get("x-request-id") {
        if !acceptable(v) {
            req.headers_mut().remove("x-request-id");
        }
    }
    next.run(req).await
}

/// Admission control: beyond `server.max_concurrency` requests in progress,
/// answer 503 with `Retry-After` at once instead of queueing without bound.
/// Hand-written rather than tower's `LoadShed` + `ConcurrencyLimit` because
/// those surface an error type that would need converting back into the
/// app's JSON error with a `Retry-After` header anyway.
///
/// Then memory admission: the request's body is reserved against
/// `server.max_inflight_body_bytes` before anything of it is read — its
/// declared length, or the whole body limit when it has none (chunked) —
/// and released when the answer is ready. Over budget → the same 503.
pub(crate) async fn shed_load(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Ok(_permit) = state.concurrency.clone().try_acquire_owned() else {
        state.metrics.load_shed.inc();
        return ApiError::unavailable(
            "overloaded",
            "the server is at its concurrency limit; retry shortly",
            1,
        )
        .into_response();
    };
    let kib = body_reservation(&req, state.settings.server.body_limit_bytes).div_ceil(1024);
    // More KiB than a u32 holds cannot fit the budget either: refused below.
    let kib = u32::try_from(kib).unwrap_or(u32::MAX);
    let _reservation = if kib == 0 {
        None
    } else {
        let Ok(permit) = state.body_budget.clone().try_acquire_many_owned(kib) else {
            state.metrics.body_budget_shed.inc();
            return ApiError::unavailable(
                "overloaded",
                "the server is at its memory budget for request bodies; retry shortly",
                1,
            )
            .into_response();
        };
        Some(Reservation::new(
            permit,
            &state.metrics.body_budget_reserved,
        ))
    };
    next.run(req).await
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
fn body_reservation(req: &Request, limit: usize) -> usize {
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

/// `api` behind admission control ([`shed_load`]).
pub(crate) fn admitted(api: Router<AppState>, state: &AppState) -> Router<AppState> {
    api.route_layer(middleware::from_fn_with_state(state.clone(), shed_load))
}

/// `app` inside the layers every route shares: request ids, tracing,
/// metrics, the JSON error shape, the request timeout and the body limits.
pub(crate) fn layered(app: Router<AppState>, state: &AppState) -> Router<AppState> {
    let s = &state.settings.server;
    let request_id = HeaderName::from_static("x-request-id");
    app
        // One `layer` call for the whole stack, outermost first. axum boxes
        // each `Router::layer` separately around every route, and every box
        // clones the ones inside it on each request: separate calls cost
        // dozens of allocations per request, one call a few.
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(sanitize_request_id))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(
                    // Spans carry method, route, request id, status and latency;
                    // never bodies or query strings (request text stays private).
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            let route = req
                                .extensions()
                                .get::<axum::extract::MatchedPath>()
                                .map_or("unmatched", |p| p.as_str());
                            otel::request_span(req.method(), route, id, req.headers())
                        })
                        .on_request(())
                        .on_response(|res: &Response, latency, span: &tracing::Span| {
                            otel::record_response(span, res.status());
                            tower_http::trace::OnResponse::on_response(
                                tower_http::trace::DefaultOnResponse::new()
                                    .level(tracing::Level::DEBUG),
                                res,
                                latency,
                                span,
                            );
                        }),
                )
                .layer(middleware::from_fn_with_state(
                    state.metrics.clone(),
                    track_http,
                ))
                .layer(middleware::from_fn(json_errors))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_millis(s.request_timeout_ms),
                ))
                // A declared Content-Length over the limit is refused at once
                // with 413, instead of waiting for a body the client may
                // never send; bodies without a length (chunked) are cut off
                // at the limit as they are read.
                .layer(DefaultBodyLimit::max(s.body_limit_bytes))
                // Innermost: it hands the routes a `Limited` body, which the
                // middleware above (written for axum's `Body`) cannot take;
                // its answers get axum's body back.
                .map_response(IntoResponse::into_response)
                .layer(RequestBodyLimitLayer::new(s.body_limit_bytes)),
        )
}
