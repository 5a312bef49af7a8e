"""`nbserve retrain`'s training data from the field, as the nightly job meets
it: the release binary run on feedback logs with labels the deployment does
not have, labels no model could serve, and a 100 MB log.

- Field labels must not add a class: 30 lines labelled `pharma` were trained
  on and promoted, and the servers then answered ['ham', 'pharma', 'spam'].
- A 1 MB label, or more than 100 labels, made every run exit 1 (retried by
  the CronJob) instead of skipping the lines as malformed.
- Peak memory grew with the log: 378 MiB RSS for a 100 MB log with the
  default grid, against the CronJob's 512 MiB limit.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("make_feedback_log", HERE / "make_feedback_log.py")
make_feedback_log = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_feedback_log)

SMALL_GRID = ["--alpha", "0.1,1", "--min-df", "1", "--max-features", "0", "--folds", "3"]

# Peak RSS allowed for a retrain with the default grid on a 100 MB log and the
# sample's small base data: what the CronJob's 512 MiB leaves once its base
# corpus is in (the SpamAssassin training split alone peaks near 100 MB),
# less a fifth for headroom: (512 - 100) * 0.8, about 330 MiB. The same run
# peaked at 378 MiB before the merge streamed and held each text once.
MAX_PEAK_MIB_100MB = 330


class Deployment:
    """A scratch deployment: the sample's training part (the base data) and
    holdout, the model in service (v0, `nbserve train` on the base data) and
    the settings a retrain reads from the environment."""

    def __init__(self, binary: Path, root: Path):
        self.binary = binary
        self.root = root
        made = make_feedback_log.make(root, 0)
        self.train, self.holdout = made["train"], made["holdout"]
        self.models = root / "models"
        self.models.mkdir()
        self.model = self.models / "spam-nb.json"
        self.report = root / "report.json"
        self.env = {
            **os.environ,
            "NBSERVE__MODEL__PATH": str(self.model),
            "NBSERVE__MODEL__DIR": str(self.models),
            "NBSERVE__GATE__MIN_F1_MACRO": "0.5",
        }
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.base = self.train
        self.train_v0()

    def train_v0(self) -> None:
        """Puts `nbserve train` on the base data in service, as v0."""
        done = self.run(["train", "--data", str(self.base), "--out", str(self.model),
                         "--model-version", "v0"])
        assert done.returncode == 0, done.stderr

    def run(self, args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), *args], env=self.env, capture_output=True,
                              text=True, timeout=600)

    def retrain_args(self, logs: list[Path], extra: list[str]) -> list[str]:
        args = ["retrain", "--data", str(self.base), "--holdout", str(self.holdout),
                "--report", str(self.report)]
        for log in logs:
            args += ["--feedback-log", str(log)]
        return args + extra

    def retrain(self, logs: list[Path], extra: list[str]) -> subprocess.CompletedProcess:
        return self.run(self.retrain_args(logs, extra))

    def data(self) -> dict:
        return json.loads(self.report.read_text())["data"]

    def classes(self) -> list[str]:
        return json.loads(self.model.read_text())["classes"]


def write_log(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for text, label in rows:
            f.write(make_feedback_log.feedback_line(text, label))
    return path


def field_rows(label: str, n: int) -> list[tuple[str, str]]:
    return [(f"cheap {label} pills online pharmacy order {i} now", label) for i in range(n)]


def field_with_pharma(d: Deployment) -> Path:
    """The field scenario of the report: the model in service (v0) trained
    on 20 ham and 10 spam messages, and a feedback log with the rest of the
    training part, correctly labelled, plus 30 lines labelled `pharma`.
    Makes `d.base` and v0; returns the log."""
    train, _ = make_feedback_log.read_sample()
    base = [r for r in train if r[1] == "ham"][:20] + [r for r in train if r[1] == "spam"][:10]
    d.base = d.root / "base.csv"
    make_feedback_log.write_csv(d.base, base)
    d.train_v0()
    field = [r for r in train if r not in base]
    return write_log(d.root / "field.jsonl", field + field_rows("pharma", 30))


def test_field_labels_cannot_add_a_class(release_bin, tmp_path, serve, figures):
    d = Deployment(release_bin, tmp_path)
    log = field_with_pharma(d)
    done = d.retrain([log], SMALL_GRID)
    assert done.returncode == 0, done.stderr
    report = json.loads(d.report.read_text())
    data = report["data"]
    print(f"\n30 pharma lines: exit {done.returncode}, verdict {report['verdict']}, "
          f"skipped {data.get('skipped')}, classes of model.path {d.classes()}")
    # What clients meet: a server on model.path.
    server = serve(release_bin, {"GATE__MIN_F1_MACRO": "0.5"}, model=d.model,
                   workdir=tmp_path / "server")
    served = server.get("/model").json()["classes"]
    print(f"served classes: {served}")
    figures("retrain with 30 pharma-labelled lines: served classes", served)
    assert served == ["ham", "spam"]
    server.stop()
    assert report["verdict"] == "promoted"
    assert data["skipped"]["unknown_label"] == 30
    assert data["unknown_labels"] == {"pharma": 30}
    assert sorted(data["class_counts"]) == ["ham", "spam"]
    assert "--allow-new-classes" in done.stderr

    # The operator's explicit choice adds the class (from the same v0).
    d.train_v0()
    done = d.retrain([log], [*SMALL_GRID, "--allow-new-classes"])
    assert done.returncode == 0, done.stderr
    assert d.data()["class_counts"]["pharma"] == 30
    assert d.classes() == ["ham", "pharma", "spam"]
    print(f"with --allow-new-classes: classes of model.path {d.classes()}")


def test_labels_no_model_can_serve_are_malformed_lines_not_exit_1(release_bin, tmp_path):
    d = Deployment(release_bin, tmp_path)
    # Three lines, so that cross-validation keeps the label in every fold.
    long_label = write_log(tmp_path / "long.jsonl",
                           [(f"text {i}", "x" * 1_000_000) for i in range(3)])
    rows = []
    for k in range(101):
        rows += field_rows(f"c{k:03}", 3)
    many = write_log(tmp_path / "many.jsonl", rows)
    for logs, extra, expect in [
        ([long_label], [], {"label_too_long": 3}),
        ([many], [], {"unknown_label": 303}),
        ([long_label, many], ["--allow-new-classes"], {"label_too_long": 3, "too_many_labels": 9}),
    ]:
        d.report.unlink(missing_ok=True)
        done = d.retrain(logs, [*SMALL_GRID, *extra])
        print(f"\n{[p.name for p in logs]} {extra}: exit {done.returncode}")
        assert done.returncode in (0, 5), done.stderr[-2000:]
        data = d.data()
        print(f"malformed {data['malformed']}, skipped {data['skipped']}")
        for reason, n in expect.items():
            assert data["skipped"][reason] == n, data
        assert data["malformed"] == expect.get("label_too_long", 0) + expect.get("too_many_labels", 0)
        assert len(data["class_counts"]) <= 100
        assert "x" * 300 not in done.stderr


def run_measured(args: list[str], env: dict, stderr: Path) -> tuple[int, int, float]:
    """Runs `args` (stderr to the file `stderr`); returns (exit code, peak
    RSS in KiB, seconds). The peak is the kernel's own account, from wait4."""
    started = time.monotonic()
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss, time.monotonic() - started


def test_a_100mb_log_stays_within_the_cronjobs_memory(release_bin, tmp_path, figures):
    d = Deployment(release_bin, tmp_path)
    made = make_feedback_log.make(tmp_path / "big", 100)
    log = made["log"]
    err = tmp_path / "retrain.err"
    code, peak_kib, secs = run_measured(
        [str(release_bin), *d.retrain_args([log], [])], d.env, err)
    print(f"\n100 MB log ({made['lines']} lines), default grid: exit {code}, "
          f"peak RSS {peak_kib / 1024:.0f} MiB, {secs:.1f} s")
    figures("retrain on a 100 MB log, default grid: peak RSS MiB", round(peak_kib / 1024))
    assert code == 0, err.read_text()
    assert peak_kib < MAX_PEAK_MIB_100MB * 1024, f"peak {peak_kib} KiB"
    data = d.data()
    assert data["feedback_examples"] == made["lines"]
    assert data["feedback_bytes"] == log.stat().st_size

    # A budget of half the log: the oldest half is skipped, and memory follows.
    half = log.stat().st_size // 2
    code, half_kib, secs = run_measured(
        [str(release_bin), *d.retrain_args([log], ["--max-log-bytes", str(half)])], d.env, err)
    print(f"--max-log-bytes {half}: exit {code}, peak RSS {half_kib / 1024:.0f} MiB, {secs:.1f} s")
    figures("retrain on a 100 MB log, --max-log-bytes half of it: peak RSS MiB", round(half_kib / 1024))
    assert code in (0, 5), err.read_text()
    data = d.data()
    print(f"over_budget {data['skipped']['over_budget']}")
    assert abs(data["skipped"]["over_budget"] - made["lines"] / 2) < made["lines"] / 100
    assert half_kib < peak_kib * 0.8
