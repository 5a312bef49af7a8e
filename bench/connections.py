#!/usr/bin/env python3
"""Connections (issue #20): RSS and /health latency with thousands of idle
connections, and with a client that pipelines requests and never reads.

  bench/connections.py [--binary path/to/nbserve] [--idle 2000] [--pipelined 2000] [--port 18393]

Starts `nbserve serve` (the shipped model) on 127.0.0.1, then:
1. opens IDLE connections that send nothing (each is closed by the server
   after server.header_read_timeout_ms, 10 s; the measurement is taken
   before that) and probes /health 50 times;
2. one connection writes PIPELINED `GET /metrics` requests and never reads
   (the server's writes stall; server.write_timeout_ms, 10 s, closes it),
   probing /health meanwhile.
Reports VmRSS before and during each phase, peak RSS (VmHWM) and /health
p50 / max. Exit status 1 if a /health probe failed. Linux only; stdlib only.
"""

import argparse
import json
import resource
import socket
import statistics
import sys
import time

from body_budget import request
from feedback import Server, release_binary, rss_kib


def probe(port, n=50):
    times, failed = [], 0
    for _ in range(n):
        started = time.perf_counter()
        try:
            ok = request(port, "GET", "/health", timeout=5) == 200
        except OSError:
            ok = False
        times.append((time.perf_counter() - started) * 1000)
        failed += not ok
        time.sleep(0.01)
    return {"p50_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2), "failed": failed}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", help="nbserve binary (default: the release build)")
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--pipelined", type=int, default=2000)
    parser.add_argument("--port", type=int, default=18393)
    args = parser.parse_args()
    args.binary = args.binary or release_binary()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.idle + 256)), hard))
    server = Server(args.binary, port=args.port)
    result = {}
    try:
        result["rss_start_kb"] = rss_kib(server.proc.pid)
        result["health_alone"] = probe(args.port)

        started = time.time()
        idle = [socket.create_connection(("127.0.0.1", args.port)) for _ in range(args.idle)]
        time.sleep(0.5)
        result["idle_connections"] = len(idle)
        result["idle_open_secs"] = round(time.time() - started, 1)
        result["rss_with_idle_kb"] = rss_kib(server.proc.pid)
        result["health_with_idle"] = probe(args.port)
        for s in idle:
            s.close()
        time.sleep(0.5)

        # A client that pipelines scrapes and never reads: the server's
        # socket buffer fills and its writes stall.
        stuck = socket.create_connection(("127.0.0.1", args.port))
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.setblocking(False)
        sent = 0
        payload = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * args.pipelined
        end = time.time() + 3
        while sent < len(payload) and time.time() < end:
            try:
                sent += stuck.send(payload[sent:])
            except BlockingIOError:
                time.sleep(0.01)
        result["pipelined_bytes_sent"] = sent
        result["rss_with_unread_kb"] = rss_kib(server.proc.pid)
        result["health_with_unread"] = probe(args.port)
        stuck.close()
        result["peak_rss_kb"] = rss_kib(server.proc.pid, "VmHWM")
    finally:
        server.stop()
    print(json.dumps(result))
    failed = sum(result[k]["failed"] for k in result if k.startswith("health_"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
