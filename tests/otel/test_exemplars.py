"""Exemplars: a request-latency bucket leads to the trace of a request that
fell in it.

- A scrape that asks for OpenMetrics (as Prometheus does) gets the
  request-latency buckets with `trace_id` exemplars of sampled requests, each
  a trace the server exported; any other scrape gets the classic format.
- promtool accepts both: `promtool check metrics` the classic format (it
  parses only that one), and promtool's OpenMetrics parser (`tsdb
  create-blocks-from openmetrics`, which requires a timestamp per sample) the
  OpenMetrics one.
- A real Prometheus with exemplar storage scrapes the server and answers
  `/api/v1/query_exemplars` with a trace id the server exported.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import free_port, start_daemon
from test_traces import TEXT, receiver, traced  # noqa: F401 (fixtures)

#: What Prometheus sends when it scrapes.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
EXEMPLAR = re.compile(
    r'^nbserve_http_request_duration_seconds_bucket\{([^}]*)\} \d+ '
    r'# \{trace_id="([0-9a-f]{32})"\} (\S+) (\S+)$',
    re.M,
)


def sampled_requests(server, n: int) -> list[str]:
    """Sends `n` predictions, each in a new sampled trace; their trace ids."""
    sent = []
    for _ in range(n):
        trace_id = secrets.token_hex(16)
        headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        assert server.post_json("/predict", {"text": TEXT}, headers).status == 200
        sent.append(trace_id)
    return sent


def exported_server_traces(receiver, sent: list[str]) -> set[str]:
    """The trace ids of `sent` whose server span reached the receiver."""
    def server_span(s):
        return s.kind == "SPAN_KIND_SERVER" and s.trace_id in sent

    spans = receiver.wait_for(lambda ss: sum(map(server_span, ss)) == len(sent))
    return {s.trace_id for s in spans if server_span(s)}


def with_timestamps(openmetrics: str, ts: int) -> str:
    """Each sample line with a timestamp, before its exemplar (backfill
    requires one; a scrape does not)."""
    out = []
    for line in openmetrics.splitlines():
        if line.startswith("#"):
            out.append(line)
            continue
        sample, sep, exemplar = line.partition(" # ")
        out.append(f"{sample} {ts}{sep}{exemplar}")
    return "\n".join(out) + "\n"


def test_openmetrics_scrapes_carry_exported_traces_and_promtool_accepts_both(
    receiver, traced, prometheus_bin, tmp_path  # noqa: F811
):
    server = traced({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    sent = sampled_requests(server, 5)
    exported = exported_server_traces(receiver, sent)

    r = server.get("/metrics", headers={"accept": PROMETHEUS_ACCEPT})
    assert r.status == 200
    assert r.headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    openmetrics = r.body.decode()
    assert openmetrics.endswith("\n# EOF\n")
    found = EXEMPLAR.findall(openmetrics)
    predict = [(labels, t, float(v), float(ts)) for labels, t, v, ts in found if 'route="/predict"' in labels]
    assert predict, openmetrics
    for labels, trace_id, value, ts in predict:
        assert trace_id in exported, (trace_id, exported)
        bound = re.search(r'le="([^"]+)"', labels).group(1)
        assert value <= float(bound.replace("+Inf", "inf")), (labels, value)
        assert abs(ts - time.time()) < 120

    classic = server.get("/metrics")
    assert classic.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "trace_id" not in classic.body.decode()

    promtool = str(prometheus_bin / "promtool")
    lint = subprocess.run([promtool, "check", "metrics"], input=classic.body, capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    source = tmp_path / "openmetrics.txt"
    source.write_text(with_timestamps(openmetrics, int(time.time()) - 60))
    blocks = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(tmp_path / "blocks")],
        capture_output=True,
        text=True,
    )
    assert blocks.returncode == 0, blocks.stdout + blocks.stderr
    # The parser read every sample: one series each.
    samples = sum(1 for line in openmetrics.splitlines() if not line.startswith("#"))
    assert re.search(rf"\s{samples}\s+{samples}\s+{samples}\s", blocks.stdout), (samples, blocks.stdout)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def test_prometheus_ingests_the_exemplars(receiver, traced, prometheus_bin, tmp_path):  # noqa: F811
    server = traced({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 900ms}\n"
        "storage: {exemplars: {max_exemplars: 1000}}\n"
        "scrape_configs:\n"
        f"  - job_name: nbserve\n    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
    )
    prometheus = start_daemon(
        "prometheus",
        [str(prometheus_bin / "prometheus"), f"--config.file={config}",
         f"--storage.tsdb.path={tmp_path}/tsdb", f"--web.listen-address=127.0.0.1:{port}",
         "--enable-feature=exemplar-storage", "--log.level=warn"],
        tmp_path,
        f"http://127.0.0.1:{port}/-/ready",
        wait=30,
    )
    try:
        start = time.time()
        sent = sampled_requests(server, 5)
        exported = exported_server_traces(receiver, sent)
        query = urllib.parse.urlencode({
            "query": 'nbserve_http_request_duration_seconds_bucket{route="/predict"}',
            "start": f"{start - 60:.3f}",
            "end": f"{time.time() + 600:.3f}",
        })
        deadline = time.monotonic() + 30
        ingested: set[str] = set()
        while not ingested and time.monotonic() < deadline:
            answer = get_json(f"{prometheus.url}/api/v1/query_exemplars?{query}")
            assert answer["status"] == "success", answer
            ingested = {
                e["labels"]["trace_id"] for series in answer["data"] for e in series["exemplars"]
            }
            time.sleep(0.5)
        assert ingested, f"no exemplar ingested:\n{prometheus.log_tail()}"
        assert ingested <= exported, (ingested, exported)
        (target,) = get_json(f"{prometheus.url}/api/v1/targets")["data"]["activeTargets"]
        assert target["health"] == "up" and target["lastError"] == "", target
    finally:
        prometheus.stop()
