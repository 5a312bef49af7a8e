"""Throughput and latency of POST /predict with tracing off, on at 1 % and on
at 100 % sampling (standard library + wrk).

    bench/trace_load.sh [--mix short|corpus] [--duration 10] [--runs 3] [--connections 32]

Per run, the three settings in turn (off, 1 %, 100 %, off, ...: interleaved so
a drift of the machine's load spreads over all three), each on a fresh
release nbserve serving the shipped model:

- off: `trace.enabled` false (the default);
- 1 % and 100 %: `NBSERVE__TRACE__ENABLED=true`,
  `OTEL_TRACES_SAMPLER=parentbased_traceidratio` with ratio 0.01 or 1, spans
  exported over OTLP/HTTP to a sink in this process that answers 200 to every
  export (an empty ExportTraceServiceResponse) and counts what it received.

wrk (`bench/post.lua`, real documents of `--data`: `short` sends each mail's
Subject line, `corpus` the whole mail) drives `/predict` for `--duration`
seconds after a 1 s warm-up. Prints, per setting, the median over runs of
requests/s and p50/p99 latency, failed requests (wrk's socket errors and
non-2xx) summed, and the spans the server reported exported
(`nbserve_trace_spans_exported_total`) and dropped.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from request_instructions import ROOT, _command, _free_port, _wait_ready, bodies  # noqa: E402

SETTINGS = (("off", None), ("1 %", "0.01"), ("100 %", "1"))
FAILURES = ("errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout")


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces endpoint that accepts everything."""

    exports = 0
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        with Sink.lock:
            Sink.exports += 1
            Sink.received += n
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


def metric(port: int, name: str) -> float:
    """The sum of every series of `name` in the server's /metrics."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def measure(binary: Path, ratio: str | None, sink_port: int, body_file: Path,
            duration: int, connections: int) -> dict:
    port = _free_port()
    cmd, env = _command("nbserve", binary, port)
    for key in [k for k in env if k.startswith("OTEL_")]:
        del env[key]
    if ratio is not None:
        env.update({
            "NBSERVE__TRACE__ENABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": ratio,
            "OTEL_SERVICE_NAME": "nbserve-trace-load",
        })
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(port, server)
        wrk = ["wrk", "-t2", f"-c{connections}", "--timeout", "10s", "-s",
               str(ROOT / "bench" / "post.lua"), f"http://127.0.0.1:{port}/predict"]
        wrk_env = {**os.environ, "BODIES": str(body_file)}
        subprocess.run([*wrk[:3], "-d1s", *wrk[3:]], env=wrk_env, check=True, capture_output=True)
        out = subprocess.run([*wrk[:3], f"-d{duration}s", *wrk[3:]], env=wrk_env, check=True,
                             capture_output=True, text=True).stdout
        summary = json.loads(out.strip().splitlines()[-1])
        # The exporter sends what is queued every few seconds: wait for it.
        time.sleep(6 if ratio else 0)
        summary["failed"] = sum(summary[k] for k in FAILURES)
        summary["exported"] = metric(port, "nbserve_trace_spans_exported_total")
        summary["dropped"] = metric(port, "nbserve_trace_spans_dropped_total")
        return summary
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", type=Path, required=True, help="release nbserve")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "spamassassin.csv")
    p.add_argument("--mix", choices=("short", "corpus"), default="short")
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args()

    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    results: dict[str, list[dict]] = {name: [] for name, _ in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "bodies.jsonl"
        body_file.write_bytes(b"\n".join(bodies(args.data, args.mix)) + b"\n")
        for run in range(args.runs):
            for name, ratio in SETTINGS:
                r = measure(args.bin, ratio, sink.server_address[1], body_file,
                            args.duration, args.connections)
                results[name].append(r)
                print(f"run {run + 1} tracing {name}: {r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                      f"p99 {r['p99_ms']:.2f} ms, failed {r['failed']}, spans exported {r['exported']:.0f}, "
                      f"dropped {r['dropped']:.0f}", file=sys.stderr)
    sink.shutdown()

    print(f"\nPOST /predict, {args.mix} mix of {args.data.name}, wrk -t2 -c{args.connections}, "
          f"{args.duration} s, median of {args.runs} interleaved runs")
    print("\n| tracing | req/s | vs off | p50 ms | p99 ms | failed | spans exported (sum) | dropped |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    off = statistics.median(r["rps"] for r in results["off"])
    for name, _ in SETTINGS:
        rs = results[name]
        rps = statistics.median(r["rps"] for r in rs)
        print(f"| {name} | {rps:,.0f} | {rps / off - 1:+.1%} | "
              f"{statistics.median(r['p50_ms'] for r in rs):.2f} | "
              f"{statistics.median(r['p99_ms'] for r in rs):.2f} | {sum(r['failed'] for r in rs)} | "
              f"{sum(r['exported'] for r in rs):,.0f} | {sum(r['dropped'] for r in rs):,.0f} |")
    print(f"\nthe sink received {Sink.exports} exports, {Sink.received:,} bytes")
    failed = sum(r["failed"] for rs in results.values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
