"""A model a replica cannot serve is refused, wherever it comes from: one too
large for its memory, or one whose probabilities would not be numbers.

Loading an artifact takes several times its file size (the parsed terms and
counts beside the vocabulary and scoring tables), and a reload holds the old
model while the new one loads. The server estimates that memory from the
artifact's bytes before parsing them, and refuses a model over
`gate.max_memory_bytes` at start-up, on reload and on poll, while the model
in service keeps serving. The default budget is sized so that a replica at
the Deployment's memory limit survives a reload of the largest model it
admits.

A calibration temperature of 5e-324 once passed every check and then served
`null` probabilities and NaN confidence metrics; temperatures now have one
range, and a load scores sample documents and refuses non-finite results.

The artifacts are the shipped model with its vocabulary replaced by synthetic
terms, or one value edited, re-sealed (`bench/model_memory.py`, which also
measures the memory factor for a range of sizes).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from model_memory import edit_shipped, synth_artifact  # noqa: E402

MIB = 1024 * 1024
TOKEN = "model-limits-admin-token"
# A million 6-letter terms: a 12.4 MiB file (under model.max_bytes) whose
# load needs about 112 MiB, over the default 64 MiB budget.
OVER_BUDGET_TERMS = 1_000_000
# The largest round size the default budget admits (about 56 MiB to load).
WITHIN_BUDGET_TERMS = 500_000


def deployment_memory_limit() -> int:
    """The memory limit of the `nbserve` container (not an init container)
    in the base Deployment."""
    text = (ROOT / "deploy" / "kubernetes" / "base" / "deployment.yaml").read_text()
    serving = text[text.index("\n      containers:\n") :]
    serving = serving[serving.index("- name: nbserve\n") :]
    found = re.search(r"limits:\s*\n(?:\s+cpu:.*\n)?\s+memory:\s*(\d+)Mi", serving)
    assert found, "no memory limit for the nbserve container in deployment.yaml"
    return int(found.group(1)) * MIB


def write_model(models: Path, name: str, n_terms: int, version: str) -> Path:
    path = models / name
    tmp = models / f".{name}.tmp"
    tmp.write_bytes(synth_artifact(n_terms, version=version))
    os.replace(tmp, path)
    return path


def run_serve(binary: Path, model: Path) -> subprocess.CompletedProcess:
    """`serve` on `model` with default settings, expected to exit."""
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    env.update(
        NBSERVE__SERVER__HOST="127.0.0.1",
        NBSERVE__SERVER__PORT="0",
        NBSERVE__MODEL__PATH=str(model),
        NBSERVE__MODEL__DIR=str(model.parent),
    )
    return subprocess.run(
        [str(binary), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
    )


def reload(server, body: bytes = b""):
    return server.request(
        "POST", "/admin/reload", body, {"authorization": f"Bearer {TOKEN}"}, timeout=120
    )


def test_start_refuses_a_model_over_the_memory_budget(release_bin, models_dir):
    model = write_model(models_dir, "big.json", OVER_BUDGET_TERMS, "big-1")
    size = model.stat().st_size
    proc = run_serve(release_bin, model)
    err = proc.stderr.decode(errors="replace")
    print(f"\n{OVER_BUDGET_TERMS:,}-term artifact ({size / MIB:.1f} MiB): {err.strip()}")
    assert proc.returncode == 4, err
    assert re.search(
        r"the model \(1000000 terms, 2 classes\) needs an estimated \d+ bytes of memory to load, "
        r"over gate\.max_memory_bytes \(67108864 bytes\)",
        err,
    ), err


def test_a_reload_or_poll_of_a_model_over_the_budget_is_refused(serve, release_bin, models_dir):
    server = serve(
        release_bin,
        {"ADMIN__TOKEN": TOKEN, "MODEL__POLL_INTERVAL_SECS": "1"},
    )
    before = server.get("/model").json()["version"]
    # The poll sees the file change and reloads it through the same check.
    write_model(models_dir, "spam-nb.json", OVER_BUDGET_TERMS, "big-1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "over gate.max_memory_bytes" in server.log_text():
            break
        time.sleep(0.2)
    assert "over gate.max_memory_bytes" in server.log_text(), server.log_text()[-3000:]
    refused = [
        line
        for line in server.log_lines()
        if "over gate.max_memory_bytes" in str(line.get("error", ""))
    ]
    assert refused and refused[0]["level"] == "WARN", refused
    # An explicit reload is refused too, with the reason and no file content.
    r = reload(server)
    assert r.status == 422, r
    error = r.json()["error"]
    assert error["code"] == "invalid_model", error
    assert "needs an estimated" in error["message"], error
    assert "over gate.max_memory_bytes (67108864 bytes)" in error["message"], error
    # The old model keeps serving.
    assert server.get("/model").json()["version"] == before
    p = server.post_json("/predict", {"text": "win free money now"})
    assert p.status == 200 and p.json()["model_version"] == before, p
    print(f"\nreload and poll refused, peak RSS {server.peak_rss_kib() / 1024:.1f} MiB")


def test_a_model_within_the_budget_loads_and_reloads_under_the_pod_limit(
    serve, release_bin, models_dir
):
    model = write_model(models_dir, "spam-nb.json", WITHIN_BUDGET_TERMS, "mid-1")
    size = model.stat().st_size
    server = serve(release_bin, {"ADMIN__TOKEN": TOKEN})
    start_peak = server.peak_rss_kib() * 1024
    assert server.get("/model").json()["version"] == "mid-1"
    write_model(models_dir, "spam-nb.json", WITHIN_BUDGET_TERMS, "mid-2")
    r = reload(server)
    assert r.status == 200, r
    reload_peak = server.peak_rss_kib() * 1024
    assert server.get("/model").json()["version"] == "mid-2"
    limit = deployment_memory_limit()
    print(
        f"\n{WITHIN_BUDGET_TERMS:,}-term artifact ({size / MIB:.1f} MiB): start peak "
        f"{start_peak / MIB:.1f} MiB ({start_peak / size:.1f}x the file), reload peak "
        f"{reload_peak / MIB:.1f} MiB ({reload_peak / size:.1f}x); pod limit {limit / MIB:.0f} MiB"
    )
    # The reload of the largest admitted model leaves the Deployment's limit
    # room for serving (the /predict/batch peak is about 115 MB).
    assert reload_peak + 100 * MIB < limit, f"reload peak {reload_peak / MIB:.1f} MiB"


def test_a_vanishing_temperature_is_refused_at_start_and_on_reload(serve, release_bin, models_dir):
    shipped = (models_dir / "spam-nb.json").read_text()
    temperature = re.search(r'"temperature":([0-9.e+-]+)', shipped).group(1)
    hot = models_dir / "hot.json"
    hot.write_bytes(
        edit_shipped(f'"temperature":{temperature},', '"temperature":5e-324,')
    )
    proc = run_serve(release_bin, hot)
    err = proc.stderr.decode(errors="replace")
    print(f"\nstart on a 5e-324 temperature: exit {proc.returncode}: {err.strip()}")
    assert proc.returncode == 4, err
    assert "temperature 5e-324: must be a finite number in [1e-2, 1e6]" in err, err

    server = serve(release_bin, {"ADMIN__TOKEN": TOKEN})
    r = reload(server, b'{"path": "hot.json"}')
    assert r.status == 422, r
    error = r.json()["error"]
    assert error["code"] == "invalid_model" and "temperature 5e-324" in error["message"], error
    # The model in service answers numbers on both protocols, and the
    # confidence metrics stay numbers.
    p = server.post_json("/predict", {"text": "win free money now"})
    assert p.status == 200, p
    assert all(isinstance(v, float) for v in p.json()["probabilities"].values()), p
    v2 = server.post_json(
        "/v2/models/spam-nb/infer",
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]},
    )
    assert v2.status == 200, v2
    probabilities = next(o for o in v2.json()["outputs"] if o["name"] == "probabilities")
    assert all(isinstance(v, float) for v in probabilities["data"]), probabilities
    metrics = server.get("/metrics").body.decode()
    confidence = [
        line
        for line in metrics.splitlines()
        if line.startswith(("nbserve_prediction_confidence_sum", "nbserve_live_mean_confidence"))
    ]
    assert confidence and not any("NaN" in line for line in confidence), confidence
