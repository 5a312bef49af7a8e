"""Prefect flow for training past one machine: `nbserve count` mapped over
shards on Dask, a tree of `nbserve merge --out-counts`, then one `nbserve
merge --out` that writes the artifact `nbserve train` writes on all the
shards' rows (byte for byte, docs/distributed-training.md).

    # a Dask LocalCluster of 2 worker processes on this machine
    python orchestration/prefect/count_flow.py --shard 'shards/*.csv' \
        --work-dir /tmp/counts --out model.json --test-data holdout.csv \
        -- --name spam-nb --model-version 2026.12.07 --alpha 0.01 --min-df 2

    # an existing Dask cluster (dask-kubernetes, dask-jobqueue, `dask scheduler`)
    python orchestration/prefect/count_flow.py --address tcp://scheduler:8786 ...

Tasks pass file paths, never data: each count task reads one shard (a local
path, or a URL fsspec opens: `file://`, and `s3://`, `gs://`, ... with s3fs,
gcsfs installed on the workers) and writes `WORK_DIR/level-0/NAME.counts`;
each merge task reads up to `--fan-in` (default 16) counts files and writes
one. `--work-dir` must be a directory the flow process and every worker see
(a shared volume on a real cluster), and NBSERVE_BIN (or `--nbserve`) a
binary they can all run. Options after `--` go to the final `nbserve merge`
(its train flags); `--count-arg` options go to every `nbserve count`
(`--binary`, `--folds K`, column names).

A shard that fails fails the flow run, naming the shard and nbserve's
message; nothing is written at `--out` then (the final merge never runs).
Merging is associative and commutative, so the tree's shape and the order in
which shards finish do not change a byte. Installed with
scripts/install-prefect.sh (prefect and prefect-dask pinned and hash-checked).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

if __name__ == "__main__" and os.environ.get("NBSERVE_FLOW_CHILD") != "1":
    # The supervising process: stdlib only, it never imports Prefect.
    from supervise import supervise

    sys.exit(supervise(__file__, sys.argv[1:]))

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow, get_run_logger, task  # noqa: E402 (after the settings above)
from prefect_dask import DaskTaskRunner  # noqa: E402

# The merge tree's fan-in: a merge holds its inputs' vocabularies at once.
FAN_IN = 16


class ShardFailed(Exception):
    """One or more shards could not be counted: the run writes no model."""


class MergeFailed(Exception):
    """`nbserve merge` refused its inputs (different settings, damage)."""


def _tail(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _is_url(shard: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*://", shard, re.IGNORECASE) is not None


def shard_name(shard: str) -> str:
    """A shard's file name without its extension: the name of its counts."""
    return Path(shard.rstrip("/").rsplit("/", 1)[-1]).stem or "shard"


@task(name="count")
def count_shard(nbserve: str, shard: str, out: str, count_args: list[str]) -> str:
    """`nbserve count --data SHARD --out OUT`; returns OUT. A URL is copied
    to a local scratch file first (nbserve streams local files)."""
    scratch = None
    try:
        local = shard
        if _is_url(shard):
            import fsspec

            scratch = tempfile.mkdtemp(prefix="nbserve-shard-")
            local = str(Path(scratch) / (shard_name(shard) + ".csv"))
            with fsspec.open(shard, "rb") as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        done = subprocess.run([nbserve, "count", "--data", local, "--out", out, *count_args],
                              capture_output=True, text=True)
    except OSError as err:
        raise ShardFailed(f"shard {shard}: {err}") from err
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if done.returncode != 0:
        raise ShardFailed(f"shard {shard}: nbserve count exited {done.returncode}: "
                          f"{_tail(done.stderr or done.stdout)}")
    get_run_logger().info("%s", _tail(done.stdout, 1))
    return out


@task(name="merge-counts")
def merge_counts(nbserve: str, parts: list[str], out: str) -> str:
    """`nbserve merge PARTS... --out-counts OUT`; returns OUT."""
    done = subprocess.run([nbserve, "merge", *parts, "--out-counts", out], capture_output=True, text=True)
    if done.returncode != 0:
        raise MergeFailed(f"nbserve merge exited {done.returncode}: {_tail(done.stderr or done.stdout)}")
    return out


def merge_tree(nbserve: str, level: list[Any], work_dir: Path, fan_in: int) -> Any:
    """Submits merges of `fan_in` files at a time, level by level, until one
    is left; returns its future (or the one input as is)."""
    depth = 0
    while len(level) > 1:
        depth += 1
        d = work_dir / f"level-{depth}"
        d.mkdir(parents=True, exist_ok=True)
        level = [merge_counts.submit(nbserve, level[i:i + fan_in], str(d / f"part-{i // fan_in:05d}.counts"))
                 for i in range(0, len(level), fan_in)]
    return level[0]


def expand(shards: list[str]) -> list[str]:
    """Globs expanded (sorted), URLs kept as given; a glob matching nothing
    is an error, not an empty shard."""
    out: list[str] = []
    for s in shards:
        if _is_url(s) or not glob.has_magic(s):
            out.append(s)
            continue
        found = sorted(glob.glob(s))
        if not found:
            raise ShardFailed(f"shard {s}: no file matches")
        out.extend(found)
    return out


def _names(shards: list[str]) -> list[str]:
    """A counts file name per shard, unique even when shards share a name."""
    seen: dict[str, int] = {}
    names = []
    for s in shards:
        base = shard_name(s)
        n = seen.get(base, 0)
        seen[base] = n + 1
        names.append(base if n == 0 else f"{base}-{n}")
    return names


@flow(name="nbserve-count-merge", log_prints=True)
def count_merge_flow(shards: list[str], work_dir: str, out: str | None = None, test_data: str | None = None,
                     nbserve: str | None = None, fan_in: int = FAN_IN, count_args: list[str] | None = None,
                     merge_args: list[str] | None = None) -> dict[str, Any]:
    """Counts every shard, merges the counts as a tree and, with `out`,
    writes the model (`nbserve merge TOTAL --out OUT --test-data TEST
    MERGE_ARGS`). Returns the total counts' path and the model's."""
    if fan_in < 2:
        raise ValueError(f"fan_in must be at least 2, not {fan_in}")
    if out and not test_data:
        raise ValueError("a model (out) is evaluated on test_data: give both, or neither for counts only")
    nbserve = nbserve or os.environ.get("NBSERVE_BIN") or "nbserve"
    logger = get_run_logger()
    shards = expand(shards)
    if not shards:
        raise ShardFailed("no shards to count")
    work = Path(work_dir)
    (work / "level-0").mkdir(parents=True, exist_ok=True)
    logger.info("counting %d shard(s), merging %d at a time, in %s", len(shards), fan_in, work)
    counted = [count_shard.submit(nbserve, s, str(work / "level-0" / f"{n}.counts"), count_args or [])
               for s, n in zip(shards, _names(shards))]
    total = merge_tree(nbserve, counted, work, fan_in)
    # Every count's outcome first, so that the run names each failed shard
    # (a merge downstream only knows that an input is missing).
    failed = []
    for f in counted:
        f.wait()
        if not f.state.is_completed():
            try:
                f.result()
            except Exception as err:  # noqa: BLE001 - reported with the shard's name
                failed.append(str(err))
    if failed:
        raise ShardFailed(f"{len(failed)} of {len(shards)} shard(s) failed: " + "; ".join(failed))
    total_path = total.result() if hasattr(total, "result") else total
    result = {"counts": total_path, "model": None}
    if out:
        cmd = [nbserve, "merge", total_path, "--out", out, "--test-data", test_data, *(merge_args or [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise MergeFailed(f"nbserve merge --out exited {done.returncode}: {_tail(done.stderr or done.stdout)}")
        logger.info("%s", _tail(done.stdout, 12))
        result["model"] = out
    return result


def task_runner(address: str | None, workers: int) -> DaskTaskRunner:
    """Dask through prefect-dask: an existing scheduler at `address`, else a
    LocalCluster of `workers` single-threaded worker processes (counting is
    CPU-bound and each count is one process)."""
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


@contextlib.contextmanager
def shared_api() -> Iterator[None]:
    """Without a Prefect server (PREFECT_API_URL unset), starts this
    process's temporary local API now and exports its URL while the flow
    runs, so that the Dask worker processes it starts record their task runs
    in it instead of each starting one of its own."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    before = os.environ.get("PREFECT_API_URL")
    if PREFECT_API_URL.value() or before:
        yield
        return
    server = SubprocessASGIServer()  # one per process: the flow's own client reuses it
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)


def run(params: dict[str, Any], address: str | None = None, workers: int = 2) -> Any:
    """One flow run on Dask; its final state."""
    with contextlib.nullcontext() if address else shared_api():
        return count_merge_flow.with_options(task_runner=task_runner(address, workers))(**params,
                                                                                         return_state=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="nbserve count over shards on Dask, merged as a tree, under Prefect")
    p.add_argument("--shard", action="append", required=True, help="shard CSV, glob or URL (repeatable)")
    p.add_argument("--work-dir", required=True, help="where the counts files go (seen by every worker)")
    p.add_argument("--out", help="the model to write (else the counts only)")
    p.add_argument("--test-data", help="held-out CSV the model is evaluated on (with --out)")
    p.add_argument("--nbserve", help="nbserve binary (default: $NBSERVE_BIN or nbserve on PATH)")
    p.add_argument("--fan-in", type=int, default=FAN_IN, help=f"counts files per merge (default {FAN_IN})")
    p.add_argument("--count-arg", action="append", default=[], help="an argument for every nbserve count")
    p.add_argument("--address", help="an existing Dask scheduler (tcp://HOST:8786); default a LocalCluster")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    return p


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    a = _parser().parse_args(argv)
    params = {"shards": a.shard, "work_dir": a.work_dir, "out": a.out, "test_data": a.test_data,
              "nbserve": a.nbserve, "fan_in": a.fan_in, "count_args": a.count_arg, "merge_args": extra}
    state = run(params, a.address, a.workers)
    print(f"flow run state: {state.type.value} ({state.message})")
    if state.is_completed():
        print(f"counts: {state.result()['counts']}")
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
