"""orchestration/prefect/flow.py run with the real prefect package (local
ephemeral API, tests/prefect/ephemeral.py) against the real `nbserve
retrain`, told in order (each run a module-scoped fixture the tests read):

- a run on correctly labelled feedback promotes: flow run COMPLETED, report
  verdict `promoted`, model.path holds the new version, the old one is kept;
- the same run again is `unchanged`: flow run COMPLETED, nothing under
  models/ changed;
- a run on mislabelled feedback is rejected: flow run FAILED with the
  report's reason, model.path unchanged; a failing fetch step fails the run
  before any retrain;
- Prefect's API recorded the states and the report artifacts; the cron
  deployment `flow.py serve` builds carries its schedule; `flow.py run`
  exits 5 on a rejection;
- credentials in the fetch and retrain command lines and in a failing
  command's stderr are `***` in the logs and the state message.

Data: tests/retrain/make_data.py; v1 is trained on its small base set only,
so the field data can improve on it. Timings and the gates' numbers go to
the closing "figures" section.
"""

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import ephemeral  # noqa: F401  (before prefect is imported)
import flow as nbflow
import pytest
from prefect.client.orchestration import get_client

ROOT = Path(__file__).resolve().parents[2]
# A small grid: the point is the flow, not the search.
GRID = ["--alpha", "0.1,1", "--min-df", "1,2", "--max-features", "0", "--folds", "3", "--name", "spam-nb"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Work:
    """The scratch folder: make_data.py's files, settings.toml
    (model.path = models/spam-nb.json) and the reports."""

    def __init__(self, path: Path, nbserve: Path):
        self.path = path
        self.nbserve = str(nbserve)
        self.model = path / "models" / "spam-nb.json"

    def served_version(self) -> str:
        return json.loads(self.model.read_text())["model"]["version"]

    def params(self, feedback: str, report_dir: str, version: str) -> dict:
        return {
            "data": [str(self.path / "base.csv")], "holdout": str(self.path / "holdout.csv"),
            "feedback_logs": [str(self.path / feedback)], "config": str(self.path / "settings.toml"),
            "nbserve": self.nbserve, "report_dir": str(self.path / report_dir),
            "extra_args": [*GRID, "--model-version", version],
        }

    def report(self, report_dir: str) -> dict:
        try:
            return json.loads((self.path / report_dir / "retrain-report.json").read_text())
        except (OSError, ValueError) as err:
            return {"error": str(err)}

    def tree(self) -> dict[str, str]:
        root = self.path / "models"
        return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*"))
                if p.is_file() and p.name != ".nbserve.lock"}


def holdout_f1s(rep: dict) -> str:
    cand = ((rep.get("candidate") or {}).get("holdout") or {}).get("f1_macro")
    cur = ((rep.get("current") or {}).get("holdout") or {}).get("f1_macro")
    return (f"candidate {nbflow._fmt(cand)} vs current {nbflow._fmt(cur)} holdout F1 macro; "
            f"gates {json.dumps(rep.get('gates'))}")


def run_flow(work: Work, feedback: str, report_dir: str, version: str, **extra):
    """One flow run in this process; its final state, report and seconds."""
    t0 = time.monotonic()
    state = nbflow.retrain_flow(**{**work.params(feedback, report_dir, version), **extra}, return_state=True)
    return state, work.report(report_dir), round(time.monotonic() - t0, 1)


@pytest.fixture(scope="module")
def work(nbserve_bin, tmp_path_factory):
    path = tmp_path_factory.mktemp("prefect")
    subprocess.run([sys.executable, str(ROOT / "tests" / "retrain" / "make_data.py"), str(path)], check=True)
    (path / "models").mkdir()
    (path / "settings.toml").write_text(
        f'[model]\npath = "{path}/models/spam-nb.json"\ndir = "{path}/models"\n[gate]\nmin_f1_macro = 0.6\n')
    subprocess.run([str(nbserve_bin), "tune", "--data", str(path / "base.csv"), "--test-data",
                    str(path / "holdout.csv"), "--out", str(path / "models" / "spam-nb.json"), "--name", "spam-nb",
                    "--model-version", "v1", "--alpha", "0.1,1", "--min-df", "1,2", "--max-features", "0",
                    "--folds", "3"], check=True, stdout=subprocess.DEVNULL)
    return Work(path, nbserve_bin)


# ------------------------------------------------------------ 1. a promotion
@pytest.fixture(scope="module")
def promotion(work, figures):
    before, v_before = sha(work.model), work.served_version()
    state, rep, secs = run_flow(work, "feedback-good.jsonl", "run-promote", "v2")
    figures("promotion run s", secs)
    figures("promotion", holdout_f1s(rep))
    return state, rep, before, v_before


def test_promotion_flow_run_completed(promotion):
    state = promotion[0]
    assert state.is_completed(), (state.type.value, state.message)


def test_promotion_report_verdict_is_promoted(promotion):
    assert promotion[1].get("verdict") == "promoted", promotion[1]


def test_promotion_replaces_the_content_of_model_path(work, promotion):
    assert sha(work.model) != promotion[2]


def test_promotion_model_path_now_holds_the_candidate(work, promotion):
    assert work.served_version() == "v2" == (promotion[1].get("candidate") or {}).get("version")


def test_promotion_keeps_the_replaced_model_in_model_dir_versions_for_rollback(work, promotion):
    kept_dir = work.path / "models" / "versions"
    kept_versions = set()
    for k in sorted(kept_dir.glob("*")) if kept_dir.is_dir() else []:
        try:
            kept_versions.add(json.loads(k.read_text())["model"]["version"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    assert promotion[3] in kept_versions, sorted(kept_versions)


# ------------------------------------------------------------ 1b. the same inputs again: unchanged
@pytest.fixture(scope="module")
def unchanged(work, promotion):
    before = work.tree()
    state, rep, _ = run_flow(work, "feedback-good.jsonl", "run-unchanged", "v2b")
    return state, rep, before


def test_unchanged_flow_run_completed(unchanged):
    state = unchanged[0]
    assert state.is_completed(), (state.type.value, state.message)


def test_unchanged_report_verdict_is_unchanged_and_nothing_promoted(unchanged):
    rep = unchanged[1]
    assert (rep.get("verdict"), rep.get("promoted")) == ("unchanged", None), rep


def test_unchanged_leaves_every_file_under_models_as_it_was(work, unchanged):
    assert work.tree() == unchanged[2] and work.served_version() == "v2"


# ------------------------------------------------------------ 2. a rejection (mislabelled feedback)
@pytest.fixture(scope="module")
def rejection(work, unchanged, figures):
    before = sha(work.model)
    state, rep, secs = run_flow(work, "feedback-flipped.jsonl", "run-reject", "v3")
    figures("rejection run s", secs)
    figures("rejection", holdout_f1s(rep))
    return state, rep, before


def test_rejection_flow_run_failed(rejection):
    state = rejection[0]
    assert state.is_failed(), (state.type.value, state.message)


def test_rejection_state_message_carries_the_reports_reason(rejection):
    state, rep, _ = rejection
    assert (rep.get("reason") or "<no reason>") in (state.message or ""), state.message


def test_rejection_flow_result_raises_retrain_rejected(rejection):
    with pytest.raises(nbflow.RetrainRejected):
        rejection[0].result()


def test_rejection_report_verdict_is_rejected(rejection):
    assert rejection[1].get("verdict") == "rejected", rejection[1]


def test_rejection_leaves_model_path_unchanged(work, rejection):
    assert sha(work.model) == rejection[2] and work.served_version() == "v2"


# ------------------------------------------------------------ 2b. a failing fetch step
@pytest.fixture(scope="module")
def fetch_fails(work, rejection):
    before = sha(work.model)
    state, _, _ = run_flow(work, "feedback-good.jsonl", "run-fetch-fails", "v9", fetch_cmd="false")
    return state, before


def test_a_failing_fetch_command_fails_the_flow_run_before_any_retrain(work, fetch_fails):
    state, before = fetch_fails
    assert (state.is_failed() and "fetch command exited 1" in (state.message or "")
            and not (work.path / "run-fetch-fails" / "retrain-report.json").exists()
            and sha(work.model) == before), state.message


# ------------------------------------------------------------ 3. what Prefect recorded
@pytest.fixture(scope="module")
def recorded(fetch_fails):
    """The states and report artifacts Prefect's API holds after the four runs."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort="START_TIME_ASC")
        states = [r.state.type.value for r in runs if r.state]
        keys = [a.key for a in client.read_artifacts() if a.key == "nbserve-retrain-report"]
    return states, keys


def test_prefects_api_recorded_the_four_flow_runs_states(recorded):
    assert recorded[0][-4:] == ["COMPLETED", "COMPLETED", "FAILED", "FAILED"]


def test_each_run_left_its_report_as_a_markdown_artifact(recorded):
    assert len(recorded[1]) >= 3, recorded[1]


# ------------------------------------------------------------ 4. the cron deployment `serve` builds
def test_serve_deployment_carries_the_cron_schedule(work):
    dep = nbflow.retrain_flow.to_deployment(name="nbserve-retrain-nightly", cron="0 3 * * *",
                                            parameters=work.params("feedback-good.jsonl", "unused", "x"))
    assert [getattr(s.schedule, "cron", None) for s in (dep.schedules or [])] == ["0 3 * * *"]


# ------------------------------------------------------------ 5. the command line: exit 5 on a rejection
@pytest.fixture(scope="module")
def cli_run(work, recorded, figures):
    before = sha(work.model)
    cli = [sys.executable, str(ROOT / "orchestration" / "prefect" / "flow.py"), "run",
           "--data", str(work.path / "base.csv"), "--holdout", str(work.path / "holdout.csv"),
           "--feedback-log", str(work.path / "feedback-flipped*.jsonl"), "--config", str(work.path / "settings.toml"),
           "--nbserve", work.nbserve, "--report-dir", str(work.path / "run-cli"), "--", *GRID, "--model-version", "v4"]
    t0 = time.monotonic()
    done = subprocess.run(cli, capture_output=True, text=True, env=dict(os.environ))
    figures("command-line run s", round(time.monotonic() - t0, 1))
    return done, before


def test_flow_py_run_exits_5_with_a_failed_flow_run_on_a_rejection(cli_run):
    done = cli_run[0]
    assert done.returncode == 5 and "flow run state: FAILED" in done.stdout, (
        f"exit {done.returncode}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")


def test_flow_py_run_leaves_model_path_unchanged_after_the_rejection(work, cli_run):
    assert sha(work.model) == cli_run[1]


# ------------------------------------------------------------ 6. credentials stay out of the logs and the state
class Captured(logging.Handler):
    """The flow's and tasks' log lines, as Prefect's own handlers get them."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


SECRET = "s3cr3t-in-a-command-line"


@pytest.fixture(scope="module")
def secret_run(work, recorded):
    captured = Captured()
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(captured)
        lg.setLevel(logging.INFO)  # the command lines are INFO lines
    # A stand-in for nbserve that fails repeating its command line on stderr, as
    # a tool reporting an unreachable server does: that tail becomes the state message.
    fake = work.path / "fake-nbserve"
    fake.write_text('#!/bin/sh\necho "nbserve: cannot reach the tracking server: $*" >&2\nexit 1\n')
    fake.chmod(0o755)
    try:
        state, _, _ = run_flow(work, "feedback-good.jsonl", "run-secret", "v8", nbserve=str(fake),
                               fetch_cmd=f"env API_TOKEN={SECRET} curl=off true",
                               extra_args=["--mlflow-uri", f"https://bob:{SECRET}@mlflow.invalid:5000"])
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(captured)
            lg.setLevel(level)
    return state, captured.lines


def test_credentials_in_the_logged_fetch_and_retrain_command_lines_are_hidden(secret_run):
    state, lines = secret_run
    logged = "\n".join(lines)
    assert (state.is_failed() and "fetch: env" in logged and "running " in logged and "mlflow.invalid" in logged
            and SECRET not in logged), [line for line in lines if "fetch:" in line or "running" in line or SECRET in line]


def test_credentials_in_the_failed_runs_state_message_are_hidden(secret_run):
    message = secret_run[0].message or ""
    assert "mlflow.invalid" in message and SECRET not in message, message
