"""nbserve against a real MLflow tracking server and model registry
(`mlflow_server` in tests/conftest.py: SQLite backend store, local artifact
destination, a free loopback port).

The module is one story told in order, each step a module-scoped fixture the
tests read: train and tune with tracking (the runs read back through MLflow's
REST API equal the artifacts); register versions 1-3 and promote behind the
gate; two servers on `models:/NAME@champion` polling every POLL_SECS follow
`promote` under steady /predict traffic and refuse a below-gate version put
behind promote's back; `retrain` against the champion registers, moves the
alias or refuses; with MLflow stopped, commands fail cleanly and the server
keeps serving.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, Server, SteadyLoad, note_logs_on_failure, start_server

POLL_SECS = 2
NAME = "spam-test"
CHAMPION = f"models:/{NAME}@champion"
SAMPLE = ROOT / "tests" / "data" / "sample.csv"


# ----------------------------------------------------------------- helpers
class Mlflow:
    """MLflow's REST API (JSON in, JSON out)."""

    def __init__(self, url: str):
        self.url = url

    def call(self, path: str, body=None, method: str | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/api/2.0/{path}", data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def run(self, run_id: str) -> dict:
        return self.call(f"mlflow/runs/get?run_id={run_id}")["run"]

    def champion(self) -> str:
        alias = self.call(f"mlflow/registered-models/alias?name={NAME}&alias=champion")
        return alias["model_version"]["version"]

    def versions(self) -> list[int]:
        query = urllib.parse.urlencode({"filter": f"name='{NAME}'"})
        found = self.call(f"mlflow/model-versions/search?{query}")
        return sorted(int(v["version"]) for v in found["model_versions"])

    def download(self, artifact_uri: str, path: str) -> bytes | None:
        proxied = artifact_uri.removeprefix("mlflow-artifacts:/")
        try:
            with urllib.request.urlopen(f"{self.url}/api/2.0/mlflow-artifacts/artifacts/{proxied}/{path}",
                                        timeout=30) as r:
                return r.read()
        except urllib.error.URLError:
            return None


def by_key(items: list[dict]) -> dict:
    return {i["key"]: i["value"] for i in items}


def verdict_of(run: dict) -> tuple[str, str | None]:
    return run["info"]["status"], by_key(run["data"]["tags"]).get("nbserve.retrain.verdict")


def metric(server: Server, series: str) -> float | None:
    """The value of one exact series (`name{labels}`) on the server's /metrics."""
    text = server.get("/metrics").body.decode()
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m[1]) if m else None


def registry_version(server: Server) -> str | None:
    answer = server.get("/model")
    return answer.json().get("registry_version") if answer.status == 200 else None


def wait_until(seconds: float, probe) -> bool:
    """Polls `probe` every 0.2 s until it is true; False after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if probe():
                return True
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


class Done:
    """A finished command: exit code, output and the file it was told to write."""

    def __init__(self, proc: subprocess.CompletedProcess, out: Path | None = None):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.out = out

    def json(self) -> dict:
        return json.loads(self.out.read_text())

    def last_line(self) -> str:
        lines = (self.stderr or self.stdout).strip().splitlines()
        return lines[-1] if lines else ""


class Story:
    """What the steps share: the binary, a scratch folder, MLflow."""

    def __init__(self, bin: Path, tmp: Path, mlflow: Mlflow):
        self.bin = bin
        self.tmp = tmp
        self.mlflow = mlflow

    def nbserve(self, *args, out: Path | None = None, env: dict | None = None) -> Done:
        proc = subprocess.run([str(self.bin), *map(str, args)], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, **(env or {})})
        return Done(proc, out)

    def train(self, version: int, alpha: str) -> Done:
        out = self.tmp / f"v{version}.json"
        return self.nbserve("train", "--data", SAMPLE, "--out", out, "--name", NAME,
                            "--model-version", version, "--alpha", alpha, "--register", NAME,
                            "--git-commit", "0123abc", out=out)

    def promote(self, version: int) -> Done:
        return self.nbserve("promote", "--model-name", NAME, "--version", version, "--alias", "champion")

    def retrain(self, name: str, *extra: str) -> Done:
        report = self.tmp / f"{name}.json"
        return self.nbserve("retrain", "--data", self.tmp / "rt-train.csv", "--holdout", self.tmp / "rt-holdout.csv",
                            "--alpha", "0.1,1", "--min-df", "1", "--max-features", "0", "--folds", "3",
                            "--report", report, *extra, out=report,
                            env={"NBSERVE__MODEL__PATH": CHAMPION, "NBSERVE__MODEL__DIR": str(self.tmp / "rt-models")})


# ------------------------------------------------------------ the story
@pytest.fixture(scope="module")
def story(nbserve_bin, mlflow_server, tmp_path_factory):
    # The small sample data gives F1 macro ~0.83 (alpha 1, 0.1) and ~0.41
    # (alpha 50): a gate between them, independent of the shipped default.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        mp.setenv("MLFLOW_EXPERIMENT_NAME", "nbserve-test")
        mp.setenv("NBSERVE__GATE__MIN_F1_MACRO", "0.75")
        yield Story(nbserve_bin, tmp_path_factory.mktemp("story"), Mlflow(mlflow_server.url))


@pytest.fixture(scope="module")
def v1(story):
    done = story.train(1, "1.0")
    run_id = done.json().get("mlflow_run_id") if done.out.exists() else None
    return done, run_id, story.mlflow.run(run_id) if run_id else None


def test_train_v1_with_tracking_exits_0(v1):
    done, _, _ = v1
    assert done.rc == 0, done.stderr


def test_the_artifact_holds_the_run_id(v1):
    _, run_id, _ = v1
    assert run_id and len(run_id) == 32


def test_the_run_has_the_params_metrics_tags_of_the_artifact_and_finished(v1):
    done, _, run = v1
    art = done.json()
    params, metrics, tags = (by_key(run["data"][k]) for k in ("params", "metrics", "tags"))
    ev = art["evaluation"]
    want_metrics = {"f1_macro": ev["f1_macro"], "balanced_accuracy": ev["balanced_accuracy"],
                    "accuracy": ev["accuracy"]}
    for c in ev["per_class"]:
        for k in ("precision", "recall", "f1"):
            want_metrics[f"{k}.{c['label']}"] = c[k]
    want_params = {"alpha": "1", "seed": "42", "test_size": "0.2",
                   "dataset.sha256": art["dataset"]["sha256"],
                   "dataset.documents": str(art["dataset"]["documents"]),
                   "vectorizer.binary": "true", "vectorizer.lowercase": "true"}
    want_tags = {"mlflow.source.name": "nbserve train", "mlflow.source.git.commit": "0123abc",
                 "nbserve.model_name": art["model"]["name"],
                 "nbserve.model_version": art["model"]["version"]}
    problems = [f"metric {k}: {metrics.get(k)!r} != {v!r}" for k, v in want_metrics.items() if metrics.get(k) != v]
    problems += [f"param {k}: {params.get(k)!r} != {v!r}" for k, v in want_params.items() if params.get(k) != v]
    problems += [f"tag {k}: {tags.get(k)!r} != {v!r}" for k, v in want_tags.items() if tags.get(k) != v]
    if not metrics.get("training_seconds", -1) > 0:
        problems.append("metric training_seconds missing")
    problems += [f"param {k} missing" for k in ("nbserve_version", "dataset.bytes", "vectorizer.token_pattern")
                 if k not in params]
    if run["info"]["status"] != "FINISHED":
        problems.append("status " + run["info"]["status"])
    assert not problems


def test_the_runs_model_artifact_downloads_byte_identical(story, v1):
    done, _, run = v1
    assert story.mlflow.download(run["info"]["artifact_uri"], "model/model.json") == done.out.read_bytes()


def test_the_evaluation_table_is_a_run_artifact(story, v1):
    _, _, run = v1
    table = story.mlflow.download(run["info"]["artifact_uri"], "evaluation.txt")
    assert table is not None and b"F1 macro" in table


@pytest.fixture(scope="module")
def failed_train(story):
    data = story.tmp / "one-class.csv"
    data.write_text("text,label\nonly one class here,ham\nand another,ham\n")
    return story.nbserve("train", "--data", data, "--out", story.tmp / "bad.json")


def test_a_train_that_fails_after_its_run_began_exits_4(failed_train):
    assert failed_train.rc == 4, failed_train.stderr


def test_the_failed_trains_run_is_failed_with_its_error_as_a_tag(story, v1, failed_train):
    _, _, run = v1
    found = story.mlflow.call("mlflow/runs/search", {"experiment_ids": [run["info"]["experiment_id"]],
                                                     "filter": "attributes.status = 'FAILED'"})
    errors = [by_key(r["data"]["tags"]).get("nbserve.error") for r in found.get("runs", [])]
    assert errors == [failed_train.last_line().removeprefix("nbserve: ")]


@pytest.fixture(scope="module")
def tuned(story):
    out = story.tmp / "tuned.json"
    done = story.nbserve("tune", "--data", SAMPLE, "--out", out, "--name", f"{NAME}-tuned",
                         "--alpha", "0.1,1", "--min-df", "1,2", "--max-features", "0", "--folds", "3", out=out)
    run_id = done.json().get("mlflow_run_id") if out.exists() else None
    return done, story.mlflow.run(run_id) if run_id else None


def test_tune_2_alphas_by_2_min_dfs_3_folds_with_tracking_exits_0(tuned):
    done, _ = tuned
    assert done.rc == 0, done.stderr


def test_the_tune_run_holds_cv_mean_std_brier_ece_temperature_and_grid_of_the_artifact(tuned):
    done, run = tuned
    art = done.json()
    params, metrics, tags = (by_key(run["data"][k]) for k in ("params", "metrics", "tags"))
    tuning, ev = art["tuning"], art["evaluation"]
    best = tuning["results"][tuning["best"]]
    want = {"cv.f1_macro.mean": best["f1_macro"]["mean"], "cv.f1_macro.std": best["f1_macro"]["std"],
            "brier_score": ev["brier_score"], "ece": ev["ece"], "f1_macro": ev["f1_macro"]}
    problems = [f"metric {k}: {metrics.get(k)!r} != {v!r}" for k, v in want.items() if metrics.get(k) != v]
    if params.get("tune.folds") != "3":
        problems.append(f"tune.folds {params.get('tune.folds')!r}")
    if params.get("tune.grid_points") != str(len(tuning["results"])):
        problems.append(f"tune.grid_points {params.get('tune.grid_points')!r}")
    if float(params.get("calibration.temperature", "nan")) != art["calibration"]["temperature"]:
        problems.append("calibration.temperature")
    problems += [f"param {k} missing" for k in
                 ("vectorizer.min_df", "vectorizer.max_df", "vectorizer.max_features", "model", "tune.grid")
                 if k not in params]
    if tags.get("mlflow.source.name") != "nbserve tune":
        problems.append("mlflow.source.name")
    if run["info"]["status"] != "FINISHED":
        problems.append("status " + run["info"]["status"])
    assert not problems


# ---------------------------------------------- register; promote behind the gate
@pytest.fixture(scope="module")
def registered(story, v1):
    return {2: story.train(2, "0.1"), 3: story.train(3, "50")}


def test_train_v2_alpha_0_1_registers(registered):
    assert registered[2].rc == 0, registered[2].stderr


def test_train_v3_alpha_50_below_the_gate_registers(registered):
    assert registered[3].rc == 0, registered[3].stderr


def test_the_registry_has_versions_1_to_3_from_their_runs(story, registered):
    for v in (1, 2, 3):
        run_id = json.loads((story.tmp / f"v{v}.json").read_text())["mlflow_run_id"]
        got = story.mlflow.call(f"mlflow/model-versions/get?name={NAME}&version={v}")
        assert got["model_version"]["run_id"] == run_id, v


@pytest.fixture(scope="module")
def promoted_v1(story, registered):
    return story.promote(1), story.promote(3)


def test_promote_v1_to_champion(promoted_v1):
    assert promoted_v1[0].rc == 0, promoted_v1[0].stderr


def test_promote_of_the_below_gate_v3_exits_5(promoted_v1):
    assert promoted_v1[1].rc == 5, promoted_v1[1].stderr


def test_champion_still_points_at_v1(story, promoted_v1):
    assert story.mlflow.champion() == "1"


# ------------------------------- two servers on the champion, polling every POLL_SECS
@pytest.fixture(scope="module")
def servers(story, promoted_v1, request):
    """The server under traffic and an idle replica that gets no request
    while the champion moves."""
    started = []
    for name in ("serve", "replica"):
        (story.tmp / name / "models").mkdir(parents=True)
        started.append(start_server(story.bin, story.tmp / name, {
            "MODEL__POLL_INTERVAL_SECS": POLL_SECS, "GATE__MIN_F1_MACRO": 0.8,
            "MODEL__DIR": story.tmp / name / "models"}, model=CHAMPION))
    yield started
    for s in started:
        s.stop()
    note_logs_on_failure(request, {"serve.log": started[0].log_path, "replica.log": started[1].log_path})
    for s in started:
        assert "panicked" not in s.log_text(), s.log_text()[-4000:]


def test_model_shows_registry_version_1_and_the_run_id(servers, v1):
    model = servers[0].get("/model").json()
    assert (model["registry_version"], model["mlflow_run_id"]) == ("1", v1[1])


def test_nbserve_model_info_carries_source_version_and_source_run_id(servers, v1):
    text = servers[0].get("/metrics").body.decode()
    assert re.search(rf'nbserve_model_info{{.*source_run_id="{v1[1]}",source_version="1"', text)


def test_the_start_up_log_line_names_registry_version_and_run_id(servers, v1):
    assert f'"registry_version":"1","run_id":"{v1[1]}"' in servers[0].log_text()


@pytest.fixture(scope="module")
def traffic(story, servers):
    """Steady /predict traffic on the server (4 keep-alive clients) from
    before the champion moves until after the refused version (`traffic_seen`)."""
    # One short text: each answer takes about a millisecond, so a client
    # whose answer came from v1 almost never reports it after another client
    # already saw v2 (long texts widen that window and make the check flaky).
    texts = story.tmp / "traffic.csv"
    texts.write_text("text\nwin a free prize now, click here\n")
    load = SteadyLoad(servers[0].url, texts, story.tmp, threads=4)
    time.sleep(1)
    yield load
    load.finish()


@pytest.fixture(scope="module")
def moved_to_v2(story, servers, traffic, figures):
    """Seconds each server took to serve v2 after `promote` (None: not in 10 s)."""
    done = story.promote(2)
    assert done.rc == 0, done.stderr
    moved = time.monotonic()
    took = []
    for server, what in zip(servers, ("the server under traffic", "the idle replica")):
        ok = wait_until(10, lambda: registry_version(server) == "2")
        took.append(round(time.monotonic() - moved, 2) if ok else None)
        figures(f"{what} switched to v2 after (s)", took[-1])
    return took


# Two poll intervals, plus 2 s for a loaded 2-core CI machine (the idle replica
# is measured after the busy server, so its figure includes that wait).
SWITCH_LIMIT = 2 * POLL_SECS + 2


def test_the_server_under_traffic_switches_to_v2_within_two_intervals(moved_to_v2):
    assert moved_to_v2[0] is not None and moved_to_v2[0] <= SWITCH_LIMIT, moved_to_v2


def test_the_idle_replica_switches_to_v2_within_two_intervals(moved_to_v2):
    assert moved_to_v2[1] is not None and moved_to_v2[1] <= SWITCH_LIMIT, moved_to_v2


# The server names a registry model by its registered name.
REFUSED = f'nbserve_model_polls_total{{model="{NAME}",result="refused"}}'


@pytest.fixture(scope="module")
def v3_behind_promotes_back(story, servers, moved_to_v2):
    """Points the alias at the below-gate v3 through the REST API; returns
    whether a refused poll was counted within 10 s, after two more intervals."""
    story.mlflow.call("mlflow/registered-models/alias", {"name": NAME, "alias": "champion", "version": "3"})
    refused = wait_until(10, lambda: (metric(servers[0], REFUSED) or 0) >= 1)
    time.sleep(2 * POLL_SECS)
    return refused


def test_the_poll_refuses_v3_put_behind_promotes_back(v3_behind_promotes_back):
    assert v3_behind_promotes_back


def test_v3_is_refused_once_and_not_retried_while_the_alias_stays(servers, v3_behind_promotes_back):
    assert metric(servers[0], REFUSED) == 1


def test_the_refusal_is_logged_with_the_gates_reason(servers, v3_behind_promotes_back):
    assert re.search(r"reload rejected.*below the gate", servers[0].log_text())


def test_v2_keeps_serving(servers, v3_behind_promotes_back):
    assert registry_version(servers[0]) == "2"


def test_the_idle_replica_refused_v3_too_and_serves_v2(servers, v3_behind_promotes_back):
    assert (registry_version(servers[1]), metric(servers[1], REFUSED)) == ("2", 1)


@pytest.fixture(scope="module")
def traffic_seen(servers, traffic, v3_behind_promotes_back, figures):
    """Stops the traffic (and the idle replica) and reads what the clients saw."""
    servers[1].stop()
    seen = traffic.finish()
    versions = [v for v, _, _ in seen["versions"]]
    figures("traffic during the champion moves",
            f"{seen['requests']} requests, {seen['failures']} failed, {seen['rps']}/s, versions {versions}")
    return seen, versions


def test_traffic_has_no_failed_request_and_sees_v1_then_v2(traffic_seen):
    seen, versions = traffic_seen
    assert (seen["failures"], seen["requests"] > 0, versions) == (0, True, ["1", "2"]), seen["errors"]


# ---------------------------------------- retrain against the champion
@pytest.fixture(scope="module")
def retrained(story, traffic_seen):
    done = story.nbserve("split", "--data", SAMPLE, "--train-out", story.tmp / "rt-train.csv",
                         "--test-out", story.tmp / "rt-holdout.csv", "--test-size", "0.3", "--seed", "7")
    assert done.rc == 0, done.stderr
    return story.retrain("rt1")


def test_retrain_over_the_below_gate_champion_v3_exits_0(retrained):
    assert retrained.rc == 0, retrained.stderr


def test_the_retrain_report_names_registry_v3_and_registers_v4_as_champion(retrained):
    report = retrained.json()
    assert (report["verdict"], report["current"]["registry_version"], report["promoted"]["registered"]) == (
        "promoted", "3", {"name": NAME, "version": "4", "alias": "champion"})


def test_champion_points_at_v4_after_the_retrain(story, retrained):
    assert story.mlflow.champion() == "4"


def test_the_server_switches_to_registry_version_4(servers, retrained):
    assert wait_until(3 * POLL_SECS, lambda: registry_version(servers[0]) == "4")


def test_the_retrain_run_is_finished_with_verdict_both_holdout_f1s_and_the_delta(story, retrained):
    run = story.mlflow.run(retrained.json()["mlflow_run_id"])
    keys = sorted(m["key"] for m in run["data"]["metrics"] if m["key"].startswith(("holdout.", "gate.")))
    assert (verdict_of(run), keys) == (("FINISHED", "promoted"), [
        "gate.no_regression.delta", "holdout.candidate.f1_macro", "holdout.current.f1_macro"])


@pytest.fixture(scope="module")
def rejected(story, retrained):
    return story.retrain("rt2", "--min-f1-macro", "0.99")


def test_a_retrain_below_min_f1_macro_0_99_exits_5(rejected):
    assert rejected.rc == 5, rejected.stderr


def test_the_rejected_retrain_registers_nothing_and_leaves_champion_on_v4(story, rejected):
    assert (story.mlflow.versions(), story.mlflow.champion()) == ([1, 2, 3, 4], "4")


def test_the_rejected_retrains_run_is_logged_failed_with_verdict_rejected(story, rejected):
    assert verdict_of(story.mlflow.run(rejected.json()["mlflow_run_id"])) == ("FAILED", "rejected")


@pytest.fixture(scope="module")
def again(story, rejected):
    return story.retrain("rt3")


def test_the_same_retrain_again_exits_0(again):
    assert again.rc == 0, again.stderr


def test_the_same_retrain_again_is_unchanged_as_v4_predicts_exactly_as_the_candidate(again):
    report = again.json()
    assert (report["verdict"], report["current"]["registry_version"], report["promoted"]) == ("unchanged", "4", None)


def test_the_unchanged_retrain_registers_nothing_and_leaves_champion_on_v4(story, again):
    assert (story.mlflow.versions(), story.mlflow.champion()) == ([1, 2, 3, 4], "4")


def test_the_unchanged_retrains_run_is_logged_finished_with_verdict_unchanged(story, again):
    assert verdict_of(story.mlflow.run(again.json()["mlflow_run_id"])) == ("FINISHED", "unchanged")


# ------------------------------------------------------------ MLflow stopped
@pytest.fixture(scope="module")
def mlflow_down(story, mlflow_server, servers, again):
    mlflow_server.stop()
    out = story.tmp / "v4.json"
    return story.nbserve("train", "--data", SAMPLE, "--out", out, out=out,
                         env={"MLFLOW_TRACKING_USERNAME": "nbserve",
                              "MLFLOW_TRACKING_PASSWORD": "s3cret-do-not-print"})


def test_train_with_mlflow_down_exits_1(mlflow_down):
    assert mlflow_down.rc == 1, mlflow_down.stderr


def test_train_with_mlflow_down_says_so_in_one_line(mlflow_down):
    assert len(mlflow_down.stderr.splitlines()) == 1, mlflow_down.stderr


def test_train_with_mlflow_down_prints_no_secret(mlflow_down):
    assert "s3cret" not in mlflow_down.stderr


def test_train_with_mlflow_down_leaves_no_artifact_file(mlflow_down):
    assert not mlflow_down.out.exists()


def test_the_server_keeps_serving_predictions_with_mlflow_down(servers, mlflow_down):
    for _ in range(5):
        assert servers[0].post_json("/predict", {"text": "hello"}).status == 200


def test_failed_polls_are_counted(servers, mlflow_down):
    assert wait_until(15, lambda: (metric(servers[0], f'nbserve_model_polls_total{{model="{NAME}",result="error"}}') or 0) >= 1)


def test_the_model_stays_v4_put_there_by_retrain(servers, mlflow_down):
    assert registry_version(servers[0]) == "4"


def test_a_server_starting_on_the_unreachable_registry_exits_4(story, mlflow_down):
    env = {**os.environ, "NBSERVE__SERVER__PORT": "0", "NBSERVE__MODEL__PATH": CHAMPION}
    done = subprocess.run([str(story.bin), "serve"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 4, done.stderr[-2000:]
