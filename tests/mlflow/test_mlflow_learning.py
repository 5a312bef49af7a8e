"""A promoted challenger in MLflow (`mlflow_server` in tests/conftest.py):
a server learning in place with `learning.register` logs the promoted
challenger as a run, as `retrain` logs its candidate (params, metrics, the
artifact byte-identical to the file now served, the run id sealed into it),
tagged with what was learned and forgotten, and registers it as a new model
version; a promotion the gate refuses leaves a FAILED run and registers
nothing; a server on `models:/NAME@champion` registers the challenger as the
next version and moves the alias, and serves it.
"""

from __future__ import annotations

import csv
import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, note_logs_on_failure, start_mlflow, start_server

SAMPLE = ROOT / "tests" / "data" / "sample.csv"
ADMIN = "admin-token-for-learning"
FILE_NAME = "spam-learned"
ALIAS_NAME = "spam-learned-alias"


def mlflow_call(url: str, path: str, body=None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=data,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def versions(url: str, name: str) -> list[dict]:
    query = urllib.parse.urlencode({"filter": f"name='{name}'"})
    found = mlflow_call(url, f"model-versions/search?{query}").get("model_versions", [])
    return sorted(found, key=lambda v: int(v["version"]))


def run_of(url: str, run_id: str) -> dict:
    return mlflow_call(url, f"runs/get?run_id={run_id}")["run"]


def tags_of(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def download(url: str, artifact_uri: str, path: str) -> bytes:
    proxied = artifact_uri.removeprefix("mlflow-artifacts:/")
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow-artifacts/artifacts/{proxied}/{path}",
                                timeout=30) as r:
        return r.read()


@pytest.fixture(scope="module")
def mlflow_server(mlflow_bin: Path, tmp_path_factory, request):
    """An MLflow server of this module's own: the session's shared one is
    stopped on purpose by test_mlflow.py (MLflow down), which runs first."""
    daemon = start_mlflow(mlflow_bin, tmp_path_factory.mktemp("mlflow-learning"))
    yield daemon
    daemon.stop()
    note_logs_on_failure(request, {"mlflow.log": daemon.log_path})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """sample.csv split, row by row in turn, into a training part (55 %),
    examples to learn (20 %) and a holdout (25 %)."""
    rows = list(csv.DictReader(SAMPLE.open(newline="", encoding="utf-8")))
    tmp = tmp_path_factory.mktemp("learning-corpus")

    def write(name: str, part: list[dict]) -> Path:
        path = tmp / name
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["text", "label"])
            w.writeheader()
            w.writerows(part)
        return path

    part = [[], [], []]
    for i, row in enumerate(rows):
        part[0 if i % 20 < 11 else 1 if i % 20 < 15 else 2].append(row)
    return {
        "train": write("train.csv", part[0]),
        "learn": part[1],
        "holdout": write("holdout.csv", part[2]),
    }


def nbserve(bin: Path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([str(bin), *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def train(bin: Path, corpus: dict, out: Path, *extra) -> None:
    done = nbserve(bin, "train", "--data", corpus["train"], "--test-data", corpus["holdout"],
                   "--statistics", "--alpha", "0.1", "--name", "spam", "--model-version", "1",
                   "--out", out, *extra)
    assert done.returncode == 0, done.stderr


def settings(mlflow_url: str, corpus: dict, **more) -> dict:
    return {
        "LEARNING__ENABLED": "true",
        "MODEL__MLFLOW_URI": mlflow_url,
        "GATE__HOLDOUT_PATH": str(corpus["holdout"]),
        "GATE__MIN_F1_MACRO": "0.5",
        "ADMIN__TOKEN": ADMIN,
        # A promotion logs, uploads and registers through MLflow: a debug
        # build on a busy machine can take longer than the default 10 s.
        "SERVER__REQUEST_TIMEOUT_MS": "120000",
        **more,
    }


def learn(server, rows: list[dict]) -> None:
    answer = server.post_json("/learn", {"examples": [{"text": r["text"], "label": r["label"]}
                                                      for r in rows]})
    assert answer.status == 200, answer.body


def promote(server, max_regression: float = 1.0):
    return server.post_json("/admin/challenger/promote", {"max_regression": max_regression},
                            headers={"authorization": f"Bearer {ADMIN}"})


@pytest.fixture(scope="module")
def file_server(nbserve_bin, mlflow_server, corpus, tmp_path_factory, request):
    work = tmp_path_factory.mktemp("learning-file")
    model = work / "models" / "spam-nb.json"
    model.parent.mkdir()
    train(nbserve_bin, corpus, model)
    server = start_server(nbserve_bin, work, settings(mlflow_server.url, corpus,
                                                      LEARNING__REGISTER=FILE_NAME), model=model)
    yield {"server": server, "model": model}
    server.stop()
    note_logs_on_failure(request, {"server.log": server.log_path})


@pytest.fixture(scope="module")
def promoted(file_server, corpus, mlflow_server):
    server = file_server["server"]
    learn(server, corpus["learn"])
    forgotten = corpus["learn"][:3]
    answer = server.post_json("/forget", {"examples": [{"text": r["text"], "label": r["label"]}
                                                       for r in forgotten]})
    assert answer.status == 200, answer.body
    answer = promote(server)
    assert answer.status == 200, answer.body
    return answer.json()


def test_the_promotion_answers_the_registered_version(promoted):
    assert promoted["registered"] == {"name": FILE_NAME, "version": "1", "alias": None}, promoted


def test_the_registered_version_comes_from_a_finished_run_tagged_learning_in_place(
        promoted, file_server, corpus, mlflow_server):
    [version] = versions(mlflow_server.url, FILE_NAME)
    run = run_of(mlflow_server.url, version["run_id"])
    assert run["info"]["status"] == "FINISHED"
    tags = tags_of(run)
    assert tags["nbserve.origin"] == "learning_in_place"
    assert tags["nbserve.learning.learned"] == str(len(corpus["learn"]))
    assert tags["nbserve.learning.forgotten"] == "3"
    assert tags["nbserve.learning.champion_version"] == "1"
    assert tags["nbserve.model_version"] == promoted["version"]
    assert tags["nbserve.checksum"] == promoted["checksum"]
    # Logged as retrain logs its candidate: the same params and metrics.
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["alpha"] == "0.1", params
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["f1_macro"] == pytest.approx(promoted["f1_macro"], abs=1e-12)


def test_the_served_file_is_the_registered_artifact_and_names_its_run(
        promoted, file_server, mlflow_server):
    served = file_server["model"].read_bytes()
    [version] = versions(mlflow_server.url, FILE_NAME)
    run = run_of(mlflow_server.url, version["run_id"])
    logged = download(mlflow_server.url, run["info"]["artifact_uri"], "model/model.json")
    assert logged == served
    assert json.loads(served)["mlflow_run_id"] == version["run_id"]
    model = file_server["server"].get("/model").json()
    assert model["mlflow_run_id"] == version["run_id"], model


def test_a_promotion_the_gate_refuses_leaves_a_failed_run_and_registers_nothing(
        promoted, file_server, corpus, mlflow_server):
    server = file_server["server"]
    # The holdout's rows under the other label: the challenger gets worse.
    holdout = csv.DictReader(corpus["holdout"].open(newline="", encoding="utf-8"))
    flipped = [{"text": r["text"], "label": "ham" if r["label"] == "spam" else "spam"}
               for r in holdout]
    learn(server, flipped)
    answer = promote(server, max_regression=0.0)
    assert answer.status in (409, 422), answer.body
    assert len(versions(mlflow_server.url, FILE_NAME)) == 1
    experiment = mlflow_call(mlflow_server.url, "experiments/get-by-name?experiment_name=nbserve")
    found = mlflow_call(mlflow_server.url, "runs/search", {
        "experiment_ids": [experiment["experiment"]["experiment_id"]],
        "filter": "attributes.status = 'FAILED' and tags.`mlflow.source.name` LIKE '%challenger%'",
    }).get("runs", [])
    assert len(found) == 1, found
    assert answer.json()["error"]["code"] in tags_of(found[0])["nbserve.error"]


def test_a_server_on_a_registry_alias_registers_the_next_version_and_moves_the_alias(
        nbserve_bin, mlflow_server, corpus, tmp_path_factory, request):
    work = tmp_path_factory.mktemp("learning-alias")
    out = work / "v1.json"
    train(nbserve_bin, corpus, out, "--mlflow-uri", mlflow_server.url, "--register", ALIAS_NAME)
    mlflow_call(mlflow_server.url, "registered-models/alias",
                {"name": ALIAS_NAME, "alias": "champion", "version": "1"})
    (work / "models").mkdir()
    server = start_server(nbserve_bin, work, settings(mlflow_server.url, corpus),
                          model=f"models:/{ALIAS_NAME}@champion",
                          args=())
    try:
        learn(server, corpus["learn"])
        answer = promote(server)
        assert answer.status == 200, answer.body
        assert answer.json()["registered"] == {"name": ALIAS_NAME, "version": "2",
                                               "alias": "champion"}
        assert answer.json()["kept_file"] is None
        alias = mlflow_call(mlflow_server.url,
                            f"registered-models/alias?name={ALIAS_NAME}&alias=champion")
        assert alias["model_version"]["version"] == "2"
        model = server.get("/model").json()
        assert model["registry_version"] == "2", model
        assert model["version"] == answer.json()["version"]
    finally:
        server.stop()
        note_logs_on_failure(request, {"server.log": server.log_path})
