"""docker-compose.yml up for real: podman-compose (pinned, hash-checked:
scripts/podman-compose-requirements.txt) starts nbserve, Prometheus and
Alertmanager with docker-compose.offline.yml, which swaps in the image
scripts/build-image.sh built and Prometheus and Alertmanager images assembled
from Debian's packages (scripts/build-offline-images.sh); nothing is pulled.
Grafana has no Debian package and stays out (its provisioning is validated by
the deployment-file checks).

The stack runs under a project name of its own, its ports published on free
127.0.0.1 ports (NBSERVE_HOST_PORT, ...), and is taken down with its volumes
after the module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass

import pytest

from conftest import ROOT, SHIPPED_MODEL, free_port, note_figure
from containers import http, image, podman, post_json, skip_loudly  # noqa: F401  (fixtures)

FILES = ["-f", "docker-compose.yml", "-f", "docker-compose.offline.yml"]
SERVICES = ["nbserve", "prometheus", "alertmanager"]


@dataclass
class Stack:
    project: str
    ports: dict[str, int]
    containers: dict[str, str]
    up_secs: float

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


def wait_for(what: str, check, timeout: float, interval: float = 1.0):
    """Polls `check()` until it returns something truthy; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s (last: {str(last)[:2000]})")


@pytest.fixture(scope="module")
def stack(image, request):
    compose = os.environ.get("NBSERVE_PODMAN_COMPOSE") or shutil.which("podman-compose")
    if not compose:
        skip_loudly("podman-compose is not installed (scripts/test-container.sh installs it, pinned)")
    offline = subprocess.run([str(ROOT / "scripts" / "build-offline-images.sh")], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert offline.returncode == 0, "scripts/build-offline-images.sh failed"
    project = f"nbserve-test-{os.getpid()}"
    ports = {"nbserve": free_port(), "prometheus": free_port(), "alertmanager": free_port()}
    env = dict(os.environ, NBSERVE_IMAGE=image.ref, NBSERVE_HOST_PORT=str(ports["nbserve"]),
               PROMETHEUS_HOST_PORT=str(ports["prometheus"]), ALERTMANAGER_HOST_PORT=str(ports["alertmanager"]))
    cmd = [compose, *FILES, "-p", project]
    started = time.monotonic()
    up = subprocess.run([*cmd, "up", "-d", "--no-build"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600)
    try:
        assert up.returncode == 0, f"podman-compose up exited {up.returncode}:\n{up.stdout[-3000:]}{up.stderr[-3000:]}"
        names = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={project}",
                       "--format", "{{.Names}}").stdout.split()
        containers = {s: next((n for n in names if f"_{s}_" in n or n.endswith(f"-{s}-1")), "") for s in SERVICES}
        s = Stack(project, ports, containers, 0.0)
        wait_for("nbserve /ready through its published port",
                 lambda: http("GET", s.url("nbserve") + "/ready", timeout=2).status == 200, 120, 0.2)
        s.up_secs = time.monotonic() - started
        note_figure(f"compose up (podman-compose, 3 services) to nbserve ready: {s.up_secs:.1f} s")
        yield s
    finally:
        if request.session.testsfailed:
            for name in podman("ps", "-a", "--filter", f"label=io.podman.compose.project={project}",
                               "--format", "{{.Names}}", check=False).stdout.split():
                logs = podman("logs", "--tail", "30", name, check=False)
                note_figure(f"logs of {name}:\n{logs.stdout}{logs.stderr}")
        down = subprocess.run([*cmd, "down", "-v", "-t", "5"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        if down.returncode != 0:
            note_figure(f"podman-compose down exited {down.returncode}: {down.stderr[-2000:]}")


def test_the_three_services_run_and_their_compose_healthchecks_pass(stack):
    assert all(stack.containers.values()), stack.containers
    for service, name in stack.containers.items():
        # podman runs healthchecks from systemd timers; without systemd they
        # are run on demand. The checks are docker-compose.yml's own.
        ran = wait_for(f"{service} healthcheck",
                       lambda: podman("healthcheck", "run", name, check=False).returncode == 0, 60)
        assert ran
    listed = podman("ps", "--filter", f"label=io.podman.compose.project={stack.project}",
                    "--format", "{{.Image}}").stdout.split()
    assert not any("grafana" in i for i in listed), listed


def test_prometheus_scrapes_nbserve_over_the_compose_network(stack, figures):
    prom = stack.url("prometheus")

    def nbserve_up():
        targets = json.loads(http("GET", prom + "/api/v1/targets").body)["data"]["activeTargets"]
        return [t for t in targets if t["labels"].get("job") == "nbserve" and t["health"] == "up"]

    up = wait_for("Prometheus reports the nbserve target up", nbserve_up, 90)
    assert up[0]["scrapeUrl"] == "http://nbserve:8080/metrics", up
    # Traffic sent to nbserve shows up in what Prometheus scraped.
    for _ in range(20):
        assert post_json(stack.url("nbserve") + "/predict", {"text": "free money, click now"}).status == 200

    def predicted():
        q = urllib.parse.quote('sum(nbserve_http_requests_total{job="nbserve", route="/predict"})')
        result = json.loads(http("GET", f"{prom}/api/v1/query?query={q}").body)["data"]["result"]
        return result and float(result[0]["value"][1]) >= 20 and result

    seen = wait_for("Prometheus scraped the /predict requests", predicted, 60)
    version = json.loads(SHIPPED_MODEL.read_text())["model"]["version"]
    q = urllib.parse.quote('nbserve_model_info{job="nbserve"}')
    info = json.loads(http("GET", f"{prom}/api/v1/query?query={q}").body)["data"]["result"]
    assert info and info[0]["metric"]["version"] == version, info
    figures("compose: Prometheus scraped nbserve", f"{up[0]['scrapeUrl']}, /predict count {seen[0]['value'][1]}")


def test_an_alert_from_prometheus_reaches_alertmanager(stack, figures):
    prom, am = stack.url("prometheus"), stack.url("alertmanager")

    def alertmanagers():
        return json.loads(http("GET", prom + "/api/v1/alertmanagers").body)["data"]["activeAlertmanagers"]

    active = wait_for("Prometheus found Alertmanager", alertmanagers, 60)
    assert any("alertmanager:9093" in a["url"] for a in active), active

    def watchdog():
        alerts = json.loads(http("GET", am + "/api/v2/alerts").body)
        return [a for a in alerts if a["labels"].get("alertname") == "Watchdog"]

    got = wait_for("the Watchdog alert reached Alertmanager", watchdog, 90)
    # The external label of prometheus.yml: it came from this Prometheus.
    assert got[0]["labels"].get("service") == "nbserve", got
    assert got[0]["status"]["state"] == "active", got
    figures("compose: alert reached Alertmanager", f"Watchdog from {got[0]['generatorURL'][:60]}")


def test_the_docker_swap_recipe_serves_a_new_model_without_a_rebuild(stack, figures):
    """docs/docker.md "Swapping the model without a rebuild", step by step
    against the running stack: train with tune's parameters, `check` it
    against the gate, rename it over models/spam-nb.json, then the recipe's
    signal (`docker compose kill -s HUP nbserve`, podman-compose here). The
    shipped file is put back, and served again, whatever happens."""
    binary = os.environ["NBSERVE_BIN_RELEASE"]
    subprocess.run([str(ROOT / "scripts" / "fetch-data.sh")], cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    shipped = SHIPPED_MODEL.read_bytes()
    tmp = ROOT / "models" / ".spam-nb.json.tmp"
    compose = os.environ.get("NBSERVE_PODMAN_COMPOSE") or shutil.which("podman-compose")
    env = dict(os.environ, NBSERVE_HOST_PORT=str(stack.ports["nbserve"]),
               PROMETHEUS_HOST_PORT=str(stack.ports["prometheus"]),
               ALERTMANAGER_HOST_PORT=str(stack.ports["alertmanager"]))

    def hangup():
        done = subprocess.run([compose, *FILES, "-p", stack.project, "kill", "-s", "HUP", "nbserve"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def serving(version: str):
        return lambda: version in http("GET", stack.url("nbserve") + "/ready", timeout=2).body.decode()

    try:
        train = subprocess.run([binary, "train", "--data", "data/spamassassin.csv", "--alpha", "0.01", "--min-df", "2",
                                "--name", "spam-nb", "--model-version", "v2", "--out", str(tmp)], cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
        assert train.returncode == 0, train.stderr[-2000:]
        check = subprocess.run([binary, "check", "--model", str(tmp), "--min-f1-macro", "0.90"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
        assert check.returncode == 0 and "gate passed" in check.stdout, check.stdout + check.stderr
        os.replace(tmp, SHIPPED_MODEL)
        started = time.monotonic()
        hangup()
        wait_for("the compose nbserve serves v2 after SIGHUP", serving('"model_version":"v2"'), 60, 0.2)
        swapped = time.monotonic() - started
        assert post_json(stack.url("nbserve") + "/predict", {"text": "free money, click now"}).status == 200
    finally:
        tmp.unlink(missing_ok=True)
        SHIPPED_MODEL.write_bytes(shipped)
    version = json.loads(shipped)["model"]["version"]
    hangup()
    wait_for("the shipped model served again", serving(f'"model_version":"{version}"'), 60, 0.2)
    figures("compose: the Docker swap recipe (train, check, rename, SIGHUP)", f"v2 served {swapped:.1f} s after the signal")
