"""OpenTelemetry traces, received and decoded by a real OTLP/HTTP receiver
(receiver.py, built on the official opentelemetry-proto classes).

- A request with a W3C `traceparent` (and `tracestate`) yields a server span
  in that trace, child of the caller's span, with the semantic-convention
  attributes and no request text, plus the phase spans under it; the JSON
  log lines of the request carry the same trace id.
- Sampling at 0 exports nothing; tracing off (the default) exports nothing.
- A dead collector costs no failed request: the spans lost are counted.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from pathlib import Path

import pytest

from receiver import start_receiver

ROOT = Path(__file__).resolve().parents[2]
TEXT = "WINNER!! claim your free prize now, reply with your bank details"


@pytest.fixture
def receiver():
    r = start_receiver()
    yield r
    r.stop()


@pytest.fixture
def traced(serve, nbserve_bin, models_dir, monkeypatch):
    """Starts a server with tracing on and `otel` as its OTEL_* variables."""

    def start(otel: dict[str, str], enabled: bool = True, settings: dict | None = None):
        for k in list(__import__("os").environ):
            if k.startswith("OTEL_"):
                monkeypatch.delenv(k)
        # Batches leave at once, so the test waits for spans, not for 5 s.
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        for k, v in otel.items():
            monkeypatch.setenv(k, v)
        settings = dict(settings or {})
        if enabled:
            settings["TRACE__ENABLED"] = "true"
        return serve(nbserve_bin, settings)

    return start


def metric(server, name: str) -> float:
    text = server.get("/metrics").body.decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_reaches(server, name: str, at_least: float, within_s: float = 10.0) -> float:
    """`name`'s value once it is `at_least` (or the last value after `within_s`).
    The exporter counts a batch when the collector's answer is back, which
    can be just after the receiver has handed the spans to the test."""
    deadline = time.monotonic() + within_s
    while (value := metric(server, name)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_a_traceparent_makes_the_server_span_its_child(receiver, traced):
    server = traced(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "spam-filter",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=ml%20ops",
        },
        # The answer's DEBUG line is logged inside the request's span.
        settings={"LOG__LEVEL": "nbserve=debug,tower_http=debug"},
    )
    trace_id = secrets.token_hex(16)
    parent_id = secrets.token_hex(8)
    r = server.post_json(
        "/predict",
        {"text": TEXT},
        headers={
            "traceparent": f"00-{trace_id}-{parent_id}-01",
            "tracestate": "vendor=opaque",
        },
    )
    assert r.status == 200, r.body

    def complete(spans):
        mine = [s for s in spans if s.trace_id == trace_id]
        return {"decode", "score", "encode"} <= {s.name for s in mine} and any(
            s.kind == "SPAN_KIND_SERVER" for s in mine
        )

    spans = [s for s in receiver.wait_for(complete) if s.trace_id == trace_id]
    assert not receiver.errors, receiver.errors
    assert receiver.content_types == {"application/x-protobuf"}
    (root,) = [s for s in spans if s.kind == "SPAN_KIND_SERVER"]
    assert root.parent_span_id == parent_id
    assert root.trace_state == "vendor=opaque"
    assert root.name == "POST /predict"
    assert root.attributes["http.request.method"] == "POST"
    assert root.attributes["http.route"] == "/predict"
    assert root.attributes["http.response.status_code"] == 200
    assert root.resource["service.name"] == "spam-filter"
    assert root.resource["deployment.environment"] == "test"
    assert root.resource["team"] == "ml ops"
    for phase in ("decode", "score", "encode"):
        (child,) = [s for s in spans if s.name == phase]
        assert child.parent_span_id == root.span_id, phase
        assert root.start_ns <= child.start_ns <= child.end_ns <= root.end_ns
    # No request text anywhere in what left the process.
    words = set(re.findall(r"\w{4,}", TEXT))
    for s in spans:
        for v in s.attributes.values():
            assert not (words & set(re.findall(r"\w{4,}", str(v)))), (s.name, v)
    # The request's log lines lead to the trace.
    lines = [l for l in server.log_lines() if l.get("trace_id") == trace_id]
    assert lines, server.log_text()[-2000:]
    assert all(re.fullmatch(r"[0-9a-f]{16}", l["span_id"]) for l in lines)
    assert metric_reaches(server, "nbserve_trace_spans_exported_total", 4) >= 4


def test_a_failed_request_is_an_error_span_only_when_the_server_failed(receiver, traced):
    server = traced({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint + "/v1/traces"})
    trace_id = secrets.token_hex(16)
    r = server.request(
        "POST",
        "/predict",
        b"{not json",
        {"content-type": "application/json", "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )
    assert r.status == 400
    spans = receiver.wait_for(lambda ss: any(s.trace_id == trace_id for s in ss))
    (root,) = [s for s in spans if s.trace_id == trace_id and s.kind == "SPAN_KIND_SERVER"]
    assert root.attributes["http.response.status_code"] == 400
    assert root.status_code == 0  # unset: a 4xx is the client's error


@pytest.mark.parametrize(
    "sampler", [("traceidratio", "0"), ("always_off", "")], ids=["ratio-0", "always-off"]
)
def test_sampling_at_zero_exports_nothing(receiver, traced, sampler):
    name, arg = sampler
    server = traced(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": name,
            "OTEL_TRACES_SAMPLER_ARG": arg,
        }
    )
    for i in range(20):
        headers = {"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}
        assert server.post_json("/predict", {"text": TEXT}, headers if i % 2 else None).status == 200
    assert "exporting OpenTelemetry traces" in server.log_text()
    # The exit exports whatever is queued: nothing may be.
    assert server.stop() == 0
    assert receiver.requests == 0 and receiver.spans == []


def test_a_sampled_share_exports_whole_traces_and_nothing_of_the_rest(receiver, traced):
    # The decision is taken before the request's span is built: the requests
    # left out leave no span at all (no orphan phase), the sampled ones their
    # server span with every phase under it.
    server = traced(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.5",
        }
    )
    unsampled = secrets.token_hex(16)
    for i in range(40):
        headers = {"traceparent": f"00-{unsampled}-{secrets.token_hex(8)}-00"} if i % 4 == 0 else None
        assert server.post_json("/predict", {"text": TEXT}, headers).status == 200
    assert server.stop() == 0
    spans = receiver.spans
    roots = {s.span_id: s for s in spans if s.kind == "SPAN_KIND_SERVER"}
    # 30 requests at 0.5: all or none would be a broken draw (2 in 10^9).
    assert 0 < len(roots) < 30, len(roots)
    assert unsampled not in {s.trace_id for s in spans}, "a caller's unsampled flag is followed"
    for s in spans:
        if s.name in ("decode", "score", "encode"):
            assert s.parent_span_id in roots, s
    for root in roots.values():
        phases = sorted(s.name for s in spans if s.parent_span_id == root.span_id)
        assert phases == ["decode", "encode", "score"], phases


def test_a_request_left_out_by_sampling_logs_as_with_tracing_off(receiver, traced):
    # A request not sampled runs under the log subscriber alone: its log
    # lines still name its request span (id, route), without trace ids,
    # while the sampled ones carry both.
    server = traced(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_always_off",
        },
        settings={"LOG__LEVEL": "nbserve=debug,tower_http=debug"},
    )
    sampled = secrets.token_hex(16)
    for request_id, traceparent in (
        ("left-out-1", None),
        ("sampled-1", f"00-{sampled}-{secrets.token_hex(8)}-01"),
    ):
        headers = {"x-request-id": request_id}
        if traceparent:
            headers["traceparent"] = traceparent
        assert server.post_json("/predict", {"text": TEXT}, headers).status == 200
    receiver.wait_for(lambda ss: any(s.trace_id == sampled for s in ss))
    assert server.stop() == 0

    def answered(request_id):
        return [
            l
            for l in server.log_lines()
            if l.get("message") == "finished processing request"
            and l.get("span", {}).get("request_id") == request_id
        ]

    (left_out,) = answered("left-out-1")
    assert left_out["span"]["route"] == "/predict", left_out
    assert "trace_id" not in left_out
    (traced_line,) = answered("sampled-1")
    assert traced_line["trace_id"] == sampled
    assert {s.trace_id for s in receiver.spans} == {sampled}


def test_a_reload_left_out_by_sampling_logs_under_its_request(receiver, traced, models_dir):
    # The load runs in a task of its own: it takes the request's span and
    # subscriber with it, so its line names the request that asked for it.
    token = "otel-test-admin-token-0123456789abcdef"
    server = traced(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "always_off",
        },
        settings={"ADMIN__TOKEN": token},
    )
    shutil.copy(ROOT / "models" / "spam-cnb.json", models_dir / "spam-nb.json")
    r = server.request(
        "POST", "/admin/reload", b"",
        {"authorization": f"Bearer {token}", "x-request-id": "reload-left-out"},
    )
    assert r.status == 200, r.body
    assert server.stop() == 0
    (line,) = [l for l in server.log_lines() if l.get("message") == "model reloaded"]
    assert line.get("span", {}).get("request_id") == "reload-left-out", line
    assert receiver.spans == []


def test_tracing_is_off_by_default(receiver, traced):
    server = traced(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint},
        enabled=False,
        settings={"LOG__LEVEL": "nbserve=debug,tower_http=debug"},
    )
    headers = {"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}
    for _ in range(5):
        assert server.post_json("/predict", {"text": TEXT}, headers).status == 200
    assert server.stop() == 0
    assert receiver.requests == 0
    assert "trace_id" not in server.log_text()


def test_a_dead_collector_costs_no_request(traced):
    from conftest import free_port

    server = traced({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    statuses = [server.post_json("/predict", {"text": TEXT}).status for _ in range(50)]
    assert statuses == [200] * 50

    deadline = time.monotonic() + 20
    while metric(server, 'nbserve_trace_spans_dropped_total{reason="export_failed"}') == 0:
        assert time.monotonic() < deadline, "no export failure counted"
        time.sleep(0.1)
    assert metric(server, "nbserve_trace_spans_exported_total") == 0
    assert server.stop() == 0


def test_a_poll_span_covers_the_reload_it_triggers(receiver, traced, models_dir):
    server = traced(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint},
        settings={"MODEL__POLL_INTERVAL_SECS": "1"},
    )
    # Another valid model at model.path: the next poll sees a new source.
    other = models_dir.parents[0] / "other.json"
    shutil.copy(ROOT / "models" / "spam-cnb.json", other)
    other.replace(models_dir / "spam-nb.json")

    def reload_loads(spans):
        reloads = {s.span_id for s in spans if s.name == "reload"}
        return [s for s in spans if s.name == "model_load" and s.parent_span_id in reloads]

    spans = receiver.wait_for(reload_loads)
    assert not receiver.errors, receiver.errors
    (load,) = reload_loads(spans)
    (reload,) = [s for s in spans if s.span_id == load.parent_span_id]
    (poll,) = [s for s in spans if s.span_id == reload.parent_span_id]
    assert poll.name == "poll"
    assert poll.trace_id == reload.trace_id == load.trace_id
    assert poll.start_ns <= reload.start_ns <= load.start_ns <= load.end_ns <= reload.end_ns <= poll.end_ns
    assert metric_reaches(server, 'nbserve_model_polls_total{model="spam-nb",result="reloaded"}', 1) == 1
