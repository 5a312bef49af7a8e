"""orchestration/prefect/flow.py retraining one model of a many-model server
(`served_model`, `flow.py run --served-model`), with the real prefect package
(local ephemeral API) and the real `nbserve retrain --served-model`:

- the repository holds spam-nb (the default, model.path) and spam-cnb; a run
  for spam-cnb promotes into spam-cnb.json and its own store
  (models/stores/spam-cnb/versions), and leaves every file of spam-nb
  byte-identical;
- an unknown model name fails the flow run naming the models, nothing
  changed;
- `flow.py run --served-model` passes the name on.

Data: tests/retrain/make_data.py, as test_prefect_flow.py.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import ephemeral  # noqa: F401  (before prefect is imported)
import flow as nbflow
import pytest

ROOT = Path(__file__).resolve().parents[2]
GRID = ["--alpha", "0.1,1", "--min-df", "1,2", "--max-features", "0", "--folds", "3"]


def tree(models: Path) -> dict[str, str]:
    return {str(p.relative_to(models)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(models.rglob("*")) if p.is_file() and p.name != ".nbserve.lock"}


def of_cnb(name: str) -> bool:
    return name == "spam-cnb.json" or name.startswith("stores/spam-cnb/")


@pytest.fixture(scope="module")
def repo(nbserve_bin, tmp_path_factory):
    path = tmp_path_factory.mktemp("prefect-models")
    subprocess.run([sys.executable, str(ROOT / "tests" / "retrain" / "make_data.py"), str(path)], check=True)
    models = path / "models"
    models.mkdir()
    (path / "settings.toml").write_text(
        f'[model]\npath = "{models}/spam-nb.json"\ndir = "{models}"\nrepository = "{models}"\n'
        '[gate]\nmin_f1_macro = 0.6\n')
    for name in ("spam-nb", "spam-cnb"):
        subprocess.run([str(nbserve_bin), "tune", "--data", str(path / "base.csv"), "--test-data",
                        str(path / "holdout.csv"), "--out", str(models / f"{name}.json"), "--name", name,
                        "--model-version", "v1", *GRID], check=True, stdout=subprocess.DEVNULL)
    return path


def params(repo: Path, nbserve_bin: Path, report_dir: str, served_model: str) -> dict:
    return {
        "data": [str(repo / "base.csv")], "holdout": str(repo / "holdout.csv"),
        "feedback_logs": [str(repo / "feedback-good.jsonl")], "config": str(repo / "settings.toml"),
        "nbserve": str(nbserve_bin), "report_dir": str(repo / report_dir),
        "extra_args": [*GRID, "--model-version", "v2"], "served_model": served_model,
    }


@pytest.fixture(scope="module")
def cnb_run(repo, nbserve_bin):
    before = tree(repo / "models")
    state = nbflow.retrain_flow(**params(repo, nbserve_bin, "run-cnb", "spam-cnb"), return_state=True)
    report = json.loads((repo / "run-cnb" / "retrain-report.json").read_text())
    return state, report, before, tree(repo / "models")


def test_a_run_for_one_model_promotes_that_model(repo, cnb_run):
    state, report, before, after = cnb_run
    assert state.is_completed(), (state.type.value, state.message)
    assert report["verdict"] == "promoted", report["reason"]
    assert report["current"]["name"] == "spam-cnb"
    assert after["spam-cnb.json"] != before["spam-cnb.json"]
    assert json.loads((repo / "models" / "spam-cnb.json").read_text())["model"]["version"] == "v2"
    assert "stores/spam-cnb/versions/history.json" in after


def test_a_run_for_one_model_leaves_the_other_byte_identical(cnb_run):
    _, _, before, after = cnb_run
    assert {k: v for k, v in after.items() if not of_cnb(k)} == {k: v for k, v in before.items() if not of_cnb(k)}
    assert not any(k.startswith("versions/") for k in after)


def test_an_unknown_model_fails_the_run_naming_the_models(repo, nbserve_bin, cnb_run):
    before = tree(repo / "models")
    state = nbflow.retrain_flow(**params(repo, nbserve_bin, "run-nope", "nope"), return_state=True)
    assert state.is_failed(), (state.type.value, state.message)
    with pytest.raises(nbflow.RetrainError) as err:
        state.result()
    assert "exited 2" in str(err.value), err.value
    assert "no model \"nope\"" in str(err.value) and "spam-cnb, spam-nb" in str(err.value), err.value
    assert tree(repo / "models") == before


def test_flow_py_run_passes_the_served_model_on(repo, nbserve_bin, cnb_run):
    before = tree(repo / "models")
    env = {**os.environ, "NBSERVE_BIN": str(nbserve_bin)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "orchestration" / "prefect" / "flow.py"), "run", "--served-model", "nope",
         "--data", str(repo / "base.csv"), "--holdout", str(repo / "holdout.csv"),
         "--config", str(repo / "settings.toml"), "--report-dir", str(repo / "run-cli"), "--", *GRID],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "--served-model" in done.stdout + done.stderr and "no model" in done.stdout + done.stderr, \
        done.stdout[-2000:] + done.stderr[-2000:]
    assert tree(repo / "models") == before
