"""A model registry that misbehaves: it streams an endless JSON answer, sends
its headers very slowly, or answers an error with a huge body. A server
polling `models:/spam@champion` there must stay up and keep serving, hold
little memory, log a registry error and give a poll up within seconds; the
`retrain` and `promote` commands must exit with a clear error instead of
reading gigabytes.

The fake registry (`http.server` in a thread) counts the bytes it managed
to send; run with `-s` to see them.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import ROOT, SHIPPED_MODEL

URI = "models:/spam@champion"
CAP = 1 << 20  # the client's cap on a JSON answer or error body
# An address-space limit like a container's: the unbounded client aborted
# against it instead of taking the test machine's memory.
LIMIT_AS = 3 << 30
# How long a hostile phase lasts (polls every second).
PHASE_SECS = 8.0
GOOD_ANSWER = {
    "model_version": {
        "name": "spam",
        "version": "1",
        "run_id": "r1",
        "source": "mlflow-artifacts:/1/r1/artifacts/model",
    }
}


class Registry(ThreadingHTTPServer):
    """The fake: `mode` decides how every MLflow JSON endpoint answers
    ("good", "endless", "slow_headers", "huge_error"); artifacts are always
    the shipped model."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = "good"
        self.sent = 0  # body bytes of JSON answers sent
        self.requests = 0  # JSON requests received
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, sent: int = 0, requests: int = 0) -> None:
        with self.lock:
            self.sent += sent
            self.requests += requests

    def reset(self, mode: str) -> None:
        with self.lock:
            self.mode, self.sent, self.requests = mode, 0, 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Registry

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self.answer()

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        self.answer()

    def answer(self):
        if self.path.startswith("/api/2.0/mlflow-artifacts/"):
            body = SHIPPED_MODEL.read_bytes()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        mode = self.server.mode
        self.server.count(requests=1)
        if mode == "good":
            body = json.dumps(GOOD_ANSWER).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif mode == "slow_headers":
            # Nothing at all until the test ends.
            self.server.stopping.wait(300)
            self.close_connection = True
        else:
            self.send_response(500 if mode == "huge_error" else 200)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.close_connection = True
            self.stream_endless_json()

    def stream_endless_json(self):
        """`{"model_version":{"name":"xxxx…` until the client hangs up."""
        chunk = b"x" * (64 * 1024)
        first = b'{"model_version":{"name":"' + chunk[26:]

        def frame(c: bytes) -> bytes:
            return b"%x\r\n" % len(c) + c + b"\r\n"

        try:
            self.wfile.write(frame(first))
            self.server.count(sent=len(first))
            framed = frame(chunk)
            while not self.server.stopping.is_set():
                self.wfile.write(framed)
                self.server.count(sent=len(chunk))
        except OSError:
            pass  # the client hung up: what a capped client does


@pytest.fixture
def registry():
    r = Registry()
    thread = threading.Thread(target=r.serve_forever, daemon=True)
    thread.start()
    yield r
    r.stopping.set()
    r.shutdown()
    r.server_close()


def start_following(serve, release_bin, models_dir, registry):
    return serve(
        release_bin,
        {
            "MODEL__PATH": URI,
            "MODEL__DIR": str(models_dir),
            "MODEL__MLFLOW_URI": registry.url,
            "MODEL__POLL_INTERVAL_SECS": "1",
        },
        rlimit_as=LIMIT_AS,
    )


def registry_errors(server) -> list[str]:
    return [
        line.get("error", "")
        for line in server.log_lines()
        if "cannot check the model source" in line.get("message", "")
    ]


def still_serving(server) -> None:
    assert server.alive(), server.log_text()[-2000:]
    assert server.get("/health", timeout=10).status == 200
    r = server.post_json("/predict", {"text": "win a free prize now"}, timeout=10)
    assert r.status == 200, r
    assert r.json()["label"] in ("ham", "spam")


def hostile_phase(server, registry, mode: str) -> tuple[int, int, float]:
    """Switches the registry to `mode` for PHASE_SECS while probing the
    server; returns (bytes sent, JSON requests, seconds to the first logged
    registry error or inf)."""
    registry.reset(mode)
    started = time.monotonic()
    first_error = float("inf")
    while time.monotonic() - started < PHASE_SECS:
        if not server.alive():
            break
        if first_error == float("inf") and registry_errors(server):
            first_error = time.monotonic() - started
        still_serving(server)
        time.sleep(0.25)
    if first_error == float("inf") and registry_errors(server):
        first_error = time.monotonic() - started
    return registry.sent, registry.requests, first_error


@pytest.mark.parametrize("mode", ["endless", "huge_error"])
def test_an_endless_registry_answer_costs_a_poll_not_the_server(
    release_bin, models_dir, serve, registry, mode
):
    # Regression: the alias answer (and an error body) were read without a
    # cap; an endless one made a polling server read until it aborted.
    server = start_following(serve, release_bin, models_dir, registry)
    rss_at_start = server.peak_rss_kib()
    sent, requests, first_error = hostile_phase(server, registry, mode)
    print(
        f"\n{mode}: registry sent {sent / 1e6:.1f} MB in {PHASE_SECS:.0f} s"
        f" ({requests} requests, {sent / max(requests, 1) / 1e6:.1f} MB each);"
        f" server alive: {server.alive()}"
    )
    still_serving(server)
    rss = server.peak_rss_kib()
    print(f"{mode}: peak RSS {rss_at_start / 1024:.0f} MiB at start, {rss / 1024:.0f} MiB after")
    assert rss - rss_at_start < 32 * 1024, (rss_at_start, rss)
    assert requests >= 2, "the server stopped polling"
    # Each poll stops near the cap (what socket buffers hold aside).
    assert sent / requests < 16 * CAP, (sent, requests)
    errors = registry_errors(server)
    assert errors and f"{CAP} bytes" in errors[0], errors
    assert ("answered 500" if mode == "huge_error" else "answered 200") in errors[0]


def test_a_registry_slow_to_send_headers_fails_a_poll_within_seconds(
    release_bin, models_dir, serve, registry
):
    # Regression: a poll waited 60 s for headers and retried 4 times, so
    # polling stalled for about 4 minutes.
    server = start_following(serve, release_bin, models_dir, registry)
    registry.reset("slow_headers")
    started = time.monotonic()
    given_up = None
    while time.monotonic() - started < 30:
        if registry_errors(server):
            given_up = time.monotonic() - started
            break
        still_serving(server)
        time.sleep(0.25)
    print(f"\nslow headers: poll gave up after {given_up} s ({registry.requests} requests)")
    assert given_up is not None, "no poll gave up within 30 s"
    # The 5 s deadline, a 1 s interval, and slack for a loaded machine.
    assert given_up < 15, given_up
    errors = registry_errors(server)
    assert "headers" in errors[0] and "deadline" in errors[0], errors
    still_serving(server)


def run_limited(args: list[str], env: dict[str, str], timeout: float = 180):
    """Runs `args` under LIMIT_AS; returns (exit code, stderr, peak RSS KiB)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))

    proc = subprocess.Popen(
        args,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=limit,
    )
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        err = proc.stderr.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err, usage.ru_maxrss


@pytest.mark.parametrize("command", ["promote", "retrain"])
def test_commands_against_an_endless_registry_exit_with_a_clear_error(
    release_bin, registry, tmp_path, command
):
    # Regression: `retrain` and `promote` use the same client: an endless
    # answer was read until memory ran out.
    registry.reset("endless")
    sample = str(ROOT / "tests" / "data" / "sample.csv")
    if command == "promote":
        args = [str(release_bin), "promote", "--mlflow-uri", registry.url,
                "--model-name", "spam", "--version", "1", "--min-f1-macro", "0"]
    else:
        args = [str(release_bin), "retrain", "--data", sample, "--holdout", sample,
                "--mlflow-uri", registry.url, "--report", str(tmp_path / "r.json")]
    env = {"NBSERVE__MODEL__PATH": URI, "NBSERVE__MODEL__DIR": str(tmp_path)}
    started = time.monotonic()
    code, err, rss = run_limited(args, env)
    took = time.monotonic() - started
    print(
        f"\n{command}: exit {code} in {took:.1f} s, peak RSS {rss / 1024:.0f} MiB,"
        f" registry sent {registry.sent / 1e6:.1f} MB; stderr: {err.strip()[-300:]}"
    )
    assert code == 1, err
    assert f"more than {CAP} bytes" in err, err
    assert registry.sent < 16 * CAP, registry.sent
    assert rss < 256 * 1024, rss
    assert not list(Path(tmp_path).glob("*.json")), "nothing is written"
