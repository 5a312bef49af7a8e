#!/usr/bin/env python3
"""Memory per kept prediction text (feedback.keep_text), standard library only.

    bench/kept_text.py [--bin path/to/nbserve] [--n 50000] [--lengths 20,100,500] [--runs 3]

For each text length L, starts nbserve twice (127.0.0.1, a free port,
feedback.capacity = --n, a temporary feedback.log_path):

  1. feedback.keep_text = true (text_budget_bytes large enough for all texts);
  2. feedback.keep_text = false (control),

sends the same --n distinct texts of L bytes through /predict/batch (1,000 per
request) after a 1,000-text warm-up, and reads VmRSS before and after. Both
processes did the same work; only the kept texts differ, so

    bytes per kept text  = (RSS growth 1 - RSS growth 2) / --n
    overhead per text    = bytes per kept text - L

It also checks that nbserve_feedback_kept_text_bytes equals --n * L (every
text kept, exactly). Prints one line per run and the medians as JSON.
Everything started is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import feedback as fb  # noqa: E402  (Server, release_binary, rss_kib: one implementation)


def texts(start: int, count: int, length: int) -> list[str]:
    return [(f"{i:09d} " + "word " * length)[:length] for i in range(start, start + count)]


def predict(s: fb.Server, start: int, count: int, length: int) -> None:
    c = s.conn()
    for at in range(start, start + count, 1000):
        st, body = s.request("POST", "/predict/batch",
                             {"texts": texts(at, min(1000, start + count - at), length)}, conn=c)
        assert st == 200, (st, body[:200])
    c.close()


def kept_bytes(s: fb.Server) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{s.port}/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("nbserve_feedback_kept_text_bytes "):
                return int(float(line.split()[1]))
    raise RuntimeError("no nbserve_feedback_kept_text_bytes")


def growth(binary: str, n: int, length: int, keep: bool) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as d:
        extra = {"NBSERVE__FEEDBACK__KEEP_TEXT": "true" if keep else "false",
                 "NBSERVE__FEEDBACK__TEXT_BUDGET_BYTES": str(4 * n * length + (1 << 20))}
        s = fb.Server(binary, n, Path(d) / "feedback.jsonl", settings=extra)
        try:
            predict(s, 0, 1000, length)  # warm-up; its texts are dropped by the ring below
            before = fb.settle_rss(s.proc.pid)
            predict(s, 1000, n, length)
            after = fb.settle_rss(s.proc.pid)
            return (after - before) * 1024, kept_bytes(s)
        finally:
            s.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", help="nbserve binary (default: the release build)")
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--lengths", default="20,100,500")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    binary = args.bin or fb.release_binary()
    results = {}
    for length in (int(x) for x in args.lengths.split(",")):
        per_text = []
        for run in range(args.runs):
            kept, kept_metric = growth(binary, args.n, length, True)
            control, none_metric = growth(binary, args.n, length, False)
            assert kept_metric == args.n * length, (kept_metric, args.n * length)
            assert none_metric == 0, none_metric
            b = (kept - control) / args.n
            per_text.append(b)
            print(f"L={length} run {run + 1}: {b:.1f} bytes per kept text "
                  f"(overhead {b - length:.1f}); RSS growth {kept / 1e6:.1f} MB vs {control / 1e6:.1f} MB",
                  flush=True)
        med = statistics.median(per_text)
        results[length] = {"bytes_per_text_median": round(med, 1),
                           "overhead_median": round(med - length, 1),
                           "runs": [round(x, 1) for x in per_text]}
    print(json.dumps({"n": args.n, "by_length": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
