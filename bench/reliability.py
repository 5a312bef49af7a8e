#!/usr/bin/env python3
"""Load driver for bench/reliability.sh and bench/soak.sh (Python stdlib only).

  reliability.py reload  --port P --token T --valid a.json=v1,... --invalid c.json,...
  reliability.py sigterm --port P --pid PID
  reliability.py soak    --port P --token T --seconds N --valid a.json=v1,... [--rss-pid PID]

reload:  CONNS keep-alive clients POST /predict for DURATION s while RELOADS
         reloads go to /admin/reload, cycling through valid and invalid
         artifacts. Every request must answer 200 with a model_version of a
         valid artifact; valid reloads must answer 200, invalid ones 422.
sigterm: CONNS clients each open a fresh connection per request
         (connection: close) for BEFORE s, then SIGTERM goes to PID and they
         go on for AFTER s. Every request fully sent before the signal must
         get a complete 200; after it, connections must be refused (or, if
         accepted just before the listener closed, answered).
soak:    mixed traffic (predict, batch, feedback, deliberate bad requests),
         a reload every RELOAD_EVERY s; only the documented answers count as
         success. RSS of --rss-pid at the start and the end.

Prints a JSON summary on stdout; exit status 1 if anything failed.
Only ever talks to 127.0.0.1.
"""

import argparse
import csv
import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time

HOST = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def texts(n=400):
    path = os.path.join(ROOT, "tests", "data", "sample.csv")
    csv.field_size_limit(10**8)
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            t = row["text"].strip()
            if t:
                out.append(t[:4000])
            if len(out) >= n:
                break
    return out


def parse_pairs(spec):
    """"a.json=v1,b.json=v2" -> [("a.json", "v1"), ...]"""
    out = []
    for item in filter(None, (spec or "").split(",")):
        name, _, version = item.partition("=")
        out.append((name, version))
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.examples = []

    def add(self, key, example=None):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            if example is not None and len(self.examples) < 20:
                self.examples.append(example)


def post(conn, path, body, headers=None):
    h = {"content-type": "application/json"}
    h.update(headers or {})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", path, body=data, headers=h)
    r = conn.getresponse()
    return r.status, r.read()


# --- reload under load -----------------------------------------------------------

def run_reload(a):
    valid = parse_pairs(a.valid)
    invalid = [n for n in (a.invalid or "").split(",") if n]
    valid_versions = {v for _, v in valid} | set(a.initial_version.split(","))
    corpus = texts()
    stop = threading.Event()
    tally = Tally()
    versions = Tally()

    def client(i):
        conn = http.client.HTTPConnection(HOST, a.port, timeout=30)
        rnd = random.Random(i)
        while not stop.is_set():
            try:
                status, body = post(conn, "/predict", {"text": rnd.choice(corpus)})
            except (OSError, http.client.HTTPException) as e:
                tally.add("error", f"client {i}: {type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(HOST, a.port, timeout=30)
                continue
            if status != 200:
                tally.add("failed", f"client {i}: HTTP {status} {body[:200]!r}")
                continue
            v = json.loads(body).get("model_version")
            versions.add(v)
            if v in valid_versions:
                tally.add("ok")
            else:
                tally.add("wrong_version", f"client {i}: served {v!r}")
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(a.conns)]
    started = time.monotonic()
    for t in threads:
        t.start()
    # Alternate valid and invalid artifacts: v, bad, v, bad, ...
    plan = []
    vi = ii = 0
    for k in range(a.reloads):
        if k % 2 == 0 or not invalid:
            plan.append(("valid",) + valid[vi % len(valid)])
            vi += 1
        else:
            plan.append(("invalid", invalid[ii % len(invalid)], None))
            ii += 1
    reloads = Tally()
    admin = http.client.HTTPConnection(HOST, a.port, timeout=60)
    auth = {"authorization": f"Bearer {a.token}"}
    serving = None
    for k, (kind, name, version) in enumerate(plan):
        time.sleep(max(0.0, started + (k + 1) * a.duration / (a.reloads + 1) - time.monotonic()))
        status, body = post(admin, "/admin/reload", {"path": name}, auth)
        if kind == "valid" and status == 200 and json.loads(body)["version"] == version:
            reloads.add("valid_swapped")
            serving = version
        elif kind == "invalid" and status == 422:
            reloads.add("invalid_refused:" + json.loads(body)["error"]["code"])
        else:
            reloads.add("unexpected", f"reload {name}: HTTP {status} {body[:200]!r}")
        # The served model is the last valid one, whatever was refused since.
        admin.request("GET", "/model")
        current = json.loads(admin.getresponse().read()).get("version")
        if serving is not None and current != serving:
            reloads.add("unexpected", f"after {name}: /model says {current}, expected {serving}")
    time.sleep(max(0.0, started + a.duration - time.monotonic()))
    stop.set()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - started
    c = tally.counts
    sent = sum(c.values())
    failed = sent - c.get("ok", 0)
    summary = {
        "phase": "reload under load",
        "connections": a.conns,
        "seconds": round(elapsed, 1),
        "requests_sent": sent,
        "requests_ok": c.get("ok", 0),
        "requests_failed": failed,
        "failure_kinds": {k: v for k, v in c.items() if k != "ok"},
        "requests_per_second": round(sent / elapsed),
        "reloads": reloads.counts,
        "versions_served": versions.counts,
        "valid_versions": sorted(valid_versions),
        "examples": tally.examples + reloads.examples,
    }
    ok = failed == 0 and "unexpected" not in reloads.counts
    return summary, ok


# --- SIGTERM under load ----------------------------------------------------------

def one_request(port, body):
    """Fresh connection, one request. Returns (phase, t_connected, t_sent, outcome)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(60)
    t_connected = t_sent = None
    try:
        s.connect((HOST, port))
        t_connected = time.monotonic()
        req = (
            f"POST /predict HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body
        s.sendall(req)
        t_sent = time.monotonic()
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, payload = data.partition(b"\r\n\r\n")
        if not head:
            return t_connected, t_sent, "closed_without_answer", time.monotonic()
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            return t_connected, t_sent, f"http_{status}"
        length = None
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        if length is None or len(payload) != length:
            return t_connected, t_sent, "truncated"
        json.loads(payload)
        return t_connected, t_sent, "ok"
    except ConnectionRefusedError:
        return t_connected, t_sent, "refused"
    except (ConnectionResetError, BrokenPipeError):
        return t_connected, t_sent, "reset"
    except (OSError, ValueError) as e:
        return t_connected, t_sent, f"error:{type(e).__name__}"
    finally:
        s.close()


def run_sigterm(a):
    corpus = [json.dumps({"text": t}).encode() for t in texts()]
    stop = threading.Event()
    lock = threading.Lock()
    records = []

    def client(i):
        rnd = random.Random(i)
        while not stop.is_set():
            rec = one_request(a.port, rnd.choice(corpus))
            with lock:
                records.append(rec)
            if rec[2] == "refused":
                time.sleep(0.01)  # the listener is gone; don't spin

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(a.conns)]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(a.before)
    t_signal = time.monotonic()
    os.kill(a.pid, signal.SIGTERM)
    time.sleep(a.after)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    before = [r for r in records if r[1] is not None and r[1] < t_signal]
    after = [r for r in records if not (r[1] is not None and r[1] < t_signal)]
    count = lambda rs, o: sum(1 for r in rs if r[2] == o)
    before_bad = [r[2] for r in before if r[2] != "ok"]
    after_kinds = {}
    for r in after:
        after_kinds[r[2]] = after_kinds.get(r[2], 0) + 1
    # After the signal a request may be refused at connect, answered in full
    # (the server still took connections already in its accept queue), or
    # reset or closed unanswered and unread — a connection that completed in the
    # instant between the server's last accept and the listener closing, which
    # the kernel closes; reliability.sh checks the server's own count of
    # accepted connections against the completed ones to prove that.
    allowed_after = ("ok", "refused", "reset", "closed_without_answer")
    after_bad = {k: v for k, v in after_kinds.items() if k not in allowed_after}
    probe = socket.socket()
    probe.settimeout(2)
    try:
        probe.connect((HOST, a.port))
        refused_now = False
    except OSError:
        refused_now = True
    finally:
        probe.close()
    summary = {
        "phase": "SIGTERM under load",
        "connections": a.conns,
        "seconds_before_signal": a.before,
        "requests_sent_before_signal": len(before),
        "completed_before_signal": count(before, "ok"),
        "failed_before_signal": len(before_bad),
        "failure_kinds_before_signal": {k: before_bad.count(k) for k in set(before_bad)},
        "completed_total": count(records, "ok"),
        "attempts_after_signal": len(after),
        "after_signal": after_kinds,
        "last_completed_after_signal_s": round(
            max((r[1] - t_signal for r in records if r[2] == "ok" and r[1] is not None), default=0), 3
        ),
        "new_connections_refused_after_exit": refused_now,
        "unanswered_after_signal_timing_ms": [
            [round((x - t_signal) * 1000, 1) for x in (r[:2] + r[3:])]
            for r in after if r[2] not in ("ok", "refused") and r[0] is not None and r[1] is not None
        ][:10],
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    ok = not before_bad and not after_bad and refused_now
    return summary, ok


# --- soak ------------------------------------------------------------------------

def run_soak(a):
    valid = parse_pairs(a.valid)
    corpus = texts()
    stop = threading.Event()
    tally = Tally()
    auth = {"authorization": f"Bearer {a.token}"}
    # Bad requests and the only answers that count as correct for them.
    bad = [
        ("/predict", b'{"text": ', 400),
        ("/predict", b'{"text": ""}', 422),
        ("/predict", b'{"text": 42}', 422),
        ("/predict/batch", b'{"texts": []}', 422),
        ("/feedback", b'{"prediction_id": "nope", "label": "ham"}', 404),
        ("/predict", b"\xff\xfe", 400),
    ]

    def client(i):
        rnd = random.Random(i)
        conn = http.client.HTTPConnection(HOST, a.port, timeout=30)
        while not stop.is_set():
            roll = rnd.random()
            try:
                if roll < 0.55:
                    status, body = post(conn, "/predict", {"text": rnd.choice(corpus)})
                    want, kind = 200, "predict"
                    if status == 200 and rnd.random() < 0.5:
                        pid = json.loads(body)["prediction_id"]
                        fs, fb = post(conn, "/feedback", {"prediction_id": pid, "label": rnd.choice(["ham", "spam"])})
                        tally.add("feedback" if fs == 202 else "failed", None if fs == 202 else f"feedback HTTP {fs} {fb[:200]!r}")
                elif roll < 0.75:
                    status, body = post(conn, "/predict/batch", {"texts": rnd.sample(corpus, 20)})
                    want, kind = 200, "batch"
                elif roll < 0.85:
                    conn.request("GET", rnd.choice(["/health", "/ready", "/model", "/model/quality", "/metrics"]))
                    r = conn.getresponse()
                    status, body = r.status, r.read()
                    want, kind = 200, "read"
                else:
                    path, payload, want = rnd.choice(bad)
                    status, body = post(conn, path, payload)
                    kind = "bad_request_answered"
                    if status == want:
                        json.loads(body)["error"]["code"]
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                tally.add("error", f"client {i}: {type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(HOST, a.port, timeout=30)
                continue
            if status == want:
                tally.add(kind)
            else:
                tally.add("failed", f"{kind}: HTTP {status} (want {want}) {body[:200]!r}")
        conn.close()

    rss_start = rss_kib(a.rss_pid) if a.rss_pid else None
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(a.conns)]
    started = time.monotonic()
    for t in threads:
        t.start()
    reloads = Tally()
    rss_samples = []
    k = 0
    while time.monotonic() - started < a.seconds:
        time.sleep(min(a.reload_every, max(0.0, a.seconds - (time.monotonic() - started))))
        if time.monotonic() - started >= a.seconds:
            break
        name, version = valid[k % len(valid)]
        k += 1
        # A fresh connection per reload: the server closes keep-alive
        # connections idle for server.header_read_timeout_ms (10 s).
        admin = http.client.HTTPConnection(HOST, a.port, timeout=60)
        try:
            status, body = post(admin, "/admin/reload", {"path": name}, auth)
            good = status == 200 and json.loads(body)["version"] == version
        except (OSError, http.client.HTTPException, ValueError) as e:
            good, status, body = False, 0, repr(e).encode()
        admin.close()
        reloads.add("ok" if good else "failed", None if good else f"reload {name}: {status} {body[:200]!r}")
        if a.rss_pid:
            rss_samples.append((round(time.monotonic() - started), rss_kib(a.rss_pid)))
    stop.set()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - started
    rss_end = rss_kib(a.rss_pid) if a.rss_pid else None
    c = tally.counts
    errors = c.get("failed", 0) + c.get("error", 0) + reloads.counts.get("failed", 0)
    summary = {
        "phase": "soak",
        "connections": a.conns,
        "seconds": round(elapsed, 1),
        "requests": sum(c.values()),
        "by_kind": c,
        "reloads": reloads.counts,
        "errors": errors,
        "rss_kib_start": rss_start,
        "rss_kib_end": rss_end,
        "rss_kib_samples": rss_samples,
        "examples": tally.examples + reloads.examples,
    }
    return summary, errors == 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["reload", "sigterm", "soak"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", default="")
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--reloads", type=int, default=20)
    p.add_argument("--valid", help="name=version,... of valid artifacts in the models dir")
    p.add_argument("--invalid", help="names of invalid artifacts in the models dir")
    p.add_argument("--initial-version", default="", help="version(s) served before the first reload")
    p.add_argument("--pid", type=int)
    p.add_argument("--before", type=float, default=4)
    p.add_argument("--after", type=float, default=2)
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--reload-every", type=float, default=10)
    p.add_argument("--rss-pid", type=int)
    a = p.parse_args()
    run = {"reload": run_reload, "sigterm": run_sigterm, "soak": run_soak}[a.mode]
    summary, ok = run(a)
    summary["pass"] = ok
    print(json.dumps(summary, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
