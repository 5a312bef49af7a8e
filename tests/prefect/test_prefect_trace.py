"""Unit tests of `trace_env` in orchestration/prefect/flow.py: the
environment `nbserve retrain` runs with carries the trace context it joins
(TRACEPARENT/TRACESTATE): the current OpenTelemetry span's when there is one
(Prefect's task-run span with an SDK configured), else the flow's own. The
retrain side (joining what it is given) is tests/otel/test_retrain_trace.py.
Run with Prefect's Python (flow.py imports prefect) by scripts/test-prefect.sh.
"""
import ephemeral  # noqa: F401  (before prefect is imported)
from flow import trace_env
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

GIVEN = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_flows_own_traceparent_is_passed_on_when_no_span_is_current():
    env = trace_env({"PATH": "/bin", "TRACEPARENT": GIVEN, "TRACESTATE": "a=1"})
    assert env == {"PATH": "/bin", "TRACEPARENT": GIVEN, "TRACESTATE": "a=1"}
    assert "TRACEPARENT" not in trace_env({"PATH": "/bin"})


def test_the_current_span_wins_over_the_variables():
    span = SpanContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331,
                       is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED),
                       trace_state=TraceState([("prefect", "x")]))
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(span)))
    try:
        env = trace_env({"TRACEPARENT": GIVEN, "TRACESTATE": "a=1"})
    finally:
        context.detach(token)
    assert env["TRACEPARENT"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert env["TRACESTATE"] == "prefect=x"
