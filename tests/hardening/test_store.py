"""The model store (`model.dir/versions/`) as an operator meets it.

`nbserve retrain` keeps every model it replaces in `versions/`, listed in
`versions/history.json`, so that `nbserve rollback` can put it back. These
tests damage that store the way a bad backup, a full disk, a `kill -9`, a
planted file or a root cron job would, and check that nothing outside the
store is touched, nothing is read without limit, no model is lost, and
the file the servers read keeps its owner:

- history entries naming `../../outside/victim.txt` or an absolute path are
  refused, and the victims survive (they were deleted by pruning);
- `history.json` or a kept file pointing at `/dev/zero`, or a FIFO, fails at
  once (it was read until memory ran out, or hung holding the lock);
- `kill -9` (strace's fault injection) right after `model.path` was replaced
  and before the history recorded it: `rollback` still finds the previous
  model and the next promotion keeps it (it said "no earlier version", then
  deleted the only copy);
- the history write failing after the rename: exit 7, verdict
  `promoted_with_error`, and the next rollback still works;
- retrain as root with umask 077 keeps `model.path`'s owner (uid 65532), and
  a non-root retrain that cannot keep it refuses with a clear message;
- the `--report` directory probe never follows a planted symlink (in a
  container its name was `.nbserve-report-probe-1`).

Models are trained from `tests/data/sample.csv` in a second or two. Every
command runs with a 2 GiB address-space limit, so a regression fails the
test instead of exhausting the machine. Run with `-s` for the figures.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = ROOT / "tests" / "data" / "sample.csv"
ADDRESS_SPACE = 2 << 30
SERVER_UID = 65532
NOBODY = 65534


def figure(text: str) -> None:
    print(f"\nFIGURE {text}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_csv(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


class Run:
    """A finished command: exit code (negative: killed by that signal; None:
    still running at the timeout, then killed), output, seconds taken, its
    own peak resident set (KiB) and the bytes it read (`rchar`, last seen)."""

    def __init__(self, code, stdout: str, stderr: str, seconds: float, maxrss_kib: int,
                 read_bytes: int):
        self.code, self.stdout, self.stderr = code, stdout, stderr
        self.seconds, self.maxrss_kib, self.read_bytes = seconds, maxrss_kib, read_bytes

    def figures(self) -> str:
        return (f"exit {self.code} in {self.seconds:.1f} s, peak RSS {self.maxrss_kib} KiB, "
                f"{self.read_bytes / 1e6:.1f} MB read")

    def __repr__(self) -> str:
        return f"{self.figures()}:\n{self.stderr[-3000:]}"


def rchar(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Deployment:
    """A scratch deployment: `models/current.json` (v1, made by `nbserve
    train`, not yet in the store), the training part and the holdout of the
    sample, a second training set one document larger (a different
    candidate), and `nbserve.toml` pointing at them."""

    def __init__(self, binary: Path, root: Path):
        self.bin = binary
        self.root = root
        self.models = root / "models"
        self.models.mkdir(parents=True)
        self.model = self.models / "current.json"
        self.versions = self.models / "versions"
        self.history = self.versions / "history.json"
        csv.field_size_limit(sys.maxsize)
        with open(SAMPLE, newline="") as f:
            rows = list(csv.reader(f))[1:]
        train = [r for i, r in enumerate(rows) if i % 3]
        write_csv(root / "train.csv", train)
        write_csv(root / "holdout.csv", [r for i, r in enumerate(rows) if i % 3 == 0])
        write_csv(root / "more.csv", train + [["a brand new offer of cheap pills", "spam"]])
        self.config = root / "nbserve.toml"
        self.config.write_text(
            f'[model]\npath = "{self.model}"\ndir = "{self.models}"\n[gate]\nmin_f1_macro = 0.5\n'
        )
        done = self.run("train", "--data", str(root / "train.csv"), "--out", str(self.model),
                        "--model-version", "v1")
        assert done.code == 0, done
        self.v1 = self.model.read_bytes()

    def run(self, *args: str, wrap: tuple[str, ...] = (), timeout: float = 120,
            user: int | None = None, umask: int | None = None) -> Run:
        """Runs the binary (under `wrap`, e.g. strace) with the memory cap;
        a command still running after `timeout` is killed and reported as
        exit code None."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("NBSERVE__") and k != "MLFLOW_TRACKING_URI"}

        def limit():
            resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
            if umask is not None:
                os.umask(umask)
            if user is not None:
                os.setgroups([])
                os.setgid(user)
                os.setuid(user)

        started = time.monotonic()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([*wrap, str(self.bin), *args], env=env, cwd=self.root,
                                    stdout=out, stderr=err, preexec_fn=limit)
            read, timed_out = 0, False
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                read = rchar(proc.pid) or read
                if time.monotonic() - started > timeout:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    timed_out = True
                    break
                time.sleep(0.01)
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        return Run(None if timed_out else proc.returncode, stdout,
                   stderr + ("\n[timed out]" if timed_out else ""),
                   time.monotonic() - started, usage.ru_maxrss, read)

    def retrain(self, data: str = "train.csv", *extra: str, **kw) -> Run:
        return self.run("retrain", "--config", str(self.config), "--data", str(self.root / data),
                        "--holdout", str(self.root / "holdout.csv"), "--alpha", "0.1,1",
                        "--min-df", "1", "--max-features", "0", "--folds", "3", *extra, **kw)

    def rollback(self, *extra: str, **kw) -> Run:
        return self.run("rollback", "--config", str(self.config), *extra, **kw)

    def kept(self) -> list[str]:
        """The versions directory's file names."""
        return sorted(p.name for p in self.versions.iterdir()) if self.versions.exists() else []

    def holds_v1(self) -> bool:
        """Whether some kept file is byte for byte the first model."""
        return any(p.read_bytes() == self.v1 for p in self.versions.glob("0*.json")
                   if p.is_file() and not p.is_symlink())


@pytest.fixture
def deployment(release_bin, tmp_path) -> Deployment:
    return Deployment(release_bin, tmp_path / "deploy")


def tool(name: str, *probe: str) -> None:
    """Skips the test unless `name` is installed and `probe` runs."""
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
    if subprocess.run([name, *probe], capture_output=True).returncode != 0:
        pytest.skip(f"{name} cannot run here ({' '.join(probe)})")


def strace(*rules: str) -> tuple[str, ...]:
    tool("strace", "-f", "-qq", "-o", "/dev/null", "true")
    return ("strace", "-f", "-qq", "-o", "/dev/null", *rules)


# -- history entries naming paths outside the store ---------------------------


def test_a_poisoned_history_deletes_nothing_outside_the_store(deployment):
    d = deployment
    first = d.retrain("train.csv", "--keep", "2")
    assert first.code == 0, first
    outside = d.root / "outside"
    outside.mkdir()
    victims = [outside / "victim.txt", d.root / "absolute-victim.txt"]
    for v in victims:
        v.write_text("precious")
    h = json.loads(d.history.read_text())
    for seq, file in [(90, "../../outside/victim.txt"), (91, str(victims[1]))]:
        h["entries"].insert(0, {**h["entries"][0], "seq": seq, "file": file})
    h["next_seq"] = 92
    d.history.write_text(json.dumps(h))
    served = d.model.read_bytes()
    before = [v.name for v in victims if v.exists()]

    promotion = d.retrain("more.csv", "--keep", "2")
    rollback = d.rollback()
    after = [v.name for v in victims if v.exists()]
    figure(f"poisoned history: files outside the store before {before}, after a promotion "
           f"and a rollback {after}; retrain exit {promotion.code}, rollback exit {rollback.code}")
    assert after == before, "pruning deleted a file outside the store"
    assert all(v.read_text() == "precious" for v in victims)
    for r in (promotion, rollback):
        assert r.code == 1, r
        assert "not a kept file name" in r.stderr and "nothing it names was touched" in r.stderr, r
    assert d.model.read_bytes() == served, "nothing was promoted"


# -- /dev/zero and FIFOs where the store keeps files ------------------------------


def plant(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        os.mkfifo(path)


@pytest.mark.parametrize("kind", ["dev_zero", "fifo"])
def test_a_history_at_dev_zero_or_a_fifo_fails_at_once(deployment, kind):
    d = deployment
    assert d.retrain().code == 0
    plant(d.history, kind)
    for name, run in [("rollback", lambda: d.rollback(timeout=30)),
                      ("retrain", lambda: d.retrain("more.csv", timeout=90))]:
        r = run()
        figure(f"history.json is {kind}: {name} {r.figures()}")
        assert r.code == 1, r
        assert r.maxrss_kib < 256 * 1024 and r.read_bytes < 64e6, r
        expected = "symbolic link" if kind == "dev_zero" else "not a regular file"
        assert expected in r.stderr and "history.json" in r.stderr, r
    assert stat.S_ISFIFO(d.history.lstat().st_mode) or d.history.is_symlink()


def test_a_kept_file_at_dev_zero_is_never_read(deployment):
    d = deployment
    assert d.retrain().code == 0
    # The kept copy of the model in service becomes a link to /dev/zero: a
    # promotion checks that copy before relying on it.
    served = hashlib.sha256(d.model.read_bytes()).hexdigest()
    h = json.loads(d.history.read_text())
    entry = next(e for e in h["entries"] if e["sha256"] == served)
    plant(d.versions / entry["file"], "dev_zero")
    r = d.retrain("more.csv", timeout=90)
    figure(f"kept file -> /dev/zero: retrain {r.figures()}")
    assert r.code == 0, r
    # Not read: a replica-sized memory limit would have killed it.
    assert r.maxrss_kib < 256 * 1024 and r.read_bytes < 64e6, r
    # The model it replaced is kept again from model.path's bytes, and
    # rollback brings it back.
    rb = d.rollback(timeout=30)
    assert rb.code == 0, rb
    assert hashlib.sha256(d.model.read_bytes()).hexdigest() == served


# -- a crash between replacing model.path and recording it -------------------------


def kill_after_the_rename(d: Deployment) -> tuple[str, ...]:
    """strace rules that SIGKILL the retrain at the first fsync of the models
    directory: the one that follows the rename of model.path, before the
    version history records the promotion."""
    return strace("-P", str(d.models.resolve()), "-e", "trace=fsync",
                  "-e", "inject=fsync:signal=SIGKILL:when=1")


@pytest.mark.parametrize("then", ["rollback", "promotion"])
def test_kill_9_between_the_rename_and_the_history_loses_no_model(deployment, then):
    d = deployment
    crashed = d.retrain(wrap=kill_after_the_rename(d))
    assert crashed.code in (-9, 137), crashed
    assert d.model.read_bytes() != d.v1, "model.path was replaced before the kill"
    assert d.run("check", "--model", str(d.model), "--min-f1-macro", "0.5").code == 0
    kept_after_crash = d.kept()
    if then == "rollback":
        r = d.rollback()
        figure(f"kill -9 after the rename: kept {kept_after_crash}; rollback exit {r.code}: "
               f"{(r.stdout or r.stderr).strip()[:200]}")
        assert r.code == 0, r
        assert d.model.read_bytes() == d.v1
        return
    r = d.retrain("more.csv")
    figure(f"kill -9 after the rename: kept {kept_after_crash}; next promotion exit {r.code}, "
           f"kept {d.kept()}, v1 still kept: {d.holds_v1()}")
    assert r.code == 0, r
    assert d.holds_v1(), "the next promotion deleted the previous model"
    for _ in range(2):
        rb = d.rollback()
        assert rb.code == 0, rb
    assert d.model.read_bytes() == d.v1


def history_rename_after_the_model(d: Deployment) -> int:
    """Which `rename` call of a first retrain is the first one onto
    history.json after the one onto model.path (counted on a dry run of the
    same retrain in a twin deployment, so the count follows the code)."""
    renames = []
    log = d.root / "renames.txt"
    dry = d.retrain(wrap=("strace", "-f", "-qq", "-o", str(log), "-e", "trace=rename"))
    assert dry.code == 0, dry
    for line in log.read_text().splitlines():
        if "rename(" in line:
            renames.append(line.split(", ", 1)[1].split('"')[1])
    after_model = renames.index(str(d.model)) + 1
    return after_model + renames[after_model:].index(str(d.history)) + 1


def test_a_history_write_failing_after_the_rename_is_promoted_with_error(deployment, tmp_path):
    strace()
    d = deployment
    n = history_rename_after_the_model(Deployment(d.bin, tmp_path / "dry-run"))
    report = d.root / "report.json"
    # That rename fails as on a full disk.
    rules = strace("-e", "trace=rename", "-e", f"inject=rename:error=ENOSPC:when={n}")
    r = d.retrain("train.csv", "--report", str(report), wrap=rules)
    verdict = json.loads(report.read_text())["verdict"] if report.exists() else None
    figure(f"history write (rename {n}) fails after the rename of model.path: exit {r.code}, "
           f"verdict {verdict}: {r.stderr.strip().splitlines()[-1][:300] if r.stderr.strip() else ''}")
    assert r.code == 7, r
    assert verdict == "promoted_with_error"
    assert "IS in service" in r.stderr and "No space left on device" in r.stderr, r
    candidate = json.loads(report.read_text())["candidate"]["sha256"]
    assert sha256(d.model) == candidate
    # The history still says the promotion is under way; rollback settles it
    # from model.path and goes back to v1.
    rb = d.rollback()
    figure(f"... then rollback exit {rb.code}: {(rb.stdout or rb.stderr).strip()[:160]}")
    assert rb.code == 0, rb
    assert d.model.read_bytes() == d.v1


# -- the owner of model.path -----------------------------------------------------


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("giving files to other users needs root")


@pytest.fixture
def public_deployment(release_bin):
    """A deployment in a tree every user may traverse and read (pytest's
    own is private to root), so other users can run the binary on it."""
    needs_root()
    top = Path(tempfile.mkdtemp(prefix="nbserve-owner-"))
    try:
        top.chmod(0o755)
        d = Deployment(release_bin, top / "deploy")
        for p in d.root.iterdir():
            p.chmod(0o755 if p.is_dir() else 0o644)
        d.root.chmod(0o755)
        yield d
    finally:
        shutil.rmtree(top)


def owner(path: Path) -> tuple[int, int, str]:
    st = path.stat()
    return st.st_uid, st.st_gid, f"{stat.S_IMODE(st.st_mode):04o}"


def test_retrain_as_root_keeps_the_owner_of_model_path(public_deployment):
    d = public_deployment
    os.chown(d.model, SERVER_UID, SERVER_UID)
    d.model.chmod(0o600)
    r = d.retrain(umask=0o077)
    assert r.code == 0, r
    # The server runs as SERVER_UID: it must still be able to read its model.
    check = d.run("check", "--model", str(d.model), "--min-f1-macro", "0.5", user=SERVER_UID)
    figure(f"model.path after retrain (root, umask 077): uid, gid, mode {owner(d.model)}; "
           f"`check` as uid {SERVER_UID} exit {check.code}")
    assert owner(d.model) == (SERVER_UID, SERVER_UID, "0600")
    assert check.code == 0, check
    rb = d.rollback(umask=0o077)
    assert rb.code == 0, rb
    assert owner(d.model) == (SERVER_UID, SERVER_UID, "0600")


def test_a_retrain_that_cannot_keep_the_owner_refuses_and_changes_nothing(public_deployment):
    d = public_deployment
    os.chown(d.models, NOBODY, NOBODY)
    os.chown(d.model, SERVER_UID, SERVER_UID)
    d.model.chmod(0o600)
    r = d.retrain(user=NOBODY)
    figure(f"retrain as uid {NOBODY} over a 0600 model.path of uid {SERVER_UID}: exit {r.code}; "
           f"model.path uid, gid, mode {owner(d.model)}: {r.stderr.strip().splitlines()[-1][:300]}")
    assert r.code == 1, r
    assert "cannot give its replacement that owner" in r.stderr, r
    assert owner(d.model) == (SERVER_UID, SERVER_UID, "0600")
    assert d.model.read_bytes() == d.v1
    assert [p.name for p in d.models.iterdir() if ".tmp-" in p.name] == []


# -- the --report probe ---------------------------------------------------------


def test_the_report_probe_never_follows_a_planted_symlink(deployment):
    d = deployment
    tool("unshare", "--pid", "--fork", "true")
    reports = d.root / "reports"
    reports.mkdir()
    victim = d.root / "victim.txt"
    victim.write_text("precious")
    # In a container the retrain is PID 1; so it is in a new PID namespace.
    (reports / ".nbserve-report-probe-1").symlink_to(victim)
    other = d.root / "other-victim.txt"
    other.write_text("also precious")
    (reports / "r.json").symlink_to(other)
    r = d.retrain("train.csv", "--report", str(reports / "r.json"),
                  wrap=("unshare", "--pid", "--fork"))
    figure(f"report probe as PID 1 beside a planted symlink: exit {r.code}; victim holds "
           f"{victim.stat().st_size} bytes (was 8), report is a regular file: "
           f"{not (reports / 'r.json').is_symlink()}")
    assert r.code == 0, r
    assert victim.read_text() == "precious"
    assert other.read_text() == "also precious"
    assert not (reports / "r.json").is_symlink()
    assert json.loads((reports / "r.json").read_text())["verdict"] == "promoted"
