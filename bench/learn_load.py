#!/usr/bin/env python3
"""Learning in place under load (standard library + wrk).

    bench/learn_load.py --bin "${CARGO_TARGET_DIR:-target}/release/nbserve" [--base-rows 600]
                        [--duration 90] [--connections 16] [--batch 200]

1. Splits data/spamassassin.csv 80/20 (seed 42) with `nbserve split`; the
   training part, shuffled (seed 42), gives the base (its first --base-rows
   rows) and the labelled stream (the rest). Trains the champion on the base with `--statistics
   --test-data` (alpha 0.01, min_df 2), and the same model without
   `--statistics` to give the artifact size before and after schema 3.
2. Serves the champion (127.0.0.1, a free port; learning on, the test part as
   `gate.holdout_path`, an admin token, the versions kept in model.dir).
3. wrk drives POST /predict with the test part's texts for --duration
   seconds; meanwhile the stream goes, --batch rows at a time, through
   POST /predict/batch (the champion predicts it, the challenger shadow
   scores it), POST /feedback/batch (its labels) and then POST /learn (so
   every label judges predictions made before the model learned it).
4. Still under load: GET /challenger (and its live comparison when the
   server has one), both models' F1 macro on the holdout, the promotion
   (POST /admin/challenger/promote), then `nbserve rollback` + POST
   /admin/reload, checking the served version each time.
5. Prints requests, failed requests (wrk's socket errors + non-2xx; must be
   0), learn throughput (examples per second of POST /learn wall time), the
   challenger's memory (`learned_bytes`, and the server's RSS growth) and the
   artifact sizes. Exit 1 when a step fails or a request failed.
Everything started is stopped on exit.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "learn-load-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def read_rows(path: Path) -> list[tuple[str, str]]:
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def write_rows(path: Path, rows) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def call(self, method: str, path: str, body=None, token: str | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers=headers)
        answer = self.conn.getresponse()
        raw = answer.read()
        self.last_bytes = len(raw)
        return answer.status, (json.loads(raw) if raw else {})

    def ok(self, method: str, path: str, body=None, token: str | None = None) -> dict:
        status, answer = self.call(method, path, body, token)
        if not 200 <= status < 300:
            raise SystemExit(f"learn_load: {method} {path} answered {status}: {json.dumps(answer)[:400]}")
        return answer


def batches(rows, most: int, body_bytes: int = 1_500_000):
    """`rows` in batches of at most `most` rows whose JSON stays under the
    server's default body limit (2 MiB; escaping at worst doubles a text)."""
    batch, size = [], 0
    for row in rows:
        n = 2 * len(row[0].encode()) + 64
        if batch and (len(batch) == most or size + n > body_bytes):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += n
    if batch:
        yield batch


def nbserve(binary: Path, env: dict, *args) -> str:
    done = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"learn_load: nbserve {args[0]} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return done.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "spamassassin.csv")
    ap.add_argument("--base-rows", type=int, default=600)
    ap.add_argument("--duration", type=int, default=90, help="seconds of /predict load")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--batch", type=int, default=200, help="most stream rows per /learn")
    ap.add_argument("--request-timeout-ms", type=int, default=0,
                    help="server.request_timeout_ms (0: the default; a debug build needs more to promote)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="learn-load-"))
    models = work / "models"
    models.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBSERVE__")}
    train, test = work / "train.csv", work / "test.csv"
    nbserve(args.bin, env, "split", "--data", args.data, "--train-out", train, "--test-out", test,
            "--test-size", "0.2", "--seed", "42")
    rows = read_rows(train)
    # The split writes rows grouped by label: shuffle, so base and stream hold both.
    random.Random(42).shuffle(rows)
    base, stream = rows[: args.base_rows], rows[args.base_rows:]
    write_rows(work / "base.csv", base)
    champion = models / "spam-nb.json"
    fit = ["--data", work / "base.csv", "--test-data", test, "--alpha", "0.01", "--min-df", "2",
           "--name", "spam-nb", "--model-version", "1"]
    nbserve(args.bin, env, "train", *fit, "--out", work / "schema2.json")
    nbserve(args.bin, env, "train", *fit, "--statistics", "--out", champion)
    size2, size3 = (work / "schema2.json").stat().st_size, champion.stat().st_size

    port = free_port()
    env.update({
        "NBSERVE__SERVER__HOST": "127.0.0.1",
        "NBSERVE__SERVER__PORT": str(port),
        "NBSERVE__MODEL__PATH": str(champion),
        "NBSERVE__MODEL__DIR": str(models),
        "NBSERVE__LEARNING__ENABLED": "true",
        "NBSERVE__GATE__HOLDOUT_PATH": str(test),
        "NBSERVE__ADMIN__TOKEN": TOKEN,
        "NBSERVE__LOG__FORMAT": "json",
    })
    if args.request_timeout_ms:
        env["NBSERVE__SERVER__REQUEST_TIMEOUT_MS"] = str(args.request_timeout_ms)
    log = open(work / "server.log", "wb")
    server = subprocess.Popen([str(args.bin), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    wrk = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                Client(port).ok("GET", "/ready")
                break
            except (OSError, SystemExit):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"learn_load: the server did not start (log: {work / 'server.log'})")
                time.sleep(0.1)
        client = Client(port)
        rss_before = kib(server.pid, "VmRSS")

        bodies = work / "bodies.jsonl"
        with bodies.open("w", encoding="utf-8") as f:
            for text, _ in read_rows(test):
                if text.strip():
                    f.write(json.dumps({"text": text}) + "\n")
        wrk = subprocess.Popen(
            ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "10s",
             "-s", str(ROOT / "bench" / "post.lua"), f"http://127.0.0.1:{port}/predict"],
            env={**os.environ, "BODIES": str(bodies)}, stdout=subprocess.PIPE, text=True)
        started = time.monotonic()
        time.sleep(2)
        rss_loaded = kib(server.pid, "VmRSS")

        learn_secs, learned = 0.0, 0
        for chunk in batches(stream, args.batch):
            predicted = client.ok("POST", "/predict/batch", {"texts": [t for t, _ in chunk]})
            ids = [p["prediction_id"] for p in predicted["predictions"]]
            client.ok("POST", "/feedback/batch",
                      {"items": [{"prediction_id": p, "label": label} for p, (_, label) in zip(ids, chunk)]})
            t0 = time.perf_counter()
            client.ok("POST", "/learn", {"examples": [{"text": t, "label": label} for t, label in chunk]})
            learn_secs += time.perf_counter() - t0
            learned += len(chunk)
        stream_secs = time.monotonic() - started

        status = client.ok("GET", "/challenger")
        rss_learned = kib(server.pid, "VmRSS")
        champion_f1 = client.ok("GET", "/model")["evaluation"]["f1_macro"]
        artifact_status, artifact = client.call("GET", "/challenger/artifact")
        assert artifact_status == 200, artifact
        challenger_bytes = client.last_bytes
        promoted = client.ok("POST", "/admin/challenger/promote", {}, token=TOKEN)
        served = client.ok("GET", "/ready")["model_version"]
        promoted_size = champion.stat().st_size
        nbserve(args.bin, env, "rollback")
        client.ok("POST", "/admin/reload", {}, token=TOKEN)
        rolled_back = client.ok("GET", "/ready")["model_version"]
        steps_secs = time.monotonic() - started

        out, _ = wrk.communicate(timeout=args.duration + 120)
        wrk = None
        summary = json.loads(out.strip().splitlines()[-1])
        failed = sum(summary[k] for k in
                     ("errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout"))
    finally:
        if wrk is not None:
            wrk.kill()
            wrk.wait()
        server.terminate()
        server.wait(30)
        log.close()

    live = status.get("live")
    holdout = status.get("holdout")
    print(f"learn_load: {args.data.name}: champion on {len(base)} rows (alpha 0.01, min_df 2, --statistics), "
          f"stream of {len(stream)} labelled rows, the test part as holdout; server log {work / 'server.log'}")
    print(f"/predict load: wrk, {args.connections} connections, {args.duration} s: "
          f"{summary['requests']:,} requests, {summary['rps']:,.0f}/s, p50 {summary['p50_ms']:.2f} ms, "
          f"p99 {summary['p99_ms']:.2f} ms, failed {failed}")
    print(f"stream: {learned:,} examples through /predict/batch + /feedback/batch + /learn in {stream_secs:.1f} s; "
          f"learn throughput {learned / learn_secs:,.0f} examples/s ({learn_secs:.1f} s in /learn, "
          f"batches of at most {args.batch})")
    print(f"challenger: learned {status['learned']:,}, vocabulary {status['vocabulary_size']:,}, "
          f"learned_bytes {status['learned_bytes']:,}, shadow agreement "
          f"{status['shadow_agreed']:,}/{status['shadow_scored']:,}; server RSS {rss_before / 1024:.1f} MiB idle, "
          f"{rss_loaded / 1024:.1f} MiB under load before learning, {rss_learned / 1024:.1f} MiB after")
    if live:
        print(f"live F1 macro on {live['labels']:,} labelled predictions: champion {live['champion_f1_macro']}, "
              f"challenger {live['challenger_f1_macro']}")
    else:
        print("live F1 macro: this server's GET /challenger has no live comparison")
    if holdout:
        print(f"GET /challenger holdout F1 macro: {json.dumps(holdout)}")
    print(f"holdout F1 macro: champion {champion_f1:.4f}, challenger {artifact['evaluation']['f1_macro']:.4f}")
    print(f"promoted: version {promoted['version']} (F1 {promoted['f1_macro']:.4f} vs "
          f"{promoted['replaced_f1_macro']:.4f}), served {served}; rolled back: served {rolled_back}; "
          f"all within {steps_secs:.1f} s of load")
    print(f"artifact: {size2:,} bytes schema 2, {size3:,} bytes schema 3 (champion); challenger "
          f"{challenger_bytes:,} bytes (GET /challenger/artifact), promoted file {promoted_size:,} bytes")
    problems = []
    if failed:
        problems.append(f"{failed} failed requests")
    if steps_secs > args.duration:
        problems.append(f"the scenario took {steps_secs:.0f} s, longer than the {args.duration} s of load")
    if promoted["f1_macro"] <= promoted["replaced_f1_macro"]:
        problems.append("the challenger did not beat the champion")
    if rolled_back != "1":
        problems.append(f"rollback served {rolled_back}, not the champion")
    for p in problems:
        print(f"learn_load: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
