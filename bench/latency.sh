#!/usr/bin/env bash
# Latency without coordinated omission: /predict at fixed request rates.
#
#   bench/latency.sh                        # 20 s per measurement
#   DURATION=10 bench/latency.sh            # quicker
#
# A closed-loop run (64 connections, each sends its next request when the
# last answer arrived) finds the maximum rate; then an open-loop generator
# sends at 50 % and 90 % of it on a fixed schedule (oha -q with
# --latency-correction: a request is timed from when the schedule said it
# should leave, so a stalled server is charged for the requests it delayed —
# closed-loop percentiles hide exactly that). Reports p50 / p99 / p99.9 and
# failures for all three, as a markdown table in bench/results/.
#
# Environment: DURATION (seconds per measurement, 20), CONNECTIONS (64),
# NBSERVE_BIN (binary to measure instead of the release build), NBSERVE_CACHE
# (oha is built into $NBSERVE_CACHE/tools/oha, pinned, ~7 min the first time).
# Client and server share the machine: on 2 cores the generator takes a
# large share of the CPU, so read the figures as this machine's, not the server's alone.
# PIN=1 gives each its own CPUs (taskset): the server the last one, the
# generator the others, so they no longer preempt each other. On 2 CPUs that
# leaves one core each: the closed-loop maximum then reflects requests
# batched per wake-up, and the open-loop rates derived from it load the
# server's core more than their percentage says (see docs/performance.md).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
work="$cache/bench-latency"
DURATION="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-64}"
OHA_VERSION=1.16.0
host=127.0.0.1
log() { echo "latency: $*" >&2; }
mkdir -p "$work"

# shellcheck source=scripts/lib/cargo.sh
source scripts/lib/cargo.sh
# shellcheck source=scripts/lib/poll.sh
source scripts/lib/poll.sh

oha="$cache/tools/oha/bin/oha"
if [[ ! -x "$oha" ]] || ! "$oha" --version | grep -qF "$OHA_VERSION"; then
    log "building oha $OHA_VERSION into $cache/tools/oha (crates.io, --locked)"
    cargo install oha --version "$OHA_VERSION" --locked --root "$cache/tools/oha" >&2
fi

if [[ -n "${NBSERVE_BIN:-}" ]]; then
    nbserve="$NBSERVE_BIN"
else
    log "building the release binary"
    cargo build --release --quiet --locked --bin nbserve
    nbserve="$(cargo_bin release nbserve)"
fi
log "nbserve binary: $nbserve"

# One request body: the document of median length from the corpus (or the
# small test sample), so each request costs what a typical one does.
data=data/spamassassin.csv
[[ -f "$data" ]] || { log "$data missing (scripts/fetch-data.sh); using tests/data/sample.csv"; data=tests/data/sample.csv; }
body="$work/body.json"
python3 - "$data" "$body" <<'PYEOF'
import csv, json, sys
csv.field_size_limit(sys.maxsize)
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    texts = sorted((r["text"] for r in csv.DictReader(f) if r["text"].strip()), key=len)
text = texts[len(texts) // 2]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    json.dump({"text": text}, f)
print(f"latency: request body: the median document, {len(text.encode())} bytes of text", file=sys.stderr)
PYEOF

server_pin=()
client_pin=()
pinned="no"
if [[ "${PIN:-0}" == 1 ]]; then
    command -v taskset >/dev/null || { log "PIN=1 needs taskset (util-linux)"; exit 2; }
    cpus="$(nproc)"
    ((cpus >= 2)) || { log "PIN=1 needs at least 2 CPUs"; exit 2; }
    server_pin=(taskset -c "$((cpus - 1))")
    client_pin=(taskset -c "0-$((cpus - 2))")
    pinned="server on CPU $((cpus - 1)), generator on CPUs 0-$((cpus - 2))"
    log "pinned: $pinned"
fi

port="$(free_port)"
NBSERVE__SERVER__HOST="$host" NBSERVE__SERVER__PORT="$port" NBSERVE__LOG__LEVEL=warn \
    "${server_pin[@]}" "$nbserve" serve >"$work/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
wait_for 60 "nbserve /ready" curl -fsS "http://$host:$port/ready"
url="http://$host:$port/predict"

# run NAME [oha options...]: one measurement, oha's JSON summary kept.
run() {
    local name="$1"
    shift
    "${client_pin[@]}" "$oha" --no-tui --output-format json -z "${DURATION}s" -c "$CONNECTIONS" \
        -m POST -T application/json -D "$body" "$@" "$url" >"$work/$name.json"
}

log "warm-up"
DURATION=3 run warmup
log "closed loop, $CONNECTIONS connections, ${DURATION}s"
run closed
max="$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["summary"]["requestsPerSec"]))' "$work/closed.json")"
log "maximum: $max requests/s"
for pct in 50 90; do
    rate=$((max * pct / 100))
    log "open loop at $pct % = $rate requests/s, ${DURATION}s"
    run "open$pct" -q "$rate" --latency-correction
done
rss_kb="$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")"

mkdir -p bench/results
report="bench/results/latency-$(date -u +%Y%m%dT%H%M%SZ).md"
python3 - "$work" "$max" "$DURATION" "$CONNECTIONS" "$rss_kb" "$OHA_VERSION" "$pinned" >"$report" <<'PYEOF'
import json, os, sys, time
work, max_rps, dur, conns, rss_kb, oha, pinned = sys.argv[1:8]
print(f"## /predict latency, closed and open loop ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
print()
cpus = f"{os.cpu_count()} CPUs shared by client and server" if pinned == "no" else f"{os.cpu_count()} CPUs, pinned: {pinned}"
print(f"oha {oha}, {conns} connections, {dur} s per row, {cpus}; "
      f"peak server RSS {int(rss_kb) / 1024:.0f} MB. Open loop: fixed schedule with latency correction.")
print()
print(f"1-minute load average at the end: {os.getloadavg()[0]:.1f} (the run itself keeps both CPUs busy, about 2; well above that, something else was running).")
print()
print("| load | sent rate | answered/s | p50 ms | p99 ms | p99.9 ms | max ms | non-200 or failed | cut by the end of the run |")
print("|---|---|---|---|---|---|---|---|---|")
for name, label, rate in [("closed", "closed loop (maximum)", "as fast as answered"),
                          ("open50", "open loop, 50 % of max", f"{int(max_rps) * 50 // 100}/s"),
                          ("open90", "open loop, 90 % of max", f"{int(max_rps) * 90 // 100}/s")]:
    j = json.load(open(os.path.join(work, f"{name}.json")))
    s, p = j["summary"], j["latencyPercentiles"]
    codes = j.get("statusCodeDistribution", {})
    errors = dict(j.get("errorDistribution", {}))
    # oha cancels the requests still in flight when the duration ends: not failures.
    cut = errors.pop("aborted due to deadline", 0)
    bad = sum(v for k, v in codes.items() if k != "200") + sum(errors.values())
    ms = lambda v: f"{v * 1000:.2f}" if v is not None else "–"
    print(f"| {label} | {rate} | {s['requestsPerSec']:.0f} | {ms(p['p50'])} | {ms(p['p99'])} | {ms(p['p99.9'])} | {ms(s['slowest'])} | {bad} | {cut} |")
PYEOF
cat "$report"
log "written to $report"
