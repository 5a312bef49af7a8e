"""Runs the runnable blocks of a Markdown page, as written.

A fenced block is runnable when the line before it (blank lines aside) is an
HTML comment `<!-- run -->`, which GitHub and mdBook both hide. Options go
after a colon: `<!-- run: exit=5 timeout=600 -->` (the exit status expected,
default 0; seconds the block may take, default 300). A fenced block preceded
by `<!-- output -->` is what the runnable block before it prints on standard
output: lines compared after trailing spaces are dropped, `...` matching any
text (also across lines).

The blocks of a page run in order with bash (`set -euo pipefail`), each in a
new shell that starts where the one before ended: same working directory,
same variables (exported or not). They start in a scratch "view" of the
repository: `models/` and `data/` are copies-on-write (a copied directory;
data files as links), everything else links to the checkout, so a block
that writes a file at the top writes it in the view, and the page fails if
it left any new file there (a reader's clone would have it untracked).
Every port number a page's runnable blocks name (8080, 5000, ...) is
replaced by a free one, and `NBSERVE__SERVER__PORT` points at the one for
8080. Processes a block left running (servers started with `&`) are
stopped when the page ends, wherever they are: this process is a child
subreaper, so they stay its descendants even when their shell is gone.
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

RUN = re.compile(r"^\s*<!--\s*run(?::\s*(.*?))?\s*-->\s*$")
OUTPUT = re.compile(r"^\s*<!--\s*output\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
# Ports the documentation uses for its servers; each is replaced by a free one.
PORT = re.compile(r"(?<![\d.])(8080|8081|5000|4200|9000)(?!\d)")
# What a page may not use: a port above is fine, but these would reach out.
SCRATCH_SKIP = {".git", "target", ".cache"}

PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Block:
    """A runnable block of a page."""

    page: Path
    line: int
    code: str
    exit: int = 0
    timeout: float = 300
    output: str | None = None

    def where(self) -> str:
        return f"{self.page.name}:{self.line}"


def parse(page: Path) -> list[Block]:
    """The runnable blocks of `page`, with the output each declares."""
    blocks: list[Block] = []
    lines = page.read_text().splitlines()
    mark: re.Match | None = None
    output_mark = False
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if not fence:
            if RUN.match(line):
                mark, output_mark = RUN.match(line), False
            elif OUTPUT.match(line):
                mark, output_mark = None, True
            elif line.strip():
                mark, output_mark = None, False
            i += 1
            continue
        indent, ticks = fence.group(1), fence.group(2)
        body = []
        start = i + 1
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(ticks) and lines[i].strip().strip(ticks[0]) == ""
        ):
            text = lines[i]
            body.append(text[len(indent):] if text.startswith(indent) else text.lstrip())
            i += 1
        i += 1  # the closing fence
        code = "\n".join(body) + "\n"
        if mark:
            opts = dict(o.split("=", 1) for o in shlex.split(mark.group(1) or ""))
            blocks.append(Block(page, start, code, exit=int(opts.get("exit", 0)),
                                timeout=float(opts.get("timeout", 300))))
        elif output_mark:
            if not blocks:
                raise ValueError(f"{page}:{start}: output block before any runnable block")
            blocks[-1].output = code
        mark, output_mark = None, False
    return blocks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def matches(expected: str, actual: str) -> bool:
    """Whether `actual` is `expected`, `...` matching anything."""
    def norm(text: str) -> str:
        return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).strip()
    pattern = ".*?".join(re.escape(part) for part in norm(expected).split("..."))
    return re.fullmatch(pattern, norm(actual), re.S) is not None


def become_subreaper() -> None:
    """Orphans of this process's descendants are reparented to it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def reap_orphans(exclude: int) -> None:
    """Reaps this process's children that have ended, but `exclude` (the
    running block's shell, whose status `subprocess` collects)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == exclude:
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            try:
                os.waitpid(int(entry), os.WNOHANG)
            except ChildProcessError:
                pass


def stop(pids: set[int], grace: float = 10) -> list[str]:
    """SIGTERM, then SIGKILL after `grace` seconds; reaps them. Returns the
    command lines of those that needed SIGKILL."""
    killed = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if alive(pid):
            try:
                killed.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
                os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
    for pid in pids:
        for _ in range(50):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                break
            time.sleep(0.1)
    return killed


def make_view(repo: Path, view: Path) -> set[str]:
    """The scratch view of `repo` in `view`; returns its top-level names."""
    view.mkdir()
    for entry in sorted(repo.iterdir()):
        if entry.name in SCRATCH_SKIP:
            continue
        target = view / entry.name
        if entry.name == "models":
            shutil.copytree(entry, target, ignore=shutil.ignore_patterns("versions", ".nbserve.lock"))
        elif entry.name == "data":
            target.mkdir()
            for f in entry.iterdir():
                (target / f.name).symlink_to(f)
        else:
            target.symlink_to(entry)
    return {p.name for p in view.iterdir()}


# Variables of a fresh shell, never carried from block to block.
SHELL_STATE = """
__doctest_save() {
    local rc=$?
    pwd > "$__DOCTEST_STATE/cwd"
    {
        local v
        for v in $(compgen -v); do
            case "$v" in
                BASH*|EUID|PPID|UID|SHELLOPTS|FUNCNAME|GROUPS|PIPESTATUS|RANDOM|SECONDS|LINENO|SRANDOM|EPOCH*|HISTCMD|DIRSTACK|OLDPWD|PWD|SHLVL|_|COMP*|__doctest*|__DOCTEST_STATE|OPTIND|OPTARG|IFS|PS4|rc|v) ;;
                *) declare -p "$v" 2>/dev/null | sed 's/^declare -\\([a-zA-Z]*\\)/declare -g\\1/; s/^declare -g-/declare -g/' ;;
            esac
        done
    } > "$__DOCTEST_STATE/vars.new" && mv "$__DOCTEST_STATE/vars.new" "$__DOCTEST_STATE/vars"
    exit "$rc"
}
trap __doctest_save EXIT
cd "$(cat "$__DOCTEST_STATE/cwd")"
[[ -f "$__DOCTEST_STATE/vars" ]] && source "$__DOCTEST_STATE/vars"
set -euo pipefail
"""


@dataclass
class PageRun:
    """Runs the blocks of one page in one scratch directory."""

    repo: Path
    work: Path
    bin_dir: Path
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.view = self.work / "repo"
        self.state = self.work / "state"
        self.state.mkdir()
        (self.work / "tmp").mkdir()
        self.top = make_view(self.repo, self.view)
        (self.state / "cwd").write_text(str(self.view))
        self.baseline = descendants(os.getpid())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("NBSERVE__", "MLFLOW_", "PREFECT_", "CARGO_TARGET_DIR", "PYTEST"))}
        env["PATH"] = f"{self.bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        env["NBSERVE_BIN"] = str(self.bin_dir / "nbserve")
        env["TMPDIR"] = str(self.work / "tmp")
        env["__DOCTEST_STATE"] = str(self.state)
        if "8080" in self.ports:
            env["NBSERVE__SERVER__PORT"] = str(self.ports["8080"])
        return env

    def substitute(self, text: str) -> str:
        return PORT.sub(lambda m: str(self.ports.setdefault(m.group(1), free_port())), text)

    def run(self, block: Block) -> tuple[int, str, str]:
        code = self.substitute(block.code)
        out, err = self.state / "stdout", self.state / "stderr"
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(["bash", "-c", SHELL_STATE + code], stdin=subprocess.DEVNULL,
                                    stdout=o, stderr=e, env=self.env())
            deadline = time.monotonic() + block.timeout
            while (rc := proc.poll()) is None:
                # Orphans that ended are reaped at once, as their shell would
                # have: a block waiting for one (`kill -0 $pid`) must see it gone.
                reap_orphans(exclude=proc.pid)
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    rc = -1
                    break
                time.sleep(0.25)
        return rc, out.read_text(errors="replace"), err.read_text(errors="replace")

    def finish(self) -> tuple[list[str], list[str]]:
        """Stops what the page left running; returns (new top-level names,
        processes that ignored SIGTERM)."""
        killed = stop(descendants(os.getpid()) - self.baseline)
        left = sorted({p.name for p in self.view.iterdir()} - self.top)
        return left, killed
