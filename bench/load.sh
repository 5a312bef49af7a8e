#!/usr/bin/env bash
# HTTP load test: nbserve vs. a floor (minimal axum server, fixed answer) vs. a
# peer (scikit-learn + FastAPI/uvicorn, 2 workers), all on 127.0.0.1.
#
#   bench/load.sh                       # 3 runs × 10 s per target, 64 connections
#   DURATION=5 RUNS=1 bench/load.sh     # quicker
#
# Environment: MIX (corpus: whole mails, the default; short: each mail's
# Subject line, as bench/instructions.sh's short mix), DURATION (seconds per
# measurement, default 10), RUNS (default 3,
# the table shows the median), CONNECTIONS (64), THREADS (wrk threads, 2),
# BATCH (texts per /predict/batch body, 100), PORT_BASE (28180: nbserve,
# +1 floor, +2 peer), NBSERVE_CACHE (tool/venv cache, ~/.cache/nbserve),
# NBSERVE_BIN (an nbserve binary to measure instead of the release build),
# NBSERVE_BASELINE_BIN (a second nbserve, e.g. an older build, measured in the
# same runs, interleaved, for a before/after comparison under the same load).
#
# What it does: builds the release nbserve and examples/floor_server; fetches
# Debian's wrk into $NBSERVE_CACHE/tools (apt-get download + dpkg -x, no root
# install); creates the peer venv from bench/requirements-peer.txt; trains the
# peer on the train half of nbserve's own split of the corpus; builds request
# bodies from real documents; then, per run: starts nbserve (start-up = exec to
# first 200 from /ready), drives /predict on nbserve, floor and peer and
# /predict/batch on nbserve and peer, reads nbserve's peak RSS (VmHWM), stops
# nbserve. Prints a markdown table and writes it to bench/results/.
# Every server it started is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
work="$cache/bench"
tools="$cache/tools"
DURATION="${DURATION:-10}"
RUNS="${RUNS:-3}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
BATCH="${BATCH:-100}"
MIX="${MIX:-corpus}"
[[ "$MIX" == corpus || "$MIX" == short ]] || { echo "load: MIX must be corpus or short" >&2; exit 2; }
PORT_BASE="${PORT_BASE:-28180}"
nb_port="$PORT_BASE"
floor_port="$((PORT_BASE + 1))"
peer_port="$((PORT_BASE + 2))"
host="127.0.0.1"   # never anything else: this is a local benchmark

log() { echo "load: $*" >&2; }
mkdir -p "$work" "$tools"

# --- cleanup: stop exactly the processes this script started -------------------
pids=()
nb_pid=""
cleanup() {
    local p
    for p in "$nb_pid" "${pids[@]:-}"; do
        [[ -n "$p" ]] && kill "$p" 2>/dev/null || true
    done
    for p in "$nb_pid" "${pids[@]:-}"; do
        [[ -n "$p" ]] && wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- data ------------------------------------------------------------------------
data="data/spamassassin.csv"
if [[ ! -f "$data" ]]; then
    log "$data is missing: run scripts/fetch-data.sh for the real corpus."
    log "falling back to tests/data/sample.csv (300 rows; numbers are not representative)"
    data="tests/data/sample.csv"
fi

# --- binaries ------------------------------------------------------------------------
log "building release binaries (nbserve, examples/floor_server)"
cargo build --release --quiet --bin nbserve --example floor_server
# shellcheck source=scripts/lib/cargo.sh
source "$root/scripts/lib/cargo.sh"
nbserve="${NBSERVE_BIN:-$(cargo_bin release nbserve)}"
log "nbserve binary: $nbserve"
floor="$(cargo_bin release examples/floor_server)"

# --- wrk from Debian, unpacked into the cache --------------------------------------
if command -v wrk >/dev/null 2>&1; then
    wrk_bin="$(command -v wrk)"
    wrk_lib=""
else
    wrk_dir="$tools/wrk"
    wrk_bin="$wrk_dir/usr/bin/wrk"
    if [[ ! -x "$wrk_bin" ]]; then
        log "fetching Debian wrk + libluajit into $wrk_dir"
        dl="$(mktemp -d)"
        fetch() { (cd "$dl" && apt-get download wrk libluajit-5.1-2 >/dev/null 2>&1); }
        if ! fetch; then
            log "apt-get download failed; running apt-get update once"
            apt-get update >/dev/null 2>&1 || true
            fetch || { log "cannot download wrk (Debian). Install wrk or oha and retry."; exit 1; }
        fi
        rm -rf "$wrk_dir.tmp" && mkdir -p "$wrk_dir.tmp"
        for deb in "$dl"/*.deb; do dpkg -x "$deb" "$wrk_dir.tmp"; done
        rm -rf "$wrk_dir" && mv "$wrk_dir.tmp" "$wrk_dir" && rm -rf "$dl"
    fi
    wrk_lib="$(dirname "$(find "$wrk_dir" -name 'libluajit-5.1.so.2*' | head -n 1)")"
fi
wrk=(env "LD_LIBRARY_PATH=${wrk_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$wrk_bin")
"${wrk[@]}" --version 2>&1 | head -n 1 | sed 's/^/load: /' >&2 || true

# --- peer venv ---------------------------------------------------------------------------
req="bench/requirements-peer.txt"
base_py="${NBSERVE_PYTHON:-python3.11}"
command -v "$base_py" >/dev/null 2>&1 || base_py=python3
pyver="$("$base_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
venv="$cache/venv-peer-$( { cat "$req"; echo "python=$pyver"; } | sha256sum | cut -c1-16)"
py="$venv/bin/python"
if [[ ! -f "$venv/.complete" ]]; then
    log "creating peer venv $venv (Python $pyver)"
    rm -rf "$venv"
    "$base_py" -m venv "$venv"
    "$py" -m pip install --quiet --disable-pip-version-check --no-input \
        --only-binary=:all: --require-hashes -r "$req" >&2
    touch "$venv/.complete"
fi

# --- peer model: scikit-learn on the train half of nbserve's split -------------------
data_hash="$(sha256sum "$data" | cut -c1-16)"
peer_model="$work/peer-$data_hash.joblib"
if [[ ! -f "$peer_model" ]]; then
    log "training the peer (scikit-learn) on nbserve's 80/20 split, seed 42"
    "$nbserve" split --data "$data" --train-out "$work/train.csv" --test-out "$work/test.csv" \
        --test-size 0.2 --seed 42 >/dev/null
    "$py" bench/peer_server.py train "$work/train.csv" "$peer_model.tmp"
    mv "$peer_model.tmp" "$peer_model"
fi

# --- request bodies from real documents ---------------------------------------------------
predict_bodies="$work/bodies-predict-$MIX.jsonl"
batch_bodies="$work/bodies-batch-$MIX-$BATCH.jsonl"
"$py" - "$data" "$predict_bodies" "$batch_bodies" "$BATCH" "$MIX" <<'PYEOF'
import csv, json, sys
csv.field_size_limit(sys.maxsize)
data, one_out, batch_out, batch, mix = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
with open(data, newline="", encoding="utf-8") as f:
    texts = [r["text"] for r in csv.DictReader(f)]
n = min(1000, len(texts))
docs = [texts[i * len(texts) // n] for i in range(n)]
if mix == "short":
    docs = [d.strip().split("\n", 1)[0].strip() for d in docs]
docs = [d for d in docs if d.strip()]
with open(one_out, "w", encoding="utf-8") as f:
    for d in docs:
        f.write(json.dumps({"text": d}) + "\n")
with open(batch_out, "w", encoding="utf-8") as f:
    for i in range(0, len(docs) - batch + 1, batch):
        f.write(json.dumps({"texts": docs[i:i + batch]}) + "\n")
size = sum(len(d.encode()) for d in docs)
print(f"load: {len(docs)} request texts, mean {size / len(docs):.0f} bytes", file=sys.stderr)
PYEOF

# --- helpers -------------------------------------------------------------------------------
# ready PORT: true when GET /ready answers 200 (bash /dev/tcp: no fork of curl per poll).
ready() (
    exec 3<>"/dev/tcp/$host/$1" || exit 1
    printf 'GET /ready HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
    IFS= read -r -t 2 line <&3 || exit 1
    [[ "$line" == *" 200 "* ]]
) 2>/dev/null

# wait_ready PORT PID SECONDS
wait_ready() {
    local deadline=$((SECONDS + $3))
    until ready "$1"; do
        if ! kill -0 "$2" 2>/dev/null; then log "process $2 (port $1) exited before it was ready"; return 1; fi
        if ((SECONDS >= deadline)); then log "port $1 not ready after $3 s"; return 1; fi
        sleep 0.002
    done
}

# drive NAME PORT PATH BODIES SECONDS: one wrk run, its JSON summary appended to results.
results="$work/results.jsonl"
: >"$results"
drive() {
    local name="$1" port="$2" path="$3" bodies="$4" secs="$5" run="$6"
    local out
    out="$(BODIES="$bodies" timeout $((secs + 30)) \
        "${wrk[@]}" -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --timeout 5s -s bench/post.lua \
        "http://$host:$port$path" | tail -n 1)"
    [[ "$run" == warmup ]] && return 0
    echo "{\"target\":\"$name\",\"path\":\"$path\",\"run\":$run,\"wrk\":$out}" >>"$results"
    log "$(printf '%-8s %-15s run %s: %s' "$name" "$path" "$run" "$out")"
}

port_free() { ! ready "$1" && ! (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }
for p in "$nb_port" "$floor_port" "$peer_port"; do
    port_free "$p" || { log "port $p on $host is in use (set PORT_BASE)"; exit 1; }
done

# --- floor and peer: started once ------------------------------------------------------------
"$floor" "$floor_port" >"$work/floor.log" 2>&1 &
floor_pid=$!
pids+=("$floor_pid")
NBSERVE_PEER_MODEL="$peer_model" "$py" -m uvicorn peer_server:app --app-dir bench \
    --host "$host" --port "$peer_port" --workers 2 --no-access-log --log-level warning \
    >"$work/peer.log" 2>&1 &
peer_pid=$!
pids+=("$peer_pid")
wait_ready "$floor_port" "$floor_pid" 30
wait_ready "$peer_port" "$peer_pid" 120
drive floor "$floor_port" /predict "$predict_bodies" 2 warmup
drive peer "$peer_port" /predict "$predict_bodies" 2 warmup

# --- runs ---------------------------------------------------------------------------------------
# measure_nbserve NAME BINARY RUN: start BINARY (start-up = exec to /ready 200), drive /predict,
# read VmHWM, drive /predict/batch, read VmHWM again, stop it.
# start_nbserve BINARY LOG: start it on $nb_port (pid in nb_pid) and wait for /ready;
# startup_us is the time from exec to the first 200. stop_nbserve: stop it.
start_nbserve() {
    local t0 t1
    t0="$(date +%s%N)"
    NBSERVE__SERVER__HOST="$host" NBSERVE__SERVER__PORT="$nb_port" "$1" serve >"$2" 2>&1 &
    nb_pid=$!
    wait_ready "$nb_port" "$nb_pid" 30
    t1="$(date +%s%N)"
    startup_us=$(((t1 - t0) / 1000))
}
stop_nbserve() {
    kill "$nb_pid"
    wait "$nb_pid" 2>/dev/null || true
    nb_pid=""
}

: >"$work/startup.txt"
measure_nbserve() {
    local name="$1" bin="$2" run="$3"
    start_nbserve "$bin" "$work/$name-$run.log"
    log "run $run/$RUNS: $name ready in $((startup_us / 1000)) ms"
    drive "$name" "$nb_port" /predict "$predict_bodies" 1 warmup
    drive "$name" "$nb_port" /predict "$predict_bodies" "$DURATION" "$run"
    local hwm_predict hwm_batch
    hwm_predict="$(awk '/^VmHWM/ {print $2}' "/proc/$nb_pid/status")"
    drive "$name" "$nb_port" /predict/batch "$batch_bodies" "$DURATION" "$run"
    hwm_batch="$(awk '/^VmHWM/ {print $2}' "/proc/$nb_pid/status")"
    echo "{\"target\":\"$name\",\"run\":$run,\"startup_us\":$startup_us,\"hwm_predict_kb\":$hwm_predict,\"hwm_batch_kb\":$hwm_batch}" >>"$work/startup.txt"
    stop_nbserve
}

# settle: let the previous load finish (uvicorn keeps working through queued batch
# requests after wrk stops), so a start-up is not timed while the CPU is busy.
settle() {
    local _
    for _ in $(seq 1 30); do
        ready "$peer_port" && break
        sleep 0.5
    done
    sleep 2
}

# startup NAME BINARY: exec to first /ready 200, STARTS times, on a settled machine.
STARTS="${STARTS:-5}"
startup() {
    local name="$1" bin="$2" _
    for _ in $(seq 1 "$STARTS"); do
        start_nbserve "$bin" "$work/$name-startup.log"
        stop_nbserve
        echo "{\"target\":\"$name\",\"start_us\":$startup_us}" >>"$work/startup-only.txt"
        sleep 0.2
    done
}
: >"$work/startup-only.txt"
startup nbserve "$nbserve"
if [[ -n "${NBSERVE_BASELINE_BIN:-}" ]]; then startup baseline "$NBSERVE_BASELINE_BIN"; fi

for run in $(seq 1 "$RUNS"); do
    settle
    if [[ -z "${NBSERVE_BASELINE_BIN:-}" ]]; then
        measure_nbserve nbserve "$nbserve" "$run"
    elif ((run % 2)); then
        # Alternate which build goes first: the machine's load drifts within a run.
        measure_nbserve nbserve "$nbserve" "$run"
        measure_nbserve baseline "$NBSERVE_BASELINE_BIN" "$run"
    else
        measure_nbserve baseline "$NBSERVE_BASELINE_BIN" "$run"
        measure_nbserve nbserve "$nbserve" "$run"
    fi
    drive floor "$floor_port" /predict "$predict_bodies" "$DURATION" "$run"
    drive peer "$peer_port" /predict "$predict_bodies" "$DURATION" "$run"
    drive peer "$peer_port" /predict/batch "$batch_bodies" "$DURATION" "$run"
done

# --- report -------------------------------------------------------------------------------------
mkdir -p bench/results
report="bench/results/load-$(date -u +%Y%m%dT%H%M%SZ).md"
"$py" - "$results" "$work/startup.txt" "$work/startup-only.txt" "$BATCH" "$CONNECTIONS" "$DURATION" "$RUNS" "$data" "$MIX" >"$report" <<'PYEOF'
import json, os, platform, statistics as st, sys, time

results, servers, starts, batch, conns, dur, runs, data, mix = sys.argv[1:10]
batch = int(batch)
rows = [json.loads(l) for l in open(results) if l.strip()]
procs = [json.loads(l) for l in open(servers) if l.strip()]
starts = [json.loads(l) for l in open(starts) if l.strip()]
med = lambda xs: st.median(xs) if xs else float("nan")


def runs_of(target, path):
    return {r["run"]: r["wrk"] for r in rows if r["target"] == target and r["path"] == path}


def pick(target, path, key):
    return med([w[key] for w in runs_of(target, path).values()])


def total(target, path, keys):
    return sum(sum(w[k] for k in keys) for w in runs_of(target, path).values())


def paired_ratio(a, b, path, scale=1.0):
    """Median over runs of a/b within the same run: the machine's load drifts
    between runs, so run-paired ratios are steadier than a ratio of medians."""
    ra, rb = runs_of(a, path), runs_of(b, path)
    return med([ra[k]["rps"] / rb[k]["rps"] * scale for k in ra if k in rb])


def proc(target, key):
    return med([p[key] for p in procs if p["target"] == target])


cpu = "?"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
targets = ["nbserve"] + (["baseline"] if any(p["target"] == "baseline" for p in procs) else [])
errs = ("errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout")

print(f"## HTTP load ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
print()
print(f"Machine: {cpu}, {os.cpu_count()} cores shared by servers and wrk; {platform.platform()}.")
what = "whole documents" if mix == "corpus" else "each document's first line (Subject)"
print(f"wrk, {conns} connections, {dur} s per measurement, median of {runs} runs; bodies are real documents from {data} (cycled), {what}; batches of {batch}.")
print()
print("| target | endpoint | requests/s | documents/s | p50 ms | p99 ms | errors / requests |")
print("|---|---|---:|---:|---:|---:|---:|")
order = [(t, "/predict") for t in targets + ["floor", "peer"]] + [(t, "/predict/batch") for t in targets + ["peer"]]
for target, path in order:
    rps = pick(target, path, "rps")
    docs = rps * (batch if path.endswith("batch") else 1)
    print(f"| {target} | {path} | {rps:,.0f} | {docs:,.0f} | {pick(target, path, 'p50_ms'):.2f} | {pick(target, path, 'p99_ms'):.2f} | {total(target, path, errs)} / {total(target, path, ['requests']):,} |")
print()
print("| measure | " + " | ".join(targets) + " | target | nbserve |")
print("|---|" + "---:|" * len(targets) + "---:|---|")


def line(name, values, goal, ok):
    print(f"| {name} | " + " | ".join(values) + f" | {goal} | {'met' if ok else 'missed'} |")


fl = [paired_ratio(t, "floor", "/predict") for t in targets]
line("/predict requests/s vs floor (run-paired)", [f"{x:.0%}" for x in fl], "≥ 85%", fl[0] >= 0.85)
pe = [paired_ratio(t, "peer", "/predict") for t in targets]
line("/predict requests/s vs peer (run-paired)", [f"{x:,.0f}×" for x in pe], "≥ 100×", pe[0] >= 100)
pb = [paired_ratio(t, "peer", "/predict/batch") for t in targets]
print(f"| /predict/batch documents/s vs peer (run-paired) | " + " | ".join(f"{x:,.0f}×" for x in pb) + " | | |")
p99 = [pick(t, "/predict", "p99_ms") for t in targets]
line(f"/predict p99 at {conns} connections", [f"{x:.2f} ms" for x in p99], "≤ 5 ms", p99[0] <= 5)
su = [med([s["start_us"] for s in starts if s["target"] == t]) / 1000 for t in targets]
line(f"start-up, exec to /ready 200 (median of {len(starts) // len(targets)}, idle machine)", [f"{x:.0f} ms" for x in su], "< 100 ms", su[0] < 100)
sl = [proc(t, "startup_us") / 1000 for t in targets]
print("| start-up at the start of each run (after the previous load) | " + " | ".join(f"{x:.0f} ms" for x in sl) + " | | |")
rp = [proc(t, "hwm_predict_kb") / 1024 for t in targets]
line("peak RSS (VmHWM) after /predict load", [f"{x:.1f} MB" for x in rp], "< 30 MB", rp[0] < 30)
rb = [proc(t, "hwm_batch_kb") / 1024 for t in targets]
print(f"| peak RSS after /predict/batch too | " + " | ".join(f"{x:.1f} MB" for x in rb) + " | | |")
floor_p99 = [f"{pick('floor', '/predict', 'p99_ms'):.2f} ms"] + [""] * (len(targets) - 1)
print("| floor /predict p99 (same machine, same load) | " + " | ".join(floor_p99) + " | | |")
PYEOF
cat "$report"
log "written to $report"
