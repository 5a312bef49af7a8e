"""The retrain loop end to end with the real binary, told in order (each step
a module-scoped fixture the tests read):

1. a server polling model.path (model.poll_interval_secs=1) serves v1 under
   steady /predict traffic (load.py: keep-alive clients, every non-200 or
   connection error is a failure);
2. labelled field data arrives through the API: predictions whose texts the
   server keeps (feedback.keep_text) labelled with /feedback/batch, and
   POST /examples (feedback.accept_examples); the feedback log carries the texts;
3. `nbserve retrain` (base CSV + that log, fixed holdout) promotes v2 and the
   server switches to it (GET /model and the clients see v2);
4. deliberately mislabelled examples (2 labels in 5 swapped, through
   /examples): `nbserve retrain` exits 5, model.path is unchanged and the
   server still serves v2;
5. `nbserve rollback` brings v1 back and the server follows;
6. zero failed requests over the whole run; no ERROR or panic in the server log.

The timings (retrain durations, promote -> served latencies), both gates'
numbers from the reports and the load go to the closing "figures" section.
Data: make_data.py (from the committed tests/data/sample.csv).
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SteadyLoad, note_logs_on_failure, start_server

HERE = Path(__file__).resolve().parent
GRID = ["--alpha", "0.1,1", "--min-df", "1,2", "--max-features", "0", "--folds", "3"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Loop:
    """The scratch folder, the binary and the server of the story."""

    def __init__(self, bin: Path, work: Path):
        self.bin = bin
        self.work = work
        self.model = work / "models" / "spam-nb.json"
        self.feedback_log = work / "feedback" / "feedback.jsonl"
        self.server = None

    def nbserve(self, *args) -> tuple[subprocess.CompletedProcess, float]:
        """Runs a command with the shared settings file; returns it and its seconds."""
        t0 = time.monotonic()
        done = subprocess.run([str(self.bin), args[0], "--config", str(self.work / "settings.toml"),
                               *map(str, args[1:])], capture_output=True, text=True, cwd=ROOT)
        return done, round(time.monotonic() - t0, 2)

    def retrain(self, version: str) -> tuple[subprocess.CompletedProcess, float, dict]:
        data = self.work / "data"
        report = self.work / f"report-{version}.json"
        done, secs = self.nbserve("retrain", "--data", data / "base.csv", "--feedback-log", self.feedback_log,
                                  "--holdout", data / "holdout.csv", "--report", report, "--name", "spam-nb",
                                  "--model-version", version, *GRID)
        try:
            parsed = json.loads(report.read_text())
        except (OSError, ValueError):
            parsed = {}
        return done, secs, parsed

    def field(self, mode: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(HERE / "field.py"), self.server.url,
                               str(self.work / "data" / "field.csv"), mode], capture_output=True, text=True)

    def served_version(self) -> str | None:
        answer = self.server.get("/model", timeout=5)
        return answer.json()["version"] if answer.status == 200 else None

    def wait_served(self, want: str, limit: float) -> float | None:
        """Seconds until GET /model shows `want` (polled every 0.1 s), None after `limit`."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            try:
                if self.served_version() == want:
                    return round(time.monotonic() - t0, 2)
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        return None


def gates_line(report: dict) -> str:
    """Both gates' numbers from a retrain report, on one line."""
    c, cur = report.get("candidate") or {}, report.get("current") or {}

    def f(x):
        return f"{x:.4f}" if isinstance(x, (int, float)) else "n/a"

    return (f"verdict {report.get('verdict')} ({report.get('reason')}); candidate {c.get('version')} holdout "
            f"F1 macro {f((c.get('holdout') or {}).get('f1_macro'))}, current {cur.get('version')} "
            f"{f((cur.get('holdout') or {}).get('f1_macro'))}; gates {json.dumps(report.get('gates'), sort_keys=True)}; "
            f"data {json.dumps(report.get('data'), sort_keys=True)}")


# ------------------------------------------------ 1. serve v1 under load
@pytest.fixture(scope="module")
def loop(nbserve_bin, tmp_path_factory, request):
    loop = Loop(nbserve_bin, tmp_path_factory.mktemp("retrain"))
    work = loop.work
    subprocess.run([sys.executable, str(HERE / "make_data.py"), str(work / "data")], check=True)
    loop.model.parent.mkdir()
    subprocess.run([str(nbserve_bin), "tune", "--data", str(work / "data" / "base.csv"),
                    "--test-data", str(work / "data" / "holdout.csv"), "--out", str(loop.model),
                    "--name", "spam-nb", "--model-version", "v1", *GRID], check=True, capture_output=True)
    loop.v1_sha = sha(loop.model)
    loop.feedback_log.parent.mkdir()
    # One settings file for the server and the retrain/rollback commands (the
    # server's environment adds its port on top). log_fsync=always: a
    # /feedback or /examples request is answered only once its lines are on
    # disk, so the log is complete when retrain reads it.
    settings = {"model": {"path": loop.model, "dir": loop.model.parent, "poll_interval_secs": 1},
                "gate": {"min_f1_macro": 0.6},
                "feedback": {"log_path": loop.feedback_log, "log_fsync": "always", "keep_text": True,
                             "accept_examples": True}}
    (work / "settings.toml").write_text("".join(
        f"[{section}]\n" + "".join(f"{k} = {json.dumps(str(v) if isinstance(v, Path) else v)}\n"
                                   for k, v in values.items())
        for section, values in settings.items()))
    loop.server = start_server(nbserve_bin, work, {
        "MODEL__POLL_INTERVAL_SECS": 1, "GATE__MIN_F1_MACRO": 0.6, "FEEDBACK__LOG_PATH": loop.feedback_log,
        "FEEDBACK__LOG_FSYNC": "always", "FEEDBACK__KEEP_TEXT": "true", "FEEDBACK__ACCEPT_EXAMPLES": "true",
        "ADMIN__TOKEN": "retrain-token-for-the-test"}, model=loop.model)
    yield loop
    loop.server.stop()
    note_logs_on_failure(request, {"server.log": loop.server.log_path})


@pytest.fixture(scope="module")
def load(loop):
    """Steady /predict traffic (2 keep-alive clients) over the whole story
    (`load_seen` stops it)."""
    load = SteadyLoad(loop.server.url, loop.work / "data" / "holdout.csv", loop.work, threads=2)
    time.sleep(1)
    yield load
    load.finish()


def test_the_server_serves_v1(loop):
    assert loop.served_version() == "v1"


# ------------------------------------------------ 2. field data through the API
@pytest.fixture(scope="module")
def field_data(loop, load):
    return loop.field("feedback")


def test_feedback_with_kept_texts_and_examples_are_accepted_by_the_api(field_data):
    assert field_data.returncode == 0, field_data.stdout + field_data.stderr


def test_the_feedback_log_carries_text_and_label_for_every_field_row(loop, field_data):
    with_text = 0
    for line in loop.feedback_log.read_text().splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            continue
        with_text += isinstance(o, dict) and isinstance(o.get("text"), str) and isinstance(o.get("label"), str)
    with open(loop.work / "data" / "field.csv", newline="") as f:
        rows = sum(1 for _ in csv.DictReader(f))
    assert with_text == rows


# ------------------------------------------------ 3. retrain promotes v2, the server follows
@pytest.fixture(scope="module")
def promoted(loop, field_data, figures):
    done, secs, report = loop.retrain("v2")
    served = loop.wait_served("v2", 15)
    loop.v2_sha = sha(loop.model)
    figures("retrain v2 (promoted) s", secs)
    figures("promote -> served s", served)
    figures("GATES v2", gates_line(report))
    return done, report, served


def test_retrain_on_the_field_data_exits_0(promoted):
    done, _, _ = promoted
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_promoting_report_says_promoted(promoted):
    assert promoted[1].get("verdict") == "promoted"


def test_the_server_switches_to_v2(promoted):
    assert promoted[2] is not None


# ------------------------------------------------ 4. mislabelled data is rejected
@pytest.fixture(scope="module")
def mislabelled(loop, promoted, figures):
    sent = loop.field("mislabelled")
    done, secs, report = loop.retrain("v3")
    model_sha = sha(loop.model)
    time.sleep(2.5)  # more than two poll intervals: a change would have been picked up
    figures("retrain v3 (rejected) s", secs)
    figures("GATES v3", gates_line(report))
    return sent, done, report, model_sha, loop.served_version()


def test_mislabelled_examples_are_accepted_by_the_api(mislabelled):
    sent = mislabelled[0]
    assert sent.returncode == 0, sent.stdout + sent.stderr


def test_retrain_on_mislabelled_data_exits_5(mislabelled):
    done = mislabelled[1]
    assert done.returncode == 5, done.stdout + done.stderr


def test_the_rejecting_report_says_rejected(mislabelled):
    assert mislabelled[2].get("verdict") == "rejected"


def test_model_path_is_unchanged_by_the_rejection(loop, mislabelled):
    assert mislabelled[3] == loop.v2_sha


def test_the_server_still_serves_v2_after_the_rejection(mislabelled):
    assert mislabelled[4] == "v2"


# ------------------------------------------------ 5. rollback brings v1 back
@pytest.fixture(scope="module")
def rolled_back(loop, mislabelled, figures):
    done, secs = loop.nbserve("rollback")
    model_sha = sha(loop.model)
    served = loop.wait_served("v1", 15)
    time.sleep(1)
    figures("rollback s", secs)
    figures("rollback -> served s", served)
    return done, model_sha, served


def test_rollback_exits_0(rolled_back):
    done = rolled_back[0]
    assert done.returncode == 0, done.stdout + done.stderr


def test_model_path_holds_v1s_artifact_again(loop, rolled_back):
    assert rolled_back[1] == loop.v1_sha


def test_the_server_follows_the_rollback_to_v1(rolled_back):
    assert rolled_back[2] is not None


# ------------------------------------------------ 6. zero failed requests
@pytest.fixture(scope="module")
def load_seen(load, rolled_back, figures):
    seen = load.finish()
    versions = [(v, n) for v, _, n in seen["versions"]]
    figures("LOAD", f"{seen['requests']} requests, {seen['failures']} failed, {seen['rps']}/s, versions seen "
                    f"in order (x requests): {' '.join(f'{v}x{n}' for v, n in versions) or '-'}")
    return seen, [v for v, _ in versions]


def test_steady_traffic_has_no_failed_request(load_seen):
    seen, _ = load_seen
    assert seen["requests"] > 0 and seen["failures"] == 0, seen["errors"][:3]


def test_the_clients_saw_v1_then_v2_then_v1_again(load_seen):
    # Two client threads may interleave for a moment around a switch, so the
    # sequence may repeat a version; what matters: v1 first, v2 seen, v1 last, never v3.
    _, seq = load_seen
    assert seq[:1] == ["v1"] and "v2" in seq and seq[-1:] == ["v1"] and "v3" not in seq, seq


def test_no_error_or_panic_in_the_server_log(loop, load_seen):
    bad = [line for line in loop.server.log_text().splitlines() if '"level":"ERROR"' in line or "panicked" in line]
    assert not bad
