"""`nbserve retrain` joins the trace a scheduler gives it through the
`TRACEPARENT` (and `TRACESTATE`) environment variables: with tracing on, its
`retrain` span is a child of that context and its phases (`read_inputs`,
`fit`, `gates`, `promote`) children of the `retrain` span, all received and
decoded by the real OTLP/HTTP receiver (receiver.py). With tracing off (the
default) the same variables export nothing.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from receiver import start_receiver

ROOT = Path(__file__).resolve().parents[2]
GRID = ["--alpha", "0.1,1", "--min-df", "1,2", "--max-features", "0", "--folds", "3", "--name", "spam-nb"]


@pytest.fixture
def receiver():
    r = start_receiver()
    yield r
    r.stop()


@pytest.fixture
def work(nbserve_bin, tmp_path):
    """tests/retrain/make_data.py's files, a v1 model in service and its settings."""
    subprocess.run([sys.executable, str(ROOT / "tests" / "retrain" / "make_data.py"), str(tmp_path)], check=True)
    (tmp_path / "models").mkdir()
    (tmp_path / "settings.toml").write_text(
        f'[model]\npath = "{tmp_path}/models/spam-nb.json"\ndir = "{tmp_path}/models"\n'
        "[gate]\nmin_f1_macro = 0.6\n"
    )
    subprocess.run([str(nbserve_bin), "tune", "--data", str(tmp_path / "base.csv"), "--test-data",
                    str(tmp_path / "holdout.csv"), "--out", str(tmp_path / "models" / "spam-nb.json"),
                    "--model-version", "v1", *GRID], check=True, stdout=subprocess.DEVNULL)
    return tmp_path


def retrain(nbserve_bin: Path, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NBSERVE__")) and k not in
            ("TRACEPARENT", "TRACESTATE")}
    # Batches leave at once: the test waits for spans, not for 5 s.
    base["OTEL_BSP_SCHEDULE_DELAY"] = "50"
    return subprocess.run(
        [str(nbserve_bin), "retrain", "--config", str(work / "settings.toml"), "--data", str(work / "base.csv"),
         "--feedback-log", str(work / "feedback-good.jsonl"), "--holdout", str(work / "holdout.csv"),
         "--report", str(work / "report.json"), "--model-version", "v2", *GRID],
        env={**base, **env}, capture_output=True, text=True, timeout=300,
    )


def test_retrain_spans_are_children_of_the_traceparent_it_is_given(nbserve_bin, work, receiver):
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    done = retrain(nbserve_bin, work, {
        "NBSERVE__TRACE__ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "nbserve-retrain",
        "TRACEPARENT": f"00-{trace_id}-{parent_id}-01",
        "TRACESTATE": "scheduler=prefect",
    })
    assert done.returncode == 0, done.stderr
    phases = {"read_inputs", "fit", "gates", "promote"}

    def complete(spans):
        return {"retrain", *phases} <= {s.name for s in spans if s.trace_id == trace_id}

    # The command has exited: what it exported is all there is.
    spans = receiver.wait_for(complete, timeout=5)
    assert not receiver.errors, receiver.errors
    assert {s.trace_id for s in spans} == {trace_id}, "every span joins the given trace"
    (root,) = [s for s in spans if s.name == "retrain"]
    assert root.parent_span_id == parent_id
    assert root.trace_state == "scheduler=prefect"
    assert root.resource["service.name"] == "nbserve-retrain"
    assert root.status_code != 2, "a promotion is not an error"
    for phase in phases:
        (child,) = [s for s in spans if s.name == phase]
        assert child.parent_span_id == root.span_id, phase
        assert root.start_ns <= child.start_ns <= child.end_ns <= root.end_ns, phase


def test_a_traceparent_without_tracing_on_exports_nothing(nbserve_bin, work, receiver):
    done = retrain(nbserve_bin, work, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "TRACEPARENT": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
    })
    assert done.returncode == 0, done.stderr
    assert receiver.requests == 0
