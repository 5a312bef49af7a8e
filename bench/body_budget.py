#!/usr/bin/env python3
"""Memory admission by bytes (issue #20): peak RSS under concurrent maximum-size batches.

  bench/body_budget.py [--binary path/to/nbserve] [--clients 256]
                       [--budget 67108864] [--port 18391]

Starts `nbserve serve` on 127.0.0.1 with server.max_inflight_body_bytes =
BUDGET, then CLIENTS threads each POST one ~1.9 MB /predict/batch (950 texts,
just under the 2 MiB body limit) at once, while /health is probed every 50 ms.
Reports the answers by status, the server's peak RSS (VmHWM) and the slowest
/health. Pass: only 200 and 503 answers, every /health 200. Prints a JSON
summary; exit status 1 on failure. Linux only (reads /proc); stdlib only.
"""

import argparse
import collections
import http.client
import json
import sys
import threading
import time

# The release build wherever cargo puts it (CARGO_TARGET_DIR honoured).
from feedback import Server, release_binary, rss_kib


def request(port, method, path, body=None, timeout=300):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"} if body else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", help="nbserve binary (default: the release build)")
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--budget", type=int, default=64 * 1024 * 1024)
    parser.add_argument("--port", type=int, default=18391)
    args = parser.parse_args()
    args.binary = args.binary or release_binary()
    server = Server(
        args.binary,
        port=args.port,
        settings={
            "NBSERVE__SERVER__MAX_INFLIGHT_BODY_BYTES": str(args.budget),
            "NBSERVE__SERVER__REQUEST_TIMEOUT_MS": "300000",
        },
    )
    try:
        texts = [f"{i} " + "word free prize " * 130 for i in range(950)]
        body = json.dumps({"texts": texts}).encode()
        statuses = collections.Counter()
        lock = threading.Lock()
        probes = []
        done = threading.Event()

        def client():
            try:
                status = request(args.port, "POST", "/predict/batch", body)
            except OSError as e:
                status = type(e).__name__
            with lock:
                statuses[str(status)] += 1

        def prober():
            while not done.is_set():
                started = time.time()
                try:
                    status = request(args.port, "GET", "/health", timeout=10)
                except OSError:
                    status = 0
                probes.append((status, time.time() - started))
                time.sleep(0.05)

        probe = threading.Thread(target=prober)
        probe.start()
        clients = [threading.Thread(target=client) for _ in range(args.clients)]
        started = time.time()
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        done.set()
        probe.join()
        hwm_kb = rss_kib(server.proc.pid, "VmHWM")
    finally:
        server.stop()
    summary = {
        "clients": args.clients,
        "budget_bytes": args.budget,
        "body_bytes": len(body),
        "statuses": dict(statuses),
        "peak_rss_mb": round(hwm_kb / 1024, 1),
        "seconds": round(time.time() - started, 1),
        "health_ok": sum(1 for s, _ in probes if s == 200),
        "health_probes": len(probes),
        "health_slowest_ms": round(max(d for _, d in probes) * 1000),
    }
    print(json.dumps(summary))
    ok = set(statuses) <= {"200", "503"} and summary["health_ok"] == len(probes)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
