"""Helpers and fixtures of the container suite: the image
`scripts/build-image.sh` builds, run with podman the way its users run it.

Containers need root here (the project does not set up rootless podman) and
podman (scripts/test-container.sh installs it with apt-get when missing). Where
either is missing every test of the suite is skipped, with a loud line, and
counted as skipped.

Every container a test starts is removed after it; its published ports are on
127.0.0.1 only (never a container's own address).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, Response, note_figure

LOUD = "!" * 72


_SKIP_NOTED: set[str] = set()


def skip_loudly(reason: str) -> None:
    """Skips the test with `reason`, said once in the run's closing section."""
    if reason not in _SKIP_NOTED:
        _SKIP_NOTED.add(reason)
        note_figure(f"{LOUD}\n!!! container tests SKIPPED: {reason}\n{LOUD}")
    pytest.skip(f"container tests skipped: {reason}")


@functools.cache
def engine_problem() -> str | None:
    """Why containers cannot run here (None when they can). Sets
    CONTAINERS_CONF for podman, buildah and podman-compose (scripts/lib/podman.sh)."""
    if os.geteuid() != 0:
        return "not root: the project runs containers with rootful podman only"
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/test-container.sh installs it as root with apt-get)"
    out = subprocess.run(
        ["bash", "-c", "source scripts/lib/podman.sh && podman_env && echo \"$CONTAINERS_CONF\""],
        cwd=ROOT, capture_output=True, text=True,
    )
    if out.returncode != 0:
        return f"scripts/lib/podman.sh podman_env failed: {out.stderr.strip()}"
    os.environ["CONTAINERS_CONF"] = out.stdout.strip()
    info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    if info.returncode != 0:
        return f"podman info failed: {info.stderr.strip()[-500:]}"
    # A container must really start (an unprivileged CI container has podman
    # but no namespaces to give): Debian's static busybox as a root file system.
    try:
        busybox = static_busybox()
    except subprocess.CalledProcessError as e:
        return f"no static busybox for the probe container: {e.stderr.strip()[-500:]}"
    # ":O": an overlay, so the probe leaves the unpacked root as it was.
    probe = podman("run", "--rm", "--network", "none", "--rootfs", f"{busybox.parent.parent}:O", "/bin/busybox",
                   "true", check=False)
    if probe.returncode != 0:
        return f"podman cannot start a container here: {probe.stderr.strip()[-500:]}"
    return None


def static_busybox() -> Path:
    """Debian's static busybox (package busybox-static, unpacked once into
    NBSERVE_CACHE by scripts/lib/deb.sh): ROOT/bin/busybox of a tiny root."""
    out = subprocess.run(
        ["bash", "-c", 'source scripts/lib/deb.sh && d="${NBSERVE_CACHE:-$HOME/.cache/nbserve}/busybox-static" && '
                       '{ [[ -x $d/root/bin/busybox ]] || deb_unpack busybox-static "^1\\." "$d" >&2; } && '
                       'echo "$d/root/bin/busybox"'],
        cwd=ROOT, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def podman(*args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Runs podman with `args`; output captured as text."""
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {out.returncode}:\n{out.stdout[-2000:]}{out.stderr[-4000:]}")
    return out


@dataclass
class Image:
    """A built image: its reference, ID, size and history."""

    ref: str
    id: str
    size: int
    config: dict
    healthcheck: dict
    layers: list[str]
    build_secs: float

    @property
    def labels(self) -> dict[str, str]:
        return self.config.get("Labels") or {}


@functools.cache
def _image(release_bin: str) -> Image:
    given = os.environ.get("NBSERVE_IMAGE")
    started = time.monotonic()
    if given:
        ref = given
    else:
        env = dict(os.environ, NBSERVE_BIN_RELEASE=release_bin)
        out = subprocess.run([str(ROOT / "scripts" / "build-image.sh")], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
        assert out.returncode == 0, f"scripts/build-image.sh exited {out.returncode}"
        ref = out.stdout.strip().splitlines()[-1]
    secs = time.monotonic() - started
    data = json.loads(podman("image", "inspect", ref).stdout)[0]
    # podman keeps the docker-format HEALTHCHECK beside the OCI config.
    health = data.get("Healthcheck") or data["Config"].get("Healthcheck") or {}
    return Image(ref=ref, id=data["Id"], size=int(data["Size"]), config=data["Config"], healthcheck=health,
                 layers=data["RootFS"]["Layers"], build_secs=secs)


@pytest.fixture(scope="session")
def image(release_bin) -> Image:
    """The nbserve image (`NBSERVE_IMAGE`, else built now by
    scripts/build-image.sh from the release binary; a no-op when up to date)."""
    problem = engine_problem()
    if problem:
        skip_loudly(problem)
    return _image(str(release_bin))


class Container:
    """A container started with `podman run -d`, removed by `remove()`."""

    def __init__(self, name: str):
        self.name = name

    def port(self, container_port: int = 8080) -> int:
        out = podman("port", self.name, f"{container_port}/tcp").stdout.strip().splitlines()[0]
        return int(out.rsplit(":", 1)[1])

    def url(self, container_port: int = 8080) -> str:
        return f"http://127.0.0.1:{self.port(container_port)}"

    def inspect(self) -> dict:
        return json.loads(podman("container", "inspect", self.name).stdout)[0]

    def running(self) -> bool:
        return self.inspect()["State"]["Running"]

    def logs(self) -> str:
        out = podman("logs", self.name, check=False)
        return out.stdout + out.stderr

    def log_lines(self) -> list[dict]:
        lines = []
        for line in self.logs().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
        return lines

    def wait(self, timeout: float = 60) -> int:
        """Waits for the container to exit; returns its exit code."""
        return int(podman("wait", self.name, timeout=timeout).stdout.strip().splitlines()[-1])

    def wait_ready(self, path: str = "/health", timeout: float = 60) -> str:
        """Waits until `path` answers 200 on the published port; returns the base URL."""
        deadline = time.monotonic() + timeout
        url = self.url()
        tries = 0
        while time.monotonic() < deadline:
            try:
                if http("GET", url + path, timeout=2).status == 200:
                    return url
            except OSError:
                pass
            tries += 1
            if tries % 20 == 0 and not self.running():
                raise AssertionError(f"{self.name} exited {self.inspect()['State']['ExitCode']}:\n{self.logs()[-4000:]}")
            time.sleep(0.02)
        raise AssertionError(f"{self.name}: {path} not 200 within {timeout} s:\n{self.logs()[-4000:]}")

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)


@pytest.fixture
def run_container(image, request):
    """`run_container(*args, options=[...], publish=True)`: `podman run -d` of
    the image with `args` (its command) and `options` (podman run options),
    port 8080 published on 127.0.0.1 at a free port. Removed after the test;
    logs kept for the closing diagnostics when it failed."""
    started: list[Container] = []
    failed_before = request.session.testsfailed

    def run(*args: str, options: tuple[str, ...] | list[str] = (), publish: bool = True, ref: str | None = None) -> Container:
        name = f"nbserve-test-{os.getpid()}-{len(started)}-{int(time.time() * 1000) % 100000}"
        cmd = ["run", "-d", "--name", name, *(["-p", "127.0.0.1::8080"] if publish else []), *options,
               ref or image.ref, *args]
        podman(*cmd)
        c = Container(name)
        started.append(c)
        return c

    yield run
    for c in started:
        if request.session.testsfailed > failed_before:
            note_figure(f"logs of {c.name} (the test failed):\n{c.logs()[-3000:]}")
        c.remove()


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> Response:
    """One HTTP exchange; 4xx/5xx answers are returned, not raised."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def post_json(url: str, obj, timeout: float = 30) -> Response:
    return http("POST", url, json.dumps(obj).encode(), {"content-type": "application/json"}, timeout)


def sample_texts(limit: int | None = None) -> list[str]:
    """Texts of tests/data/sample.csv (the classifier's own test data)."""
    import csv

    with open(ROOT / "tests" / "data" / "sample.csv", newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    return texts[:limit] if limit else texts


def cargo_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]


def yaml_documents(path: Path | None = None, text: str | None = None) -> list:
    """The YAML documents of a file or a string, as data: PyYAML of
    podman-compose's venv (NBSERVE_PODMAN_COMPOSE names its podman-compose;
    the shared pytest venv has no YAML parser)."""
    compose = os.environ.get("NBSERVE_PODMAN_COMPOSE")
    py = str(Path(compose).parent / "python") if compose else "python3"
    code = "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))"
    out = subprocess.run([py, "-c", code], input=path.read_text() if path else text, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)
