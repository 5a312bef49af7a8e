#!/usr/bin/env python3
"""Memory per remembered prediction and feedback throughput (standard library only).

    bench/feedback.py [--bin path/to/nbserve] [--n 100000] [--single 20000]
                      [--clients 4] [--log] [--runs 3]

Starts nbserve (127.0.0.1, a free port, feedback.capacity = --n) twice:

  1. capacity --n: --n predictions through /predict/batch (1,000 short texts per
     request); RSS (VmRSS) before and after; then feedback for them: first
     through /feedback/batch (1,000 items per request), then --single of them
     through /feedback from --clients threads (keep-alive connections).
  2. capacity 1 (control): the same predictions, so the RSS growth that is not
     the prediction memory (allocator, histograms, buffers) cancels out.

Memory per remembered prediction = (RSS after 1 - RSS after 2) / --n: both
processes did the same work, only the prediction memory differs. (The RSS
growth during the run alone underestimates it: the id table is allocated at
start-up and part of it is already resident after the warm-up.)
Throughput is wall-clock; "server CPU" is the server's user+sys time
(/proc/PID/stat) per feedback, which does not depend on the Python client.
With --log, feedback.log_path is set (a temporary file) to include the
JSON-lines append. Everything started is stopped on exit.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's memory figure from /proc, in KiB: `VmRSS` now, `VmHWM` its peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


class Server:
    """`nbserve serve` on 127.0.0.1 (PORT, or a free one), ready when built;
    `settings` are more NBSERVE__* variables for it."""

    def __init__(self, binary: str, capacity: int | None = None, log: Path | None = None,
                 settings: dict[str, str] | None = None, port: int | None = None):
        self.port = port or free_port()
        env = dict(os.environ,
                   NBSERVE__SERVER__HOST="127.0.0.1",
                   NBSERVE__SERVER__PORT=str(self.port),
                   NBSERVE__LOG__LEVEL="warn")
        if capacity is not None:
            env["NBSERVE__FEEDBACK__CAPACITY"] = str(capacity)
        if log:
            env["NBSERVE__FEEDBACK__LOG_PATH"] = str(log)
        env.update(settings or {})
        self.proc = subprocess.Popen([binary, "serve"], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nbserve exited with {self.proc.returncode}")
            try:
                st, _ = self.request("GET", "/ready")
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nbserve not ready after 30 s")

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, method: str, path: str, body=None, conn=None):
        c = conn or self.conn()
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        payload = r.read()
        if conn is None:
            c.close()
        return r.status, payload

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def predict(server: Server, n: int) -> list[str]:
    ids: list[str] = []
    c = server.conn()
    for start in range(0, n, 1000):
        texts = [f"message {i} about the quarterly meeting" for i in range(start, min(n, start + 1000))]
        st, body = server.request("POST", "/predict/batch", {"texts": texts}, conn=c)
        assert st == 200, (st, body[:200])
        ids.extend(p["prediction_id"] for p in json.loads(body)["predictions"])
    c.close()
    return ids


def settle_rss(pid: int) -> int:
    time.sleep(0.5)
    return rss_kib(pid)


def run(args, capacity: int, log: Path | None, feedback: bool) -> dict:
    s = Server(args.bin, capacity, log)
    try:
        predict(s, 1000)  # warm-up: first-use allocations outside the measurement
        before = settle_rss(s.proc.pid)
        ids = predict(s, args.n)
        after = settle_rss(s.proc.pid)
        out = {"rss_before_kib": before, "rss_after_kib": after}
        if not feedback:
            return out
        # /feedback/batch
        n_batch = len(ids) - args.single
        c = s.conn()
        t0, cpu0 = time.perf_counter(), cpu_s(s.proc.pid)
        accepted = 0
        for start in range(0, n_batch, 1000):
            items = [{"prediction_id": i, "label": "ham"} for i in ids[start:min(start + 1000, n_batch)]]
            st, body = s.request("POST", "/feedback/batch", {"items": items}, conn=c)
            assert st == 202, (st, body[:200])
            accepted += json.loads(body)["accepted"]
        t1, cpu1 = time.perf_counter(), cpu_s(s.proc.pid)
        c.close()
        assert accepted == n_batch, (accepted, n_batch)
        out["batch"] = {"feedbacks": n_batch, "seconds": t1 - t0,
                        "per_second": n_batch / (t1 - t0),
                        "server_cpu_us_per_feedback": (cpu1 - cpu0) / n_batch * 1e6}
        # /feedback, one item per request, --clients keep-alive connections
        single = ids[n_batch:]
        shares = [single[k::args.clients] for k in range(args.clients)]
        errors: list[str] = []

        def client(mine: list[str]) -> None:
            conn = s.conn()
            try:
                for i in mine:
                    st, body = s.request("POST", "/feedback", {"prediction_id": i, "label": "ham"}, conn=conn)
                    if st != 202:
                        errors.append(f"{st} {body[:100]!r}")
                        return
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(m,)) for m in shares]
        t0, cpu0 = time.perf_counter(), cpu_s(s.proc.pid)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t1, cpu1 = time.perf_counter(), cpu_s(s.proc.pid)
        assert not errors, errors[:3]
        out["single"] = {"feedbacks": len(single), "clients": args.clients, "seconds": t1 - t0,
                         "per_second": len(single) / (t1 - t0),
                         "server_cpu_us_per_feedback": (cpu1 - cpu0) / len(single) * 1e6}
        st, body = s.request("GET", "/model/quality")
        out["window_samples"] = json.loads(body)["samples"]
        if log:
            out["log_lines"] = sum(1 for _ in log.open())
        return out
    finally:
        s.stop()


def release_binary() -> str:
    """The release nbserve wherever cargo puts it (honours CARGO_TARGET_DIR)."""
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return str(Path(json.loads(meta)["target_directory"]) / "release" / "nbserve")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", help="nbserve binary (default: the release build)")
    ap.add_argument("--n", type=int, default=100_000, help="predictions remembered (= feedback.capacity)")
    ap.add_argument("--single", type=int, default=20_000, help="of them, labelled through /feedback")
    ap.add_argument("--clients", type=int, default=4, help="concurrent /feedback clients")
    ap.add_argument("--log", action="store_true", help="set feedback.log_path (a temporary file)")
    ap.add_argument("--runs", type=int, default=3, help="repetitions (medians are printed)")
    args = ap.parse_args()
    args.bin = args.bin or release_binary()
    if not Path(args.bin).is_file():
        print(f"{args.bin} missing: cargo build --release --bin nbserve", file=sys.stderr)
        return 1
    results = []
    for r in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "feedback.jsonl" if args.log else None
            full = run(args, args.n, log, feedback=True)
            control = run(args, 1, None, feedback=False)
        diff = full["rss_after_kib"] - control["rss_after_kib"]
        per = diff * 1024 / args.n
        b, s1 = full["batch"], full["single"]
        print(f"run {r + 1}: RSS {full['rss_after_kib']} KiB (capacity {args.n}) vs {control['rss_after_kib']} KiB "
              f"(capacity 1) -> {per:.0f} B per remembered prediction; "
              f"/feedback/batch {b['per_second']:,.0f}/s ({b['server_cpu_us_per_feedback']:.1f} us CPU); "
              f"/feedback {s1['per_second']:,.0f}/s ({s1['server_cpu_us_per_feedback']:.1f} us CPU)"
              + (f"; log lines {full['log_lines']}" if log else ""), flush=True)
        results.append({"full": full, "control": control, "bytes_per_remembered_prediction": per})

    def med(get) -> str:
        v = sorted(get(x) for x in results)
        fmt = (lambda x: f"{x:,.0f}") if v[0] >= 100 else (lambda x: f"{x:.1f}")
        return fmt(v[len(v) // 2]) + (f" (range {fmt(v[0])}-{fmt(v[-1])})" if len(v) > 1 else "")

    print(f"median of {args.runs} run(s), n={args.n}, log={'on' if args.log else 'off'}, clients={args.clients}:")
    print(f"  memory per remembered prediction: {med(lambda x: x['bytes_per_remembered_prediction'])} bytes")
    print(f"  /feedback/batch: {med(lambda x: x['full']['batch']['per_second'])} feedbacks/s, "
          f"server CPU {med(lambda x: x['full']['batch']['server_cpu_us_per_feedback'])} us per feedback")
    print(f"  /feedback:       {med(lambda x: x['full']['single']['per_second'])} feedbacks/s, "
          f"server CPU {med(lambda x: x['full']['single']['server_cpu_us_per_feedback'])} us per feedback")
    print(json.dumps({"n": args.n, "log": args.log, "clients": args.clients, "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
