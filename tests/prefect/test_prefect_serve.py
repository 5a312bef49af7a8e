"""`flow.py serve` against a real Prefect server, and how flow.py stops:

- without PREFECT_API_URL `serve` refuses at once: exit 2 and one line naming
  it (the local ephemeral API never starts scheduled runs);
- the flow sets local ephemeral mode's start-up wait itself (180 s unless
  the variable is set);
- a real `prefect server start` (its own process group, a free port, its own
  PREFECT_HOME) and `flow.py serve --interval 5` against it: a run the
  schedule created reaches COMPLETED through the API, after a real
  `nbserve retrain` that promoted;
- SIGINT and SIGTERM sent to flow.py's process alone, while a scheduled
  run's command is running: it exits 0 within the bound, nothing it started
  is left in its session, and the run in flight is no longer RUNNING;
- SIGTERM to `flow.py run` (ephemeral mode) mid-run: it exits within the
  bound and takes the temporary API and the command with it.

The time from `serve` to the first completed scheduled run and the stop
times go to the closing "figures".
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import ephemeral  # noqa: F401  (before prefect is imported)
import pytest
from conftest import free_port, note_logs_on_failure, start_daemon

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "orchestration" / "prefect" / "flow.py"
PREFECT = Path(sys.executable).parent / "prefect"
GRID = ["--alpha", "0.1,1", "--min-df", "1,2", "--max-features", "0", "--folds", "3", "--name", "spam-nb"]
# supervise.py's grace (30 s) and leftover (5 s) bounds, and some slack.
STOP_BOUND_SECS = 45
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def session_members(sid: int) -> list[str]:
    """The live (not zombie) processes of session `sid`, as `pid cmdline`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2:].split()[:4]
        if int(session) == sid and state != "Z":
            found.append(f"{proc.name} {cmdline.strip()}")
    return found


def kill_session(sid: int) -> None:
    for member in session_members(sid):
        try:
            os.kill(int(member.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(what: str, check, timeout: float, every: float = 0.5):
    """`check()`'s first truthy value, polled until `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s")


def api(url: str, path: str, body: dict) -> list:
    req = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def flow_runs(url: str, deployment: str) -> list[dict]:
    return api(url, "/flow_runs/filter", {"deployments": {"name": {"any_": [deployment]}},
                                          "sort": "EXPECTED_START_TIME_ASC"})


class Work:
    """make_data.py's files, settings.toml (model.path in models/, no model
    yet: the first retrain only needs the absolute gate), and `nbserve-hang`:
    the real binary, unless the file `hang` exists, then a command that
    writes `started` and sleeps (a retrain in flight when the signal comes)."""

    def __init__(self, path: Path, nbserve: Path):
        self.path = path
        self.model = path / "models" / "spam-nb.json"
        self.hang = path / "hang"
        self.started = path / "started"
        self.wrapper = path / "nbserve-hang"
        self.wrapper.write_text(f'#!/bin/sh\nif [ -e "{self.hang}" ]; then echo $$ > "{self.started}"; sleep 300; fi\n'
                                f'exec "{nbserve}" "$@"\n')
        self.wrapper.chmod(0o755)

    def args(self, mode: str, *options: str) -> list[str]:
        return [sys.executable, str(FLOW), mode, *options, "--data", str(self.path / "base.csv"),
                "--holdout", str(self.path / "holdout.csv"), "--config", str(self.path / "settings.toml"),
                "--nbserve", str(self.wrapper), "--report-dir", str(self.path / "reports"), "--", *GRID]

    def start(self, args: list[str], log_name: str, **env: str) -> subprocess.Popen:
        """`args` in a new session (so everything it starts can be found),
        its output in LOG_NAME."""
        home = self.path / f"home-{Path(log_name).stem}"
        home.mkdir()
        full_env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "INFO", **env}
        with open(self.path / log_name, "wb") as log:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                    start_new_session=True, cwd=self.path)


def stop(proc: subprocess.Popen, sig: int) -> tuple[int | None, float]:
    """Sends `sig` to `proc` alone; its exit code (None: still running after
    STOP_BOUND_SECS) and the seconds it took."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        return proc.wait(STOP_BOUND_SECS), round(time.monotonic() - t0, 1)
    except subprocess.TimeoutExpired:
        return None, round(time.monotonic() - t0, 1)


@pytest.fixture
def work(nbserve_bin, tmp_path, request):
    subprocess.run([sys.executable, str(ROOT / "tests" / "retrain" / "make_data.py"), str(tmp_path)], check=True,
                   stdout=subprocess.DEVNULL)
    (tmp_path / "models").mkdir()
    (tmp_path / "settings.toml").write_text(
        f'[model]\npath = "{tmp_path}/models/spam-nb.json"\ndir = "{tmp_path}/models"\n[gate]\nmin_f1_macro = 0.6\n')
    yield Work(tmp_path, nbserve_bin)
    note_logs_on_failure(request, {p.name: p for p in sorted(tmp_path.glob("*.log"))}, lines=40)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory, request, figures):
    """`prefect server start` (API and services, no UI) on a free loopback
    port; its database in its own PREFECT_HOME."""
    workdir = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    t0 = time.monotonic()
    daemon = start_daemon(
        "prefect-server",
        ["env", f"PREFECT_HOME={workdir}", "PREFECT_SERVER_ANALYTICS_ENABLED=false",
         # the scheduler's full pass every 5 s instead of 60: a new deployment's runs appear sooner
         "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS=5", str(PREFECT), "server", "start",
         "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        workdir, f"http://127.0.0.1:{port}/api/health", wait=180)
    figures("prefect server start s", round(time.monotonic() - t0, 1))
    yield f"http://127.0.0.1:{port}/api"
    daemon.stop()
    note_logs_on_failure(request, {"prefect-server.log": daemon.log_path})


# ------------------------------------------------------------ no server: refuse
def test_serve_without_a_prefect_server_refuses_with_one_line_and_exit_2(work):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    proc = subprocess.Popen(work.args("serve"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(f"flow.py serve kept running on the ephemeral API:\n{out[-1500:]}\n{err[-1500:]}")
    finally:
        kill_session(proc.pid)
    lines = err.strip().splitlines()
    assert (proc.returncode, len(lines), out) == (2, 1, "") and "PREFECT_API_URL" in lines[0], (proc.returncode, err)


# ------------------------------------------------------------ ephemeral start-up wait
def ephemeral_startup_timeout(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import flow; from prefect.settings import "
            "get_current_settings as s; print(s().server.ephemeral.startup_timeout_seconds)")
    done = subprocess.run([sys.executable, "-c", code, str(FLOW.parent)], capture_output=True, text=True,
                          env={**base, **env}, check=True)
    return done.stdout.strip()


def test_the_flow_sets_a_generous_ephemeral_startup_timeout_itself():
    assert ephemeral_startup_timeout() == "180"


def test_an_ephemeral_startup_timeout_the_user_set_wins():
    assert ephemeral_startup_timeout(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="33") == "33"


# ------------------------------------------------------------ scheduled runs, then a signal
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_served_schedule_runs_and_a_signal_stops_everything(work, prefect_server, figures, sig):
    name = f"nbserve-retrain-{sig.name.lower()}"
    t0 = time.monotonic()
    proc = work.start(work.args("serve", "--interval", "5", "--name", name), "serve.log",
                      PREFECT_API_URL=prefect_server, PREFECT_RUNNER_POLL_FREQUENCY="2")
    try:
        def completed():
            done = [r for r in flow_runs(prefect_server, name) if r["state_type"] == "COMPLETED"]
            if not done and proc.poll() is not None:
                raise AssertionError(f"flow.py serve exited {proc.returncode}")
            return done[0] if done else None

        run = wait_for("a completed scheduled run", completed, timeout=180)
        figures(f"serve to first completed scheduled run s ({sig.name})", round(time.monotonic() - t0, 1))
        report = json.loads((work.path / "reports" / "retrain-report.json").read_text())
        assert run["auto_scheduled"] and report["verdict"] == "promoted" and work.model.is_file(), (run, report)

        # The next scheduled run's command is running when the signal comes.
        work.hang.touch()
        wait_for("a scheduled run's command in flight", work.started.exists, timeout=120)
        in_flight = [r["id"] for r in flow_runs(prefect_server, name) if r["state_type"] == "RUNNING"]
        code, secs = stop(proc, sig)
        figures(f"serve stop s ({sig.name}, a run in flight)", secs)
        left = session_members(proc.pid)
        assert (code, left) == (0, []), f"exit {code} after {secs} s; left running: {left}"
        assert in_flight, "no run was RUNNING when the signal came"

        def settled():
            states = {r["id"]: r["state_type"] for r in flow_runs(prefect_server, name)}
            return all(states[i] in FINAL for i in in_flight)
        wait_for(f"the run in flight ({in_flight}) in a final state", settled, timeout=30)
    finally:
        kill_session(proc.pid)


def test_sigterm_stops_flow_py_run_with_its_temporary_api_and_command(work, figures):
    work.hang.touch()
    proc = work.start(work.args("run"), "run.log")
    try:
        wait_for("the retrain command started", work.started.exists, timeout=240)
        code, secs = stop(proc, signal.SIGTERM)
        figures("run stop s (SIGTERM mid-run)", secs)
        left = session_members(proc.pid)
        assert code is not None and code != 0 and left == [], f"exit {code} after {secs} s; left running: {left}"
    finally:
        kill_session(proc.pid)
