"""Fixtures shared by every pytest suite under tests/<suite>/.

The suites drive the real `nbserve` binary the way a client or an operator
meets it: a process started with `NBSERVE__*` settings on a free loopback
port (port 0, read back from the server's own "listening" log line), talked
to over HTTP or raw sockets, stopped with a signal.

- `nbserve_bin`: the debug binary (`NBSERVE_BIN`, else built here).
- `release_bin`: the release binary (`NBSERVE_BIN_RELEASE`, else built here).
- `models_dir`: a scratch models directory holding a copy of the shipped model.
- `serve`: starts servers (`serve(bin, **settings)`) and stops them after the
  test, failing it if a server panicked.

`scripts/lib/pytest.sh` runs a suite with these and counts its results from
pytest's JUnit XML.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = ROOT / "models" / "spam-nb.json"


def cargo_target_dir() -> Path:
    """Where cargo puts what it builds (honours CARGO_TARGET_DIR and config)."""
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(json.loads(meta)["target_directory"])


def build_binary(profile: str) -> Path:
    """Builds `nbserve` with `profile` (debug|release) and returns its path."""
    cmd = ["cargo", "build", "--locked", "--quiet", "--bin", "nbserve"]
    if profile == "release":
        cmd.append("--release")
    subprocess.run(cmd, cwd=ROOT, check=True)
    return cargo_target_dir() / profile / "nbserve"


@pytest.fixture(scope="session")
def nbserve_bin() -> Path:
    """The debug binary `cargo test` built (`NBSERVE_BIN`), or one built now."""
    given = os.environ.get("NBSERVE_BIN")
    return Path(given) if given else build_binary("debug")


@pytest.fixture(scope="session")
def release_bin() -> Path:
    """The release binary (`NBSERVE_BIN_RELEASE`), or one built now."""
    given = os.environ.get("NBSERVE_BIN_RELEASE")
    return Path(given) if given else build_binary("release")


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A scratch models directory with a copy of the shipped model."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(SHIPPED_MODEL, models / "spam-nb.json")
    return models


class Response:
    """An HTTP answer: status, headers (lower-case names) and body bytes."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:200]!r})"


class Server:
    """A running `nbserve serve` process."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path):
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Response:
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Response(r.status, _lower(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, _lower(e.headers), e.read())

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post_json(self, path: str, obj, headers: dict[str, str] | None = None, **kw):
        h = {"content-type": "application/json", **(headers or {})}
        return self.request("POST", path, json.dumps(obj).encode(), h, **kw)

    def log_lines(self) -> list[dict]:
        """The JSON log lines written so far (non-JSON lines are skipped)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def peak_rss_kib(self) -> int:
        """VmHWM of the running process (peak resident set), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signals the server and waits for it to exit; returns its status."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for settings that need one up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    binary: Path,
    workdir: Path,
    settings: dict[str, str] | None = None,
    *,
    model: Path | str | None = None,
    args: tuple[str, ...] = (),
    rlimit_as: int | None = None,
    wait: float = 60,
) -> Server:
    """Starts `binary serve` on a free port with JSON logs in `workdir`.

    `settings` maps `NBSERVE__*` names (with or without the prefix) to values;
    `model` defaults to `workdir/models/spam-nb.json`. `rlimit_as` caps the
    address space in bytes (what a container memory limit does to a replica).
    Returns once the server logged that it listens.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    model = Path(model) if model is not None else workdir / "models" / "spam-nb.json"
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    env.update(
        {
            "NBSERVE__SERVER__HOST": "127.0.0.1",
            "NBSERVE__SERVER__PORT": "0",
            "NBSERVE__MODEL__PATH": str(model),
            "NBSERVE__MODEL__DIR": str(Path(model).parent),
            "NBSERVE__LOG__FORMAT": "json",
        }
    )
    for k, v in (settings or {}).items():
        env[k if k.startswith("NBSERVE__") else f"NBSERVE__{k}"] = str(v)
    n = len(list(workdir.glob("server-*.log")))
    log_path = workdir / f"server-{n}.log"

    def limit():
        if rlimit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (rlimit_as, rlimit_as))

    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(binary), "serve", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        preexec_fn=limit,
    )
    log.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if "listening" in line:
                try:
                    address = json.loads(line).get("address", "")
                except ValueError:
                    continue
                port = int(address.rsplit(":", 1)[1])
                return Server(proc, port, log_path)
        if proc.poll() is not None:
            raise AssertionError(
                f"nbserve exited {proc.returncode} before listening:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"nbserve did not listen within {wait} s")


@pytest.fixture
def serve(tmp_path: Path):
    """Starts servers for one test: `serve(binary, settings, **kw)` (see
    `start_server`). Every server is stopped after the test, and a panic in
    any of their logs fails it."""
    servers: list[Server] = []

    def start(binary: Path, settings: dict[str, str] | None = None, **kw) -> Server:
        workdir = kw.pop("workdir", tmp_path)
        server = start_server(binary, workdir, settings, **kw)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()
    for s in servers:
        assert "panicked" not in s.log_text(), s.log_text()[-4000:]


# ------------------------------------------------------------------ figures
_FIGURES: list[str] = []


def note_figure(text: str) -> None:
    """Keeps a measured figure (a timing, a gate's numbers, a load summary)
    for the closing "figures" section of the run, shown with or without -s."""
    _FIGURES.append(text)


@pytest.fixture(scope="session")
def figures(record_testsuite_property):
    """`figures(name, value)`: a measured figure, kept as a property of the
    JUnit XML's test suite and printed in the run's closing "figures" section."""

    def note(name: str, value) -> None:
        record_testsuite_property(name, str(value))
        note_figure(f"{name}: {value}")

    return note


_DIAGNOSTICS: list[str] = []


def note_logs_on_failure(request, logs: dict[str, Path], lines: int = 20) -> None:
    """Called as a fixture ends: once any test of the session failed, keeps
    the last `lines` of each log (title -> path) for the run's closing
    "diagnostics" section, since the processes and their folders are gone."""
    if not request.session.testsfailed:
        return
    for title, path in logs.items():
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        _DIAGNOSTICS.append(f"--- last lines of {title}\n" + "\n".join(text.splitlines()[-lines:]))


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
    if _DIAGNOSTICS:
        terminalreporter.section("diagnostics")
        for text in _DIAGNOSTICS:
            terminalreporter.write_line(text)


# ------------------------------------------- third-party servers (MLflow, Prometheus)
class Daemon:
    """A server process a suite depends on (MLflow, Prometheus), in its own
    session so that everything it forks is stopped with it."""

    def __init__(self, name: str, proc: subprocess.Popen, url: str, log_path: Path):
        self.name = name
        self.proc = proc
        self.url = url
        self.log_path = log_path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to the whole process group, SIGKILL to what is left after
        `timeout` seconds. A second call does nothing."""
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.poll()
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


def start_daemon(name: str, cmd: list[str], workdir: Path, ready_url: str, wait: float = 120) -> Daemon:
    """Starts `cmd` in a new session, its output in `workdir/NAME.log`, and
    returns once `ready_url` answers 2xx (fails after `wait` seconds)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = ready_url[: ready_url.index("/", len("http://"))]
    daemon = Daemon(name, proc, base_url, log_path)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ready_url, timeout=5):
                return daemon
        except (OSError, urllib.error.HTTPError):
            pass
        if not daemon.alive():
            raise AssertionError(f"{name} exited {proc.returncode} before it was ready:\n{daemon.log_tail()}")
        time.sleep(0.2)
    daemon.stop()
    raise AssertionError(f"{name} not ready within {wait} s:\n{daemon.log_tail()}")


def installed(script: str, env_var: str) -> Path:
    """The directory an installer (`scripts/install-*.sh`, last line of its
    output) put its programs in; `env_var` names one already installed."""
    given = os.environ.get(env_var)
    if given:
        return Path(given)
    out = subprocess.run([str(ROOT / "scripts" / script)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def mlflow_bin() -> Path:
    """The bin directory of MLflow's venv (`NBSERVE_MLFLOW_BIN`, else
    scripts/install-mlflow.sh installs it)."""
    return installed("install-mlflow.sh", "NBSERVE_MLFLOW_BIN")


def start_mlflow(mlflow_bin: Path, workdir: Path) -> Daemon:
    """A real `mlflow server` on a free loopback port: a SQLite backend store
    and a local artifact destination in `workdir`, one worker."""
    port = free_port()
    return start_daemon(
        "mlflow",
        [str(mlflow_bin / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
         "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        workdir,
        f"http://127.0.0.1:{port}/health",
    )


@pytest.fixture(scope="session")
def mlflow_server(mlflow_bin: Path, tmp_path_factory, request) -> Daemon:
    """A running MLflow tracking server and model registry (`start_mlflow`),
    stopped at the end of the session; a test may stop it earlier."""
    started = time.monotonic()
    daemon = start_mlflow(mlflow_bin, tmp_path_factory.mktemp("mlflow"))
    version = subprocess.run([str(mlflow_bin / "mlflow"), "--version"], capture_output=True, text=True)
    note_figure(f"mlflow {version.stdout.split()[-1] if version.stdout else '?'} on {daemon.url}, "
                f"ready after {time.monotonic() - started:.1f} s")
    yield daemon
    daemon.stop()
    note_logs_on_failure(request, {"mlflow.log": daemon.log_path})


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    """The directory holding `prometheus` and `promtool`
    (`NBSERVE_PROMETHEUS_BIN`, else scripts/install-prometheus.sh installs them)."""
    return installed("install-prometheus.sh", "NBSERVE_PROMETHEUS_BIN")


def start_prometheus(prometheus_bin: Path, workdir: Path, config: Path, port: int) -> Daemon:
    """A real Prometheus with `config` on 127.0.0.1:`port` (the config's own
    scrape of itself needs the port up front), its TSDB in `workdir`."""
    return start_daemon(
        "prometheus",
        [str(prometheus_bin / "prometheus"), f"--config.file={config}", f"--storage.tsdb.path={workdir}/tsdb",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        workdir,
        f"http://127.0.0.1:{port}/-/ready",
        wait=20,
    )


# ------------------------------------------------------------ steady traffic
class SteadyLoad:
    """Steady /predict traffic on a server from tests/retrain/load.py in its
    own process: keep-alive clients, every non-200 or connection error a
    failure, each answer's `model_version` recorded in order of change;
    bounded by `max_secs` in any case."""

    def __init__(self, url: str, texts: Path, workdir: Path, threads: int, max_secs: float = 240):
        import sys

        self.stop_file = workdir / "stop-load"
        self.out = workdir / "load.json"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "retrain" / "load.py"), url, str(texts),
             str(self.stop_file), str(self.out), "--threads", str(threads), "--max-secs", str(max_secs)])

    def finish(self) -> dict:
        """Stops the clients and returns load.py's summary: requests,
        failures, errors (the first 10), rps, versions ([version,
        first_seen_unix, count] in order of change)."""
        self.stop_file.touch()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return json.loads(self.out.read_text())


# ---------------------------------------------------------------- Alertmanager
@pytest.fixture(scope="session")
def alertmanager_bin() -> Path:
    """The directory holding `prometheus-alertmanager` and `amtool`
    (`NBSERVE_ALERTMANAGER_BIN`, else scripts/install-alertmanager.sh installs them)."""
    return installed("install-alertmanager.sh", "NBSERVE_ALERTMANAGER_BIN")


def start_alertmanager(alertmanager_bin: Path, workdir: Path, config: Path, port: int) -> Daemon:
    """A real Alertmanager with `config` on 127.0.0.1:`port`, its data in
    `workdir`, no cluster listener."""
    return start_daemon(
        "alertmanager",
        [str(alertmanager_bin / "prometheus-alertmanager"), f"--config.file={config}",
         f"--storage.path={workdir}/am-data", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address=", "--log.level=warn"],
        workdir,
        f"http://127.0.0.1:{port}/-/ready",
        wait=20,
    )
