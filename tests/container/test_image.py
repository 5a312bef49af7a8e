"""The nbserve image as its users run it (`docker run`, compose, Kubernetes):
built by scripts/build-image.sh from the repository's Dockerfile, started with
podman as an arbitrary non-root UID on a read-only root file system.

Figures (image size, layers, build and start times) are printed in the run's
closing "figures" section.
"""

from __future__ import annotations

import http.client as httpclient
import json
import subprocess
import threading
import time
from pathlib import Path

from conftest import ROOT, SHIPPED_MODEL
from containers import http, image, podman, post_json, run_container, sample_texts  # noqa: F401  (fixtures)

HEALTHCHECK = ["CMD", "/usr/local/bin/nbserve", "healthcheck", "--url", "http://127.0.0.1:8080/health"]
# Not root, not the image's default user: any UID must do.
ARBITRARY = ["--read-only", "--user", "12345:23456"]


def proc_status(pid: int) -> dict[str, str]:
    return dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)


def model_info(metrics: bytes) -> str:
    """The nbserve_model_info sample: the served model's name, version and sha256."""
    return next(line for line in metrics.decode().splitlines() if line.startswith("nbserve_model_info{"))


def test_image_size_layers_and_contents(image, figures):
    history = json.loads(podman("history", "--format", "json", image.ref).stdout)
    layers = [(h.get("size", 0), (h.get("CreatedBy") or h.get("createdBy") or "")[:90]) for h in history
              if h.get("size", 0) > 0]
    figures("image", f"{image.ref} id {image.id[:12]}")
    figures("image size", f"{image.size / 1e6:.1f} MB ({image.size} bytes; goal < 30 MB)")
    figures("image layers", f"{len(image.layers)}: " + "; ".join(f"{s / 1e6:.2f} MB {c.strip()}" for s, c in layers))
    figures("image build (scripts/build-image.sh, this run)", f"{image.build_secs:.1f} s")
    assert image.size < 30 * 1000 * 1000, f"{image.size} bytes"
    # The root the builder stage assembled and the feedback directory: one
    # layer from scripts/build-image.sh (podman --layers=false), two from BuildKit.
    assert len(image.layers) <= 2, image.layers
    # Everything in the image is listed here: the binary, the libraries it
    # loads, the model, the SBOM and the two account files. No shell.
    files = podman("run", "--rm", "--entrypoint", "/usr/local/bin/nbserve", image.ref, "--version").stdout
    assert files.startswith("nbserve "), files
    ctr = podman("create", image.ref).stdout.strip()
    try:
        export = subprocess.run(f"podman export {ctr} | tar -t", shell=True, capture_output=True, text=True,
                                check=True).stdout.split()
    finally:
        podman("rm", ctr, check=False)
    regular = sorted(p for p in export if not p.endswith("/"))
    figures("image files", " ".join(regular))
    assert "bin/sh" not in regular and "usr/bin/sh" not in regular
    libs = [p for p in regular if ".so" in p]
    assert any("libc.so" in p for p in libs) and any("ld-linux" in p for p in libs), libs
    assert "app/models/spam-nb.json" in regular and "usr/share/doc/nbserve/sbom.cdx.json" in regular


def test_runs_as_an_arbitrary_uid_on_a_read_only_root(run_container, figures):
    started = time.monotonic()
    c = run_container("serve", options=ARBITRARY)
    url = c.wait_ready("/ready")
    figures("container start to /ready 200 (podman run -d, read-only, UID 12345)", f"{time.monotonic() - started:.2f} s")
    info = c.inspect()
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    status = proc_status(info["State"]["Pid"])
    assert status["Uid"].split() == ["12345"] * 4, status["Uid"]
    assert status["Gid"].split() == ["23456"] * 4, status["Gid"]
    root = [line.split() for line in Path(f"/proc/{info['State']['Pid']}/mountinfo").read_text().splitlines()
            if line.split()[4] == "/"]
    assert root and "ro" in root[0][5].split(","), root
    answer = post_json(url + "/predict", {"text": "WIN a FREE prize now!!! click here to claim your cash"})
    assert answer.status == 200, answer
    assert answer.json()["label"] in ("ham", "spam")
    # The server's own account of its start (text logs: the image's default).
    listening = [line for line in c.logs().splitlines() if "listening" in line]
    assert listening and "address=0.0.0.0:8080" in listening[0], c.logs()[-2000:]
    figures("server start inside the container (its startup_ms)", listening[0].rsplit("startup_ms=", 1)[-1] + " ms")


def test_the_healthcheck_is_nbserve_healthcheck_and_probes_the_server(image, run_container):
    assert image.healthcheck["Test"] == HEALTHCHECK
    c = run_container("serve", options=ARBITRARY)
    c.wait_ready()
    ran = podman("healthcheck", "run", c.name, check=False)
    assert ran.returncode == 0, ran
    state = c.inspect()["State"]
    health = state.get("Health") or state.get("Healthcheck") or {}
    assert health.get("Status") == "healthy", state
    # Control: a server on another port than the healthcheck's URL is unhealthy.
    other = run_container("serve", options=[*ARBITRARY, "-e", "NBSERVE__SERVER__PORT=9000"], publish=False)
    deadline = time.monotonic() + 30
    while "listening" not in other.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "listening" in other.logs(), other.logs()
    ran = podman("healthcheck", "run", other.name, check=False)
    assert ran.returncode != 0 and "unhealthy" in ran.stdout + ran.stderr, ran


def test_predict_answers_equal_the_host_binarys(run_container, serve, release_bin, models_dir, figures):
    host = serve(release_bin, model=models_dir / "spam-nb.json")
    c = run_container("serve", options=ARBITRARY)
    url = c.wait_ready()
    # The same model on both sides: the image's is the repository's.
    assert model_info(http("GET", url + "/metrics").body) == model_info(host.get("/metrics").body)
    texts = sample_texts()
    single = texts[:200]
    for text in single:
        a = post_json(url + "/predict", {"text": text, "explain": True})
        b = host.post_json("/predict", {"text": text, "explain": True})
        assert a.status == b.status == 200, (a, b)
        ja, jb = a.json(), b.json()
        ja.pop("prediction_id"), jb.pop("prediction_id")
        assert ja == jb, (text[:80], ja, jb)
    a = post_json(url + "/predict/batch", {"texts": texts[:1000]}, timeout=120)
    b = host.post_json("/predict/batch", {"texts": texts[:1000]}, timeout=120)
    assert a.status == b.status == 200, (a, b)
    strip = [{k: v for k, v in p.items() if k != "prediction_id"} for p in a.json()["predictions"]]
    assert strip == [{k: v for k, v in p.items() if k != "prediction_id"} for p in b.json()["predictions"]]
    figures("predict parity image vs host binary", f"{len(single)} /predict (with explanations) + "
            f"a /predict/batch of {len(strip)} texts: answers equal")


def test_a_model_below_the_gate_exits_5(run_container, image):
    c = run_container(options=[*ARBITRARY, "-e", "NBSERVE__GATE__MIN_F1_MACRO=0.9999"], publish=False)
    assert c.wait(timeout=60) == 5, c.logs()
    assert "below the gate minimum 0.9999" in c.logs(), c.logs()
    # The same gate through `check`, as the release workflow runs it.
    rejected = podman("run", "--rm", *ARBITRARY, image.ref, "check", "--model", "models/spam-nb.json",
                      "--min-f1-macro", "0.9999", check=False)
    assert rejected.returncode == 5, rejected
    passed = podman("run", "--rm", *ARBITRARY, image.ref, "check", "--model", "models/spam-nb.json",
                    "--min-f1-macro", "0.5", check=False)
    assert passed.returncode == 0, passed


class Load:
    """Keep-alive /predict clients on the published port: every answer that
    is not a 200, and every connection error, is a failed request."""

    def __init__(self, url: str, threads: int = 4):
        self.host, self.port = url.removeprefix("http://").split(":")
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.times: list[float] = []
        bodies = [json.dumps({"text": t}).encode() for t in sample_texts(300)]
        self.threads = [threading.Thread(target=self.worker, args=(bodies[k::threads],)) for k in range(threads)]
        for t in self.threads:
            t.start()

    def worker(self, bodies: list[bytes]) -> None:
        conn = httpclient.HTTPConnection(self.host, int(self.port), timeout=30)
        i = 0
        while not self.stop.is_set():
            try:
                conn.request("POST", "/predict", bodies[i % len(bodies)], {"content-type": "application/json"})
                r = conn.getresponse()
                r.read()
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                        self.times.append(time.monotonic())
                    else:
                        self.failures.append(f"status {r.status}")
            except OSError as e:
                with self.lock:
                    self.failures.append(repr(e))
                conn.close()
                conn = httpclient.HTTPConnection(self.host, int(self.port), timeout=30)
            i += 1
            time.sleep(0.002)
        conn.close()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def test_sigterm_under_load_drains_with_exit_0_and_no_failed_request(run_container, figures):
    # A load balancer stops sending once /ready turns 503: the server keeps
    # serving for drain_delay_secs after SIGTERM, then closes its listener and
    # finishes what is in flight.
    c = run_container("serve", options=[*ARBITRARY, "-e", "NBSERVE__SERVER__DRAIN_DELAY_SECS=3"])
    url = c.wait_ready("/ready")
    load = Load(url)
    try:
        deadline = time.monotonic() + 30
        while load.ok < 300 and time.monotonic() < deadline and not load.failures:
            time.sleep(0.05)
        assert load.ok >= 300 and not load.failures, (load.ok, load.failures[:5])
        podman("kill", "--signal", "TERM", c.name)
        signalled = time.monotonic()
        ready = []
        while time.monotonic() - signalled < 1.5:
            ready.append(http("GET", url + "/ready", timeout=5).status)
            time.sleep(0.1)
    finally:
        load.finish()
    code = c.wait(timeout=60)
    after = sum(1 for t in load.times if t > signalled)
    figures("SIGTERM under load", f"{load.ok} requests, {after} answered after SIGTERM, {len(load.failures)} failed, "
            f"/ready after SIGTERM: {sorted(set(ready))}, exit {code}")
    assert code == 0, c.logs()[-3000:]
    assert not load.failures, load.failures[:10]
    assert after > 0, "no request was served after SIGTERM: the drain was not under load"
    assert 503 in ready and 200 not in ready[-3:], ready


def test_a_model_mounted_from_a_volume_overrides_the_baked_in_one(run_container, release_bin, tmp_path):
    models = tmp_path / "mounted-models"
    subprocess.run([str(release_bin), "train", "--data", str(ROOT / "tests" / "data" / "sample.csv"),
                    "--out", str(models / "spam-nb.json"), "--model-version", "mounted-volume-1"],
                   check=True, capture_output=True)
    models.chmod(0o755)
    (models / "spam-nb.json").chmod(0o644)
    baked = run_container("serve", options=ARBITRARY)
    mounted = run_container("serve", options=[
        *ARBITRARY, "--mount", f"type=bind,source={models},target=/app/models,readonly=true",
        # The sample model is small: its stored F1 is below the default gate.
        "-e", "NBSERVE__GATE__MIN_F1_MACRO=0.5"])
    text = {"text": "cheap meds, click here"}
    shipped_version = json.loads(SHIPPED_MODEL.read_text())["model"]["version"]
    assert post_json(baked.wait_ready() + "/predict", text).json()["model_version"] == shipped_version
    answer = post_json(mounted.wait_ready() + "/predict", text).json()
    assert answer["model_version"] == "mounted-volume-1", answer
    assert 'version="mounted-volume-1"' in model_info(http("GET", mounted.url() + "/metrics").body)
