"""Steady /predict traffic for the retrain and MLflow suites: every answer that is
not a 200 (or a connection error) is a failure, and each answer's
`model_version` is recorded so the switch v1 → v2 → v1 is seen from the
clients' side (a change is what one client saw change, see `record`).

    python3 load.py URL TEXTS_CSV STOP_FILE OUT_JSON [--threads 2] [--max-secs 300]

Runs until STOP_FILE exists (or --max-secs: bounded in any case), then writes
OUT_JSON: {"requests", "failures", "errors": [...first 10], "rps",
"versions": [[version, first_seen_unix, count], ...] in order of change}.
Keep-alive connections (http.client), one per thread; a broken connection is
counted as a failure and reopened.
"""
import argparse
import csv
import http.client
import json
import os
import threading
import time
from urllib.parse import urlparse


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("texts")
    p.add_argument("stop")
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-secs", type=float, default=300)
    a = p.parse_args()
    u = urlparse(a.url)
    texts = [r["text"] for r in csv.DictReader(open(a.texts, newline="", encoding="utf-8"))]
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    lock = threading.Lock()
    state = {"requests": 0, "failures": 0, "errors": [], "changes": []}
    deadline = time.monotonic() + a.max_secs

    def record(version, own_last, err=None):
        """Counts one answer; `own_last` is the version this thread saw last.
        A change is what one client saw change: threads record in whatever
        order the GIL lets them, so an answer v1 that left the server before
        the swap may be recorded after another thread's v2; across threads
        that is no change, within one thread (requests in sequence) it is."""
        with lock:
            state["requests"] += 1
            if err is not None:
                state["failures"] += 1
                if len(state["errors"]) < 10:
                    state["errors"].append(err)
                return
            ch = state["changes"]
            if not ch or (version != own_last and ch[-1][0] != version):
                ch.append([version, time.time(), 0])
            # Counted with the latest change to its version.
            next(c for c in reversed(ch) if c[0] == version)[2] += 1

    def worker(k):
        conn = None
        last = None
        i = k
        while not os.path.exists(a.stop) and time.monotonic() < deadline:
            # Steady, not flat out: the retrain beside it needs the CPU too.
            time.sleep(0.001)
            body = bodies[i % len(bodies)]
            i += a.threads
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    record(None, last, f"HTTP {resp.status}: {data[:200]!r}")
                else:
                    version = json.loads(data)["model_version"]
                    record(version, last)
                    last = version
            except (OSError, http.client.HTTPException, ValueError, KeyError) as err:
                record(None, last, f"{type(err).__name__}: {err}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    out = {"requests": state["requests"], "failures": state["failures"], "errors": state["errors"],
           "secs": round(secs, 2), "rps": round(state["requests"] / secs, 1) if secs else 0,
           "versions": state["changes"]}
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
