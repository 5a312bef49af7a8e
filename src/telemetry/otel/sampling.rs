//! Sampling decided before a request's span is built.
//!
//! `tracing-opentelemetry` builds the OpenTelemetry side of every span it
//! sees (a span builder, its attributes, timings) and asks the SDK's sampler
//! only when the span closes: at 1 % sampling, 99 % of that work is thrown
//! away, and a request has a server span and three or four phase spans. So
//! the request's decision is taken first ([`decide`], the configured sampler's
//! rules), and a request not sampled gets a span of the target
//! [`UNSAMPLED`], which the trace layer's filter ([`joins_trace`]) refuses,
//! together with every span under it: they are then built for the logs only,
//! or not at all. The SDK's sampler ([`Presampled`]) follows the decision
//! taken: a server span that reaches it was sampled already, and a span under
//! a sampled local span is sampled too.
//!
//! Refused spans still cost: with two layers filtered apart, every span,
//! enter, exit and close of a request asks both filters and looks the span
//! up in the registry (a third more instructions per `/predict` at 1 %
//! sampling). So once the subscriber is installed, a request not sampled
//! runs under a second subscriber that only logs ([`logs_only`]), the same
//! as with tracing off, and only sampled requests and the server's own work
//! (polls, loads) meet the trace layer.

use std::sync::OnceLock;

use opentelemetry::trace::{
    Link, SamplingDecision, SamplingResult, SpanKind, TraceContextExt as _, TraceId,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, Sampler, ShouldSample};
use tracing::subscriber::Interest;
use tracing::Metadata;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use super::config::{SamplerConfig, Sampling};

/// The target of a request span whose trace is not sampled: the trace layer
/// never sees it nor what is under it. Under the otel module's own target,
/// so a log filter on that target treats both alike.
pub const UNSAMPLED: &str = "nbserve::telemetry::otel::unsampled";

/// The configured sampler, set once when the pipeline starts.
static SAMPLER: OnceLock<SamplerConfig> = OnceLock::new();

/// The subscriber requests not sampled run under: the log subscriber alone.
static LOGS_ONLY: OnceLock<tracing::Dispatch> = OnceLock::new();

/// Publishes `logs`, the log subscriber without the trace layer, for the
/// requests not sampled. Called once the subscriber with traces is the
/// global default (a first one stays, like the global subscriber).
pub(crate) fn set_logs_only(logs: tracing::Dispatch) {
    let _ = LOGS_ONLY.set(logs);
}

/// The log-only subscriber for requests not sampled, once published; until
/// then (or in tests that install no global subscriber) such a request runs
/// under the subscriber with traces, whose filter refuses its spans.
pub fn logs_only() -> Option<&'static tracing::Dispatch> {
    LOGS_ONLY.get()
}

/// Records the sampler [`decide`] applies (the first pipeline's, like the
/// subscriber itself).
pub(super) fn configure(config: SamplerConfig) {
    let _ = SAMPLER.set(config);
}

/// Whether a request whose caller's context is `parent` is sampled: the
/// caller's sampled flag for a parent-based sampler with a caller, else the
/// root sampler (a ratio on the caller's trace id, or on a fresh random one:
/// the same rule as the SDK's `TraceIdRatioBased`).
pub fn decide(parent: &Context) -> bool {
    SAMPLER.get().is_some_and(|c| decide_with(*c, parent))
}

/// [`decide`] with the sampler `config`.
fn decide_with(config: SamplerConfig, parent: &Context) -> bool {
    let caller = parent.span();
    let caller = caller.span_context();
    if config.parent_based && caller.is_valid() {
        return caller.is_sampled();
    }
    match config.root {
        Sampling::AlwaysOn => true,
        Sampling::AlwaysOff => false,
        Sampling::Ratio(ratio) => {
            let trace_id = if caller.is_valid() {
                caller.trace_id()
            } else {
                RandomIdGenerator::default().new_trace_id()
            };
            ratio_keeps(ratio, trace_id)
        }
    }
}

/// The specification's `TraceIdRatioBased` rule, as the SDK applies it: the
/// trace id's low 63 bits below `ratio` × 2⁶³.
fn ratio_keeps(ratio: f64, trace_id: TraceId) -> bool {
    let bound = (ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64;
    let low = u64::from_be_bytes(trace_id.to_bytes()[8..].try_into().expect("8 bytes"));
    (low >> 1) < bound
}

/// Whether the trace layer takes `meta`: an `nbserve` span at DEBUG or
/// above, not an unsampled request, and not under a span of ours that the
/// layer refused (the phases of an unsampled request). A span under a span
/// of another crate's is judged by its own metadata only.
pub(crate) fn joins_trace<S>(meta: &Metadata<'_>, cx: &LayerContext<'_, S>) -> bool
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    if !traced(meta) {
        return false;
    }
    let current = cx.current_span();
    let (Some(id), Some(parent)) = (current.id(), current.metadata()) else {
        return true;
    };
    if parent.target() == UNSAMPLED {
        return false;
    }
    // `lookup_current` sees only the spans this layer took.
    !traced(parent) || cx.lookup_current().is_some_and(|s| s.id() == *id)
}

/// What the trace layer's filter says of a callsite before any span of it
/// is built: never for events and for spans it never takes, so that those
/// are not filtered again for every request; [`joins_trace`] decides the rest.
pub(crate) fn callsite_interest(meta: &'static Metadata<'static>) -> Interest {
    if traced(meta) {
        Interest::sometimes()
    } else {
        Interest::never()
    }
}

/// A span the trace layer takes unless its request is not sampled.
fn traced(meta: &Metadata<'_>) -> bool {
    meta.is_span()
        && *meta.level() <= tracing::Level::DEBUG
        && meta.target().starts_with("nbserve")
        && meta.target() != UNSAMPLED
}

/// The SDK sampler: a server span reaching it was sampled by [`decide`], a
/// span under a sampled span of this process follows it, and the rest (roots
/// other than requests: polls, loads, a retrain) go to the configured sampler.
#[derive(Debug, Clone)]
pub(super) struct Presampled(pub(super) Sampler);

impl ShouldSample for Presampled {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context.map(|c| c.span().span_context().clone());
        let local_sampled = parent
            .as_ref()
            .is_some_and(|p| p.is_valid() && !p.is_remote() && p.is_sampled());
        if *span_kind == SpanKind::Server || local_sampled {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: parent.map(|p| p.trace_state().clone()).unwrap_or_default(),
            };
        }
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};

    use super::*;

    fn remote(sampled: bool) -> Context {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            SpanId::from(0x00f0_67aa_0ba9_02b7),
            flags,
            true,
            TraceState::default(),
        ))
    }

    #[test]
    fn the_ratio_rule_is_the_sdks() {
        let sdk = Sampler::TraceIdRatioBased(0.3);
        for i in 0..2000u128 {
            let id = TraceId::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
            let theirs = sdk
                .should_sample(None, id, "x", &SpanKind::Server, &[], &[])
                .decision;
            assert_eq!(
                ratio_keeps(0.3, id),
                theirs == SamplingDecision::RecordAndSample,
                "{id}"
            );
        }
    }

    #[test]
    fn a_server_span_and_the_spans_under_a_sampled_local_span_are_kept() {
        let sampler = Presampled(Sampler::AlwaysOff);
        let kept = |parent: Option<&Context>, kind: SpanKind| {
            sampler
                .should_sample(parent, TraceId::from(7), "x", &kind, &[], &[])
                .decision
                == SamplingDecision::RecordAndSample
        };
        assert!(kept(None, SpanKind::Server));
        assert!(!kept(None, SpanKind::Internal));
        // A caller's sampled flag alone does not decide for an internal span.
        assert!(!kept(Some(&remote(true)), SpanKind::Internal));
        let local = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ));
        assert!(kept(Some(&local), SpanKind::Internal));
        // The caller's tracestate is carried on.
        let state = TraceState::from_key_value([("vendor", "opaque")]).unwrap();
        let parent = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            TraceFlags::SAMPLED,
            true,
            state.clone(),
        ));
        let result = sampler.should_sample(
            Some(&parent),
            TraceId::from(7),
            "x",
            &SpanKind::Server,
            &[],
            &[],
        );
        assert_eq!(result.trace_state, state);
    }

    #[test]
    fn decide_follows_the_caller_then_the_root_sampler() {
        let off = SamplerConfig {
            root: Sampling::AlwaysOff,
            parent_based: true,
        };
        assert!(decide_with(off, &remote(true)));
        assert!(!decide_with(off, &remote(false)));
        assert!(!decide_with(off, &Context::new()));
        let ratio = |parent_based, r| SamplerConfig {
            root: Sampling::Ratio(r),
            parent_based,
        };
        // Not parent-based: the ratio on the caller's trace id, whatever its flag.
        let id = TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
        assert_eq!(
            decide_with(ratio(false, 0.5), &remote(false)),
            ratio_keeps(0.5, id)
        );
        assert!(!decide_with(ratio(false, 0.0), &remote(true)));
        // A root: a fresh random draw, about the ratio.
        let kept = (0..4000)
            .filter(|_| decide_with(ratio(true, 0.25), &Context::new()))
            .count();
        assert!((800..1200).contains(&kept), "{kept} of 4000 at 0.25");
    }
}
