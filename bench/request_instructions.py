#!/usr/bin/env python3
"""Instructions per `/predict` request, counted by valgrind's callgrind.

A server is run under callgrind twice: once answering WARM requests, once
WARM + REQUESTS, each then stopped with SIGTERM. The difference of the two
totals divided by REQUESTS is what one request costs, start-up, warm-up and
shutdown cancelled out; the same difference per function (self cost,
inlined code counted toward its caller) says where. Instruction counts are
nearly deterministic for a given binary and request mix (runs differ by
1-2 %: the runtime's wake-ups and timers), so two builds (or nbserve
and the floor, `examples/floor_server.rs`) compare exactly on a noisy
machine where wall-clock figures move by ±30 %.

Used by `bench/instructions.sh` (the report) and by the regression check
`tests/perf/` (a committed baseline). Standard library only.

    bench/request_instructions.py --bin "${CARGO_TARGET_DIR:-target}/release/nbserve" --kind nbserve \
        --data data/spamassassin.csv --mix short --json
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIXES = ("short", "corpus")


def texts_of(data: Path) -> list[str]:
    csv.field_size_limit(sys.maxsize)
    with open(data, newline="", encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f)]


def bodies(data: Path, mix: str, k: int = 1000) -> list[bytes]:
    """Request bodies `{"text": ...}` from `k` evenly spaced rows of `data`.

    `corpus`: the whole document (mail: mean ~4 kB). `short`: its first
    line, the Subject (mean ~40 bytes): a real short text, whole, as a
    client classifying titles, chat lines or SMS sends them.
    """
    texts = texts_of(data)
    k = min(k, len(texts))
    picked = [texts[i * len(texts) // k] for i in range(k)]
    if mix == "short":
        picked = [t.strip().split("\n", 1)[0].strip() for t in picked]
    elif mix != "corpus":
        raise ValueError(f"unknown mix {mix!r}")
    return [json.dumps({"text": t}).encode() for t in picked if t.strip()]


def _wait_ready(port: int, proc: subprocess.Popen, deadline_s: float = 180) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}) before it was ready")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", "/ready")
            if c.getresponse().status == 200:
                c.close()
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server under valgrind not ready after {deadline_s:.0f} s")
        time.sleep(0.2)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(kind: str, binary: Path, port: int,
             model: Path | None = None) -> tuple[list[str], dict]:
    env = dict(os.environ)
    if kind == "nbserve":
        model = model or ROOT / "models" / "spam-nb.json"
        env.update({
            "NBSERVE__SERVER__HOST": "127.0.0.1",
            "NBSERVE__SERVER__PORT": str(port),
            "NBSERVE__MODEL__PATH": str(model),
            "NBSERVE__MODEL__DIR": str(model.parent),
        })
        # The shipped defaults (log level info included) unless the caller set them.
        env.pop("RUST_LOG", None)
        return [str(binary), "serve"], env
    if kind == "floor":
        return [str(binary), str(port)], env
    raise ValueError(f"unknown kind {kind!r}")


def run_once(kind: str, binary: Path, payloads: list[bytes], n: int, out: Path,
             model: Path | None = None, before: tuple[tuple[str, bytes], ...] = ()) -> None:
    """Starts `binary` under callgrind (serving `model`, default the shipped
    one), posts `before` (path, body: e.g. a `/learn`, the same in both runs
    so it cancels out), then `n` `/predict` requests over one keep-alive
    connection (cycling `payloads`), stops it with SIGTERM."""
    port = _free_port()
    cmd, env = _command(kind, binary, port, model)
    log = open(f"{out}.log", "wb")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(port, proc)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for path, body in before:
            c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"{kind}: POST {path}: HTTP {r.status}")
        for i in range(n):
            c.request("POST", "/predict", body=payloads[i % len(payloads)],
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"{kind}: request {i}: HTTP {r.status}")
        c.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    if not out.exists():
        raise RuntimeError(f"callgrind wrote no {out}; see {out}.log")


def functions(path: Path) -> tuple[int, dict[str, int]]:
    """(total, self cost per function) of a callgrind output file."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no",
                           "--threshold=100", str(path)], capture_output=True, text=True,
                          check=True).stdout
    totals: dict[str, int] = {}
    cost = None
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)$", line)
        if not m:
            continue
        value, name = int(m.group(1).replace(",", "")), m.group(2).strip()
        if "PROGRAM TOTALS" in name:
            cost = value
            continue
        name = re.sub(r" \[[^]]*\]$", "", name)       # drop "[binary]"
        name = name.split(":", 1)[1] if ":" in name and not name.startswith("<") else name
        totals[name] = totals.get(name, 0) + value
    if cost is None:
        raise RuntimeError(f"no PROGRAM TOTALS in callgrind_annotate output of {path}")
    return cost, totals


def measure(kind: str, binary: Path, data: Path, mix: str, warm: int = 100,
            requests: int = 1000, work: Path | None = None, model: Path | None = None,
            before: tuple[tuple[str, bytes], ...] = ()) -> dict:
    """Instructions per request, in total and per function, for one mix."""
    payloads = bodies(data, mix)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        a, b = Path(tmp) / "a.out", Path(tmp) / "b.out"
        run_once(kind, binary, payloads, warm, a, model, before)
        run_once(kind, binary, payloads, warm + requests, b, model, before)
        a_total, a_fn = functions(a)
        b_total, b_fn = functions(b)
    per_fn = {k: (b_fn.get(k, 0) - a_fn.get(k, 0)) / requests for k in set(a_fn) | set(b_fn)}
    size = sum(len(json.loads(p)["text"].encode()) for p in payloads)
    return {
        "kind": kind,
        "mix": mix,
        "binary": str(binary),
        "data": str(data),
        "requests": requests,
        "mean_text_bytes": size / len(payloads),
        "per_request": (b_total - a_total) / requests,
        "functions": {k: v for k, v in per_fn.items() if v != 0},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, type=Path)
    p.add_argument("--kind", choices=("nbserve", "floor"), required=True)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--mix", choices=MIXES, required=True)
    p.add_argument("--warm", type=int, default=100)
    p.add_argument("--requests", type=int, default=1000)
    args = p.parse_args()
    result = measure(args.kind, args.bin, args.data, args.mix, args.warm, args.requests)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
