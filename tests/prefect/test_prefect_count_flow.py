"""orchestration/prefect/count_flow.py on a Dask LocalCluster of 2 worker
processes (prefect-dask's DaskTaskRunner), with the real prefect package and
the real `nbserve count` / `merge`:

- shards of tests/data/sample.csv's training part (one a URL, one with no
  rows, one holding a class of its own), counted on the workers and merged
  as a tree of fan-in 2 (three levels): the model's sha256 is the sha256 of
  `nbserve train` on the shards;
- the tasks passed file paths: every level's counts are files in the work
  directory, and the API recorded one count task run per shard, from the
  worker processes;
- a shard with a bad row fails the flow run with the shard's name and the
  line; no model is written.
"""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import ephemeral  # noqa: F401  (before prefect is imported)
import count_flow
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

ROOT = Path(__file__).resolve().parents[2]
EPOCH = "1700000000"
TRAIN_FLAGS = ["--name", "spam-x", "--model-version", "3", "--model", "complement", "--alpha", "0.3",
               "--min-df", "2"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def corpus(nbserve_bin, tmp_path_factory):
    """The training part cut in 5 shards, plus an empty one and one with a
    label of its own; the test part."""
    d = tmp_path_factory.mktemp("count-flow")
    subprocess.run([str(nbserve_bin), "split", "--data", str(ROOT / "tests" / "data" / "sample.csv"), "--seed",
                    "3", "--train-out", str(d / "train.csv"), "--test-out", str(d / "test.csv")],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, str(ROOT / "bench" / "shard_csv.py"), "--data", str(d / "train.csv"),
                    "--shards", "5", "--out-dir", str(d / "shards")], check=True, stdout=subprocess.DEVNULL)
    (d / "shards" / "empty.csv").write_text("text,label\n")
    (d / "shards" / "eggs.csv").write_text("text,label\nspam and eggs for breakfast,eggs\ngreen eggs,eggs\n")
    return d


def run(corpus: Path, nbserve: Path, shards: list[str], name: str):
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    t0 = time.monotonic()
    state = count_flow.run({
        "shards": shards, "work_dir": str(corpus / name), "out": str(corpus / f"{name}.json"),
        "test_data": str(corpus / "test.csv"), "nbserve": str(nbserve), "fan_in": 2, "merge_args": TRAIN_FLAGS,
    }, workers=2)
    return state, round(time.monotonic() - t0, 1)


@pytest.fixture(scope="module")
def flow_run(corpus, nbserve_bin, figures):
    shards = sorted(str(p) for p in (corpus / "shards").glob("shard-*.csv"))
    # One shard as a URL, as an object store would hand it over.
    shards[1] = (corpus / "shards" / "shard-001.csv").as_uri()
    state, secs = run(corpus, nbserve_bin, [*shards, str(corpus / "shards" / "empty.csv"),
                                            str(corpus / "shards" / "eggs.csv")], "ok")
    figures("count flow run s (7 shards, 2 Dask workers)", secs)
    return state


@pytest.fixture(scope="module")
def trained(corpus, nbserve_bin):
    out = corpus / "trained.json"
    files = sorted((corpus / "shards").glob("*.csv"))
    subprocess.run([str(nbserve_bin), "train", "--data", *map(str, files), "--out", str(out), "--test-data",
                    str(corpus / "test.csv"), *TRAIN_FLAGS], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH})
    return out


def test_the_flow_run_completed(flow_run):
    assert flow_run.is_completed(), (flow_run.type.value, flow_run.message)


def test_the_flows_model_is_the_model_train_writes_on_the_shards(corpus, flow_run, trained):
    assert flow_run.is_completed(), flow_run.message
    assert sha(corpus / "ok.json") == sha(trained)


def test_counts_went_between_tasks_as_files_merged_in_a_tree(corpus, flow_run):
    result = flow_run.result()
    assert result["model"] == str(corpus / "ok.json")
    levels = {p.name: sorted(q.name for q in p.iterdir()) for p in (corpus / "ok").iterdir()}
    assert len(levels["level-0"]) == 7, levels
    # 7 → 4 → 2 → 1 with a fan-in of 2.
    assert [len(levels[f"level-{i}"]) for i in (1, 2, 3)] == [4, 2, 1], levels
    assert result["counts"] == str(corpus / "ok" / "level-3" / "part-00000.counts")


def test_the_api_recorded_a_count_task_run_per_shard(flow_run):
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run.state_details.flow_run_id])))
    names = sorted(r.task_key.split("-")[0] + ":" + r.state.type.value for r in runs)
    assert names.count("count_shard:COMPLETED") == 7, names
    assert names.count("merge_counts:COMPLETED") == 7, names


@pytest.fixture(scope="module")
def failed_run(corpus, nbserve_bin):
    bad = corpus / "shards" / "ragged.csv"
    bad.write_text("text,label\nfine,ham\nragged,spam,extra\n")
    shards = [str(corpus / "shards" / "shard-000.csv"), str(bad)]
    return run(corpus, nbserve_bin, shards, "bad")[0]


def test_a_failing_shard_fails_the_run_naming_it(corpus, failed_run):
    assert failed_run.is_failed(), (failed_run.type.value, failed_run.message)
    msg = failed_run.message or ""
    assert f"shard {corpus / 'shards' / 'ragged.csv'}: nbserve count exited 4" in msg, msg
    assert "line 3: expected 2 fields, found 3" in msg, msg
    with pytest.raises(count_flow.ShardFailed):
        failed_run.result()


def test_a_failing_shard_writes_no_model(corpus, failed_run):
    assert not (corpus / "bad.json").exists()
