//! `GET /metrics`: the Prometheus text exposition, or OpenMetrics (with
//! the latency histogram's `trace_id` exemplars) when the scrape asks for it.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;

use crate::server::openmetrics;
use crate::server::state::AppState;

/// Prometheus text exposition, or OpenMetrics when `Accept` prefers
/// `application/openmetrics-text` (as Prometheus does); live gauges are
/// refreshed at scrape time.
#[utoipa::path(get, path = "/metrics", tag = "model", responses((status = 200, description = "Prometheus text format; OpenMetrics 1.0 (with trace_id exemplars on the request-latency buckets) when Accept prefers application/openmetrics-text", content((String = "text/plain"), (String = "application/openmetrics-text")))))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    for entry in state.models.entries().iter() {
        if entry.serving().is_some() {
            let live = state.feedback.live_quality(entry.slot);
            let drift = state.feedback.drift(entry.slot);
            state.metrics.set_live(&entry.name, &live, drift.as_ref());
        }
    }
    let log_errors = state.feedback.log_errors();
    let counted = state.metrics.feedback_log_errors.get();
    let m = &state.metrics;
    m.feedback_log_errors
        .inc_by(log_errors.saturating_sub(counted));
    let dropped = state.feedback.log_dropped();
    m.feedback_log_dropped
        .inc_by(dropped.saturating_sub(m.feedback_log_dropped.get()));
    m.sync_trace_counts(crate::telemetry::otel::span_counts());
    m.feedback_kept_text_bytes
        .set(state.feedback.kept_text_bytes() as i64);
    for entry in state.models.entries().iter() {
        let challenger = &entry.challenger;
        m.set_challenger_live(&entry.name, &challenger.live());
        let learned = entry
            .serving()
            .and_then(|champion| challenger.view(&champion))
            .map_or(0, |v| v.learned_bytes);
        m.challenger_learned_bytes
            .with_label_values(&[&entry.name])
            .set(i64::try_from(learned).unwrap_or(i64::MAX));
        let resets = m.challenger_resets.with_label_values(&[&entry.name]);
        resets.inc_by(challenger.resets().saturating_sub(resets.get()));
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if openmetrics::wants_openmetrics(accept) {
        let body = state.metrics.render_openmetrics();
        return ([(header::CONTENT_TYPE, openmetrics::CONTENT_TYPE)], body);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
