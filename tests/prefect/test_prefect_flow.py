"""Drives orchestration/prefect/flow.py with the real prefect package (local
ephemeral API) against the real `nbserve retrain` (scripts/test-prefect.sh).

    python check_flow.py WORK NBSERVE

WORK holds make_data.py's files, settings.toml (model.path = WORK/models/spam-nb.json,
serving v1) and is where reports go. One PASS/FAIL line per check.
"""
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "orchestration" / "prefect"))

import flow as nbflow  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId  # noqa: E402

work, nbserve = Path(sys.argv[1]), sys.argv[2]
model = work / "models" / "spam-nb.json"
failed = 0
# A small grid: the point is the flow, not the search.
GRID = ["--alpha", "0.1,1", "--min-df", "1,2", "--max-features", "0", "--folds", "3", "--name", "spam-nb"]


def check(ok, what, detail=""):
    global failed
    print(("PASS: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failed += 1
        if detail:
            print("      " + str(detail).replace("\n", "\n      "), flush=True)
    return ok


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def served_version():
    return json.loads(model.read_text())["model"]["version"]


def params(feedback, report_dir, version):
    return {
        "data": [str(work / "base.csv")], "holdout": str(work / "holdout.csv"),
        "feedback_logs": [str(work / feedback)], "config": str(work / "settings.toml"),
        "nbserve": nbserve, "report_dir": str(work / report_dir),
        "extra_args": [*GRID, "--model-version", version],
    }


def report(report_dir):
    try:
        return json.loads((work / report_dir / "retrain-report.json").read_text())
    except (OSError, ValueError) as err:
        return {"error": str(err)}


# ------------------------------------------------------------ 1. a promotion
before, v_before = sha(model), served_version()
t0 = time.monotonic()
state = nbflow.retrain_flow(**params("feedback-good.jsonl", "run-promote", "v2"), return_state=True)
promote_secs = time.monotonic() - t0
rep = report("run-promote")
check(state.is_completed(), f"promotion: flow run COMPLETED (state {state.type.value}, {promote_secs:.1f} s)", state.message)
check(rep.get("verdict") == "promoted", f"promotion: report verdict {rep.get('verdict')!r} is 'promoted'", rep)
check(sha(model) != before, "promotion: model.path content replaced")
check(served_version() == "v2" == (rep.get("candidate") or {}).get("version"),
      f"promotion: model.path now holds the candidate ({served_version()}, report {(rep.get('candidate') or {}).get('version')})")
kept = sorted((work / "models" / "versions").glob("*")) if (work / "models" / "versions").is_dir() else []
kept_versions = set()
for k in kept:
    try:
        kept_versions.add(json.loads(k.read_text())["model"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
check(v_before in kept_versions, f"promotion: the replaced model {v_before} is kept in model.dir/versions for rollback",
      f"versions kept: {sorted(kept_versions)}")
cand = ((rep.get("candidate") or {}).get("holdout") or {}).get("f1_macro")
cur = ((rep.get("current") or {}).get("holdout") or {}).get("f1_macro")
print(f"INFO: promotion: candidate {nbflow._fmt(cand)} vs current {nbflow._fmt(cur)} holdout F1 macro; "
      f"gates {json.dumps(rep.get('gates'))}", flush=True)

# ------------------------------------------------------------ 1b. the same inputs again: unchanged
def tree(root):
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".nbserve.lock"}


before = tree(work / "models")
state = nbflow.retrain_flow(**params("feedback-good.jsonl", "run-unchanged", "v2b"), return_state=True)
rep = report("run-unchanged")
check(state.is_completed(), f"unchanged: flow run COMPLETED (state {state.type.value})", state.message)
check(rep.get("verdict") == "unchanged" and rep.get("promoted") is None,
      f"unchanged: report verdict {rep.get('verdict')!r} is 'unchanged', promoted {rep.get('promoted')!r}", rep)
check(tree(work / "models") == before and served_version() == "v2",
      "unchanged: every file under models/ unchanged (still v2, no new kept version)")

# ------------------------------------------------------------ 2. a rejection (mislabelled feedback)
before = sha(model)
t0 = time.monotonic()
state = nbflow.retrain_flow(**params("feedback-flipped.jsonl", "run-reject", "v3"), return_state=True)
reject_secs = time.monotonic() - t0
rep = report("run-reject")
check(state.is_failed(), f"rejection: flow run FAILED (state {state.type.value}, {reject_secs:.1f} s)", state.message)
reason = rep.get("reason") or "<no reason>"
check(reason in (state.message or ""), f"rejection: the state message carries the report's reason ({reason!r})", state.message)
try:
    state.result()
    check(False, "rejection: the flow's result raises RetrainRejected")
except nbflow.RetrainRejected:
    check(True, "rejection: the flow's result raises RetrainRejected")
except Exception as err:  # noqa: BLE001
    check(False, "rejection: the flow's result raises RetrainRejected", repr(err))
check(rep.get("verdict") == "rejected", f"rejection: report verdict {rep.get('verdict')!r} is 'rejected'", rep)
check(sha(model) == before and served_version() == "v2", "rejection: model.path unchanged (still v2)")
cand = ((rep.get("candidate") or {}).get("holdout") or {}).get("f1_macro")
cur = ((rep.get("current") or {}).get("holdout") or {}).get("f1_macro")
print(f"INFO: rejection: candidate {nbflow._fmt(cand)} vs current {nbflow._fmt(cur)} holdout F1 macro; "
      f"gates {json.dumps(rep.get('gates'))}", flush=True)

# ------------------------------------------------------------ 2b. a failing fetch step stops the run before retrain
before = sha(model)
state = nbflow.retrain_flow(**params("feedback-good.jsonl", "run-fetch-fails", "v9"),
                            fetch_cmd="false", return_state=True)
check(state.is_failed() and "fetch command exited 1" in (state.message or "")
      and not (work / "run-fetch-fails" / "retrain-report.json").exists() and sha(model) == before,
      "a failing fetch command fails the flow run before any retrain", state.message)

# ------------------------------------------------------------ 3. what Prefect recorded
with get_client(sync_client=True) as client:
    runs = client.read_flow_runs(sort="START_TIME_ASC")
    states = [r.state.type.value for r in runs if r.state]
    check(states[-4:] == ["COMPLETED", "COMPLETED", "FAILED", "FAILED"],
          f"Prefect's API recorded the four flow runs as {states[-4:]}")
    arts = client.read_artifacts()
    keys = [a.key for a in arts if a.key == "nbserve-retrain-report"]
    check(len(keys) >= 3, f"each run left its report as a markdown artifact ({len(keys)})")

# ------------------------------------------------------------ 4. the cron deployment `serve` builds
dep = nbflow.retrain_flow.to_deployment(name="nbserve-retrain-nightly", cron="0 3 * * *",
                                        parameters=params("feedback-good.jsonl", "unused", "x"))
crons = [getattr(s.schedule, "cron", None) for s in (dep.schedules or [])]
check(crons == ["0 3 * * *"], f"serve: the deployment carries the cron schedule {crons}")

# ------------------------------------------------------------ 5. the command line: exit 5 on a rejection
before = sha(model)
env = dict(os.environ)
cli = [sys.executable, str(ROOT / "orchestration" / "prefect" / "flow.py"), "run",
       "--data", str(work / "base.csv"), "--holdout", str(work / "holdout.csv"),
       "--feedback-log", str(work / "feedback-flipped*.jsonl"), "--config", str(work / "settings.toml"),
       "--nbserve", nbserve, "--report-dir", str(work / "run-cli"), "--", *GRID, "--model-version", "v4"]
t0 = time.monotonic()
done = subprocess.run(cli, capture_output=True, text=True, env=env)
cli_secs = time.monotonic() - t0
check(done.returncode == 5 and "flow run state: FAILED" in done.stdout,
      f"flow.py run: a rejection exits 5 with a FAILED flow run ({cli_secs:.1f} s)",
      f"exit {done.returncode}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
check(sha(model) == before, "flow.py run: model.path unchanged after the rejection")

# ------------------------------------------------------------ 6. credentials stay out of the logs and the state
class Captured(logging.Handler):
    """The flow's and tasks' log lines, as Prefect's own handlers get them."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


captured = Captured()
for name in ("prefect.flow_runs", "prefect.task_runs"):
    logging.getLogger(name).addHandler(captured)
    logging.getLogger(name).setLevel(logging.INFO)  # the command lines are INFO lines
SECRET = "s3cr3t-in-a-command-line"
# A stand-in for nbserve that fails repeating its command line on stderr, as a
# tool reporting an unreachable server does: that tail becomes the state message.
fake = work / "fake-nbserve"
fake.write_text('#!/bin/sh\necho "nbserve: cannot reach the tracking server: $*" >&2\nexit 1\n')
fake.chmod(0o755)
state = nbflow.retrain_flow(**{**params("feedback-good.jsonl", "run-secret", "v8"), "nbserve": str(fake),
                               "fetch_cmd": f"env API_TOKEN={SECRET} curl=off true",
                               "extra_args": ["--mlflow-uri", f"https://bob:{SECRET}@mlflow.invalid:5000"]},
                            return_state=True)
logged = "\n".join(captured.lines)
message = state.message or ""
check(state.is_failed() and "fetch: env" in logged and "running " in logged and "mlflow.invalid" in logged
      and SECRET not in logged,
      "credentials: the fetch and retrain command lines are logged with the token and the URL password hidden",
      "\n".join(line for line in captured.lines if "fetch:" in line or "running" in line or SECRET in line))
check("mlflow.invalid" in message and SECRET not in message,
      "credentials: the failed run's state message (the command's stderr) hides them too", message)

print(f"TIMING: promotion run {promote_secs:.1f} s, rejection run {reject_secs:.1f} s, "
      f"command-line run {cli_secs:.1f} s", flush=True)
# 3, not 1: the caller tells failed checks from a crash (a traceback exits 1).
sys.exit(3 if failed else 0)
