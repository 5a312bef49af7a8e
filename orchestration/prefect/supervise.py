"""Runs `flow.py` in a child process group and stops all of it on SIGINT,
SIGTERM or SIGHUP, within a bounded time. Standard library only: the
supervising process never imports Prefect.

Why a supervisor: Prefect's runner (`flow.py serve`) ignores SIGINT, its
graceful SIGTERM path calls the API (so a stopped server stalls it), and a
cancelled flow run can leave the processes its tasks started behind. In local
ephemeral mode (`flow.py run`) the temporary API is a subprocess that must go
too. Everything the child starts stays in the child's process group, so the
supervisor can always end it:

1. the first signal is passed to the child as SIGTERM, which both modes handle
   gracefully (`serve`: Prefect's runner cancels the runs in flight and
   pauses the schedule; `run`: the flow run ends as crashed by the signal,
   its command killed);
2. after `grace` seconds, or on a second signal, the whole group gets SIGKILL;
3. once the child has exited, whatever is left in its group gets SIGTERM, then
   SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# Set in the child's environment: flow.py then does the work itself.
CHILD_ENV = "NBSERVE_FLOW_CHILD"
# How long the child may take to stop by itself before it is killed.
GRACE_SECS = 30.0
# How long leftovers in the group get between SIGTERM and SIGKILL.
LEFTOVER_SECS = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _killpg(pgid: int, sig: int) -> bool:
    """Sends `sig` to the group; False when the group has no process left."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _end_group(pgid: int) -> None:
    """SIGTERM to what is left of the group, SIGKILL after LEFTOVER_SECS."""
    if not _killpg(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + LEFTOVER_SECS
    while time.monotonic() < deadline:
        if not _killpg(pgid, 0):
            return
        time.sleep(0.1)
    _killpg(pgid, signal.SIGKILL)


def supervise(script: str, argv: list[str], grace: float = GRACE_SECS) -> int:
    """Runs `python script argv...` as the leader of a new process group and
    returns its exit code (128 + N when signal N ended it); stop signals as
    in the module's doc."""
    # A new process group (Python 3.10, which Prefect also supports, lacks `process_group`).
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    child = subprocess.Popen([sys.executable, script, *argv], env={**os.environ, CHILD_ENV: "1"}, **group)
    stop: dict[str, float | None] = {"at": None}

    def on_signal(signum: int, _frame: object) -> None:
        if stop["at"] is None:
            stop["at"] = time.monotonic()
            print(f"flow.py: {signal.Signals(signum).name} received, stopping (at most {grace:.0f} s)",
                  file=sys.stderr, flush=True)
            if child.returncode is None:
                os.kill(child.pid, signal.SIGTERM)
        else:
            print("flow.py: second signal, killing everything it started", file=sys.stderr, flush=True)
            _killpg(child.pid, signal.SIGKILL)

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    try:
        while True:
            try:
                code = child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                started = stop["at"]
                if started is not None and time.monotonic() - started > grace:
                    print(f"flow.py: still running after {grace:.0f} s, killing everything it started",
                          file=sys.stderr, flush=True)
                    _killpg(child.pid, signal.SIGKILL)
    finally:
        _end_group(child.pid)
    return code if code >= 0 else 128 - code
