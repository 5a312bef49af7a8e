#!/usr/bin/env python3
"""CPU fairness (issue #20): /health latency while clients send 1 MB texts with `explain`.

  bench/fairness.py [--binary path/to/nbserve] [--clients 16] [--seconds 20] [--port 18392]

Starts `nbserve serve` (the shipped model) on 127.0.0.1, measures /health
alone for a few seconds (baseline), then CLIENTS threads each loop POSTing
one /predict with a ~1 MB text and "explain": true for SECONDS while /health
is probed every 20 ms. Large single texts are scored on the blocking pool
behind the per-core batch slots, so /health should stay near its baseline.
Prints a JSON summary (health p50 / p99 / max in ms, requests by status,
peak RSS); exit status 1 if any /health probe failed or any answer was a 5xx
other than 503. Linux only (reads /proc); stdlib only.
"""

import argparse
import collections
import json
import os
import statistics
import sys
import threading
import time

from body_budget import request
from feedback import Server, release_binary, rss_kib


def probe_health(port, stop, samples):
    while not stop.is_set():
        started = time.perf_counter()
        try:
            status = request(port, "GET", "/health", timeout=10)
        except OSError:
            status = 0
        samples.append((status, time.perf_counter() - started))
        time.sleep(0.02)


def percentiles(samples):
    ms = sorted(d * 1000 for _, d in samples)
    at = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
    return {
        "probes": len(ms),
        "failed": sum(1 for s, _ in samples if s != 200),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(at(0.99), 2),
        "max_ms": round(ms[-1], 2),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", help="nbserve binary (default: the release build)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--port", type=int, default=18392)
    args = parser.parse_args()
    args.binary = args.binary or release_binary()
    server = Server(
        args.binary, port=args.port, settings={"NBSERVE__SERVER__REQUEST_TIMEOUT_MS": "120000"}
    )
    try:
        stop = threading.Event()
        baseline = []
        prober = threading.Thread(target=probe_health, args=(args.port, stop, baseline))
        prober.start()
        time.sleep(3)
        stop.set()
        prober.join()

        # ~1 MB of varied words, just under server.max_text_bytes (1,000,000).
        words = [f"w{i % 5000} free prize meeting" for i in range(40_000)]
        text = " ".join(words)[:999_000]
        body = json.dumps({"text": text, "explain": True}).encode()
        statuses = collections.Counter()
        lock = threading.Lock()
        stop = threading.Event()

        def client():
            while not stop.is_set():
                try:
                    status = request(args.port, "POST", "/predict", body, timeout=120)
                except OSError as e:
                    status = type(e).__name__
                with lock:
                    statuses[str(status)] += 1

        loaded = []
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(1)  # let every client have a request in flight
        prober = threading.Thread(target=probe_health, args=(args.port, stop, loaded))
        prober.start()
        time.sleep(args.seconds)
        stop.set()
        prober.join()
        for t in threads:
            t.join()
        hwm_kb = rss_kib(server.proc.pid, "VmHWM")
    finally:
        server.stop()
    summary = {
        "clients": args.clients,
        "text_bytes": len(text.encode()),
        "seconds": args.seconds,
        "statuses": dict(statuses),
        "health_alone": percentiles(baseline),
        "health_under_load": percentiles(loaded),
        "peak_rss_mb": round(hwm_kb / 1024, 1),
        "load_average_1m": os.getloadavg()[0],
    }
    print(json.dumps(summary))
    ok = summary["health_under_load"]["failed"] == 0 and all(
        s in ("200", "503") for s in statuses
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
