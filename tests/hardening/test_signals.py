"""Signals while the server is still starting: SIGHUP (log rotation,
`systemctl reload`, sent by PID whenever they run) must not kill a server that
is loading its model, and SIGTERM/SIGINT then stop it cleanly.

The model load is made slow on purpose: `gate.holdout_path` names a large
CSV, so the gate evaluates the model on it before the server binds.

The measured figures are printed in the run's closing "figures" section.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample.csv"
# Copies of the sample: a holdout of ~20 MB, evaluated while the model loads.
COPIES = 40
# After the runtime is up, how long to wait before signalling.
DELAYS = [0.0, 0.005, 0.02, 0.1]


@pytest.fixture(scope="module")
def big_holdout(tmp_path_factory) -> Path:
    head, rows = SAMPLE.read_text().split("\n", 1)
    if not rows.endswith("\n"):
        rows += "\n"
    path = tmp_path_factory.mktemp("holdout") / "holdout.csv"
    with path.open("w") as f:
        f.write(head + "\n")
        for _ in range(COPIES):
            f.write(rows)
    return path


def spawn(binary: Path, models: Path, holdout: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    env.update(
        {
            "NBSERVE__SERVER__HOST": "127.0.0.1",
            "NBSERVE__SERVER__PORT": "0",
            "NBSERVE__MODEL__PATH": str(models / "spam-nb.json"),
            "NBSERVE__MODEL__DIR": str(models),
            "NBSERVE__LOG__FORMAT": "json",
            "NBSERVE__GATE__HOLDOUT_PATH": str(holdout),
        }
    )
    with log.open("wb") as err:
        return subprocess.Popen(
            [str(binary), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=err
        )


def wait_for_runtime(proc: subprocess.Popen) -> None:
    """Waits until the process runs more than one thread: its async runtime
    exists, and the model load is about to start (or running)."""
    deadline = time.monotonic() + 30
    while len(os.listdir(f"/proc/{proc.pid}/task")) < 2:
        assert proc.poll() is None, f"exited {proc.returncode} before starting"
        assert time.monotonic() < deadline, "no runtime within 30 s"
        time.sleep(0.0005)


def messages(log: Path) -> list[str]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line).get("message", ""))
        except ValueError:
            pass
    return out


def wait_for_message(proc: subprocess.Popen, log: Path, text: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not any(text in m for m in messages(log)):
        assert proc.poll() is None, (
            f"exited {proc.returncode} (signal {-proc.returncode if proc.returncode < 0 else '-'})"
            f" waiting for {text!r}:\n" + log.read_text(errors="replace")[-3000:]
        )
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s"
        time.sleep(0.02)


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running {timeout} s after {sig!r}")


@pytest.mark.parametrize("delay", DELAYS, ids=[f"{d * 1000:g}ms" for d in DELAYS])
def test_sighup_while_the_model_loads_reloads_once_up(
    release_bin, models_dir, big_holdout, tmp_path, figures, delay
):
    # Regression: the handlers were installed after the load and the gate,
    # so a SIGHUP then killed the server (exit 129 / signal 1).
    log = tmp_path / "server.log"
    proc = spawn(release_bin, models_dir, big_holdout, log)
    try:
        wait_for_runtime(proc)
        time.sleep(delay)
        proc.send_signal(signal.SIGHUP)
        assert not any("listening" in m for m in messages(log)), (
            "the model had loaded before the signal: make the holdout larger"
        )
        wait_for_message(proc, log, "listening")
        # The reload asked for while loading is applied once the server is up.
        wait_for_message(proc, log, "model reloaded")
        startup_ms = next(
            json.loads(line)["startup_ms"]
            for line in log.read_text().splitlines()
            if "listening" in line
        )
        figures(
            f"SIGHUP {delay * 1000:g} ms into a {startup_ms} ms load", "up, then reloaded"
        )
    finally:
        status = stop(proc)
    assert status == 0, f"exit {status} after SIGTERM:\n{log.read_text()[-3000:]}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_while_the_model_loads_exits_0_without_serving(
    release_bin, models_dir, big_holdout, tmp_path, figures, sig
):
    # Regression: the default action killed the process (signal 15 / 2).
    log = tmp_path / "server.log"
    proc = spawn(release_bin, models_dir, big_holdout, log)
    wait_for_runtime(proc)
    time.sleep(0.02)
    sent = time.monotonic()
    status = stop(proc, sig)
    took = time.monotonic() - sent
    text = log.read_text(errors="replace")
    figures(f"{sig.name} while loading", f"exit {status} after {took:.2f} s")
    assert status == 0, f"exit {status}:\n{text[-3000:]}"
    found = messages(log)
    assert any("stopped while loading the model" in m for m in found), text[-3000:]
    assert not any("listening" in m for m in found), text[-3000:]
