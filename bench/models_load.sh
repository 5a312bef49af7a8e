#!/usr/bin/env bash
# Many models under load: sustained POST /predict on the default model
# (spam-nb) while the other model of the same server (spam-cnb) goes through
# the V2 repository API: unloaded, loaded again, replaced by an artifact below
# its gate (the load is refused, the previous spam-cnb keeps serving), and
# loaded again from a good artifact. The default model's traffic must not see
# a single failure.
#
#   bench/models_load.sh                 # 40 s of load, 32 connections
#   DURATION=20 bench/models_load.sh     # quicker
#
# Environment: DURATION (seconds of load, default 40), CONNECTIONS (32),
# THREADS (wrk threads, 2), PORT (28190), NBSERVE_BIN (an nbserve binary;
# default: the release build, built if missing). Needs wrk (bench/load.sh
# fetches Debian's into its cache; `apt-get install wrk` works too).
#
# What it does: copies models/spam-nb.json and models/spam-cnb.json into a
# temporary model repository, trains a below-gate spam-cnb (alpha 1000 on
# data/spamassassin.csv, else tests/data/sample.csv), writes request bodies
# from real documents, serves the repository on 127.0.0.1, runs wrk on
# /predict, and meanwhile steps spam-cnb through the four changes, checking
# each answer and what /models/spam-cnb/predict answers after it. Prints the
# steps, then requests, failed requests (non-2xx, connection errors and
# timeouts), p50/p99/max, and the server log's ERROR and WARN counts.
# Exits 1 when a request failed or a step answered otherwise than expected.
# Stops the server it started on exit, also on failure or Ctrl-C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DURATION="${DURATION:-40}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
PORT="${PORT:-28190}"
host="127.0.0.1"   # never anything else: this is a local benchmark
token="models-load-admin-token"

log() { echo "models_load: $*" >&2; }

command -v wrk >/dev/null 2>&1 || { log "wrk is missing: install it (apt-get install wrk) or run bench/load.sh once"; exit 1; }
if [[ -n "${NBSERVE_BIN:-}" ]]; then
    bin="$NBSERVE_BIN"
else
    # shellcheck source=scripts/lib/cargo.sh
    source "$root/scripts/lib/cargo.sh"
    bin="$(cargo_bin release nbserve)"
    [[ -x "$bin" ]] || cargo build --release --locked --quiet --bin nbserve
fi
log "nbserve binary: $bin"

work="$(mktemp -d)"
server_pid=""
wrk_pid=""
cleanup() {
    local p
    for p in "$wrk_pid" "$server_pid"; do
        [[ -n "$p" ]] && kill "$p" 2>/dev/null || true
    done
    for p in "$wrk_pid" "$server_pid"; do
        [[ -n "$p" ]] && wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the repository, the below-gate artifact, the bodies ------------------------------
data="data/spamassassin.csv"
[[ -f "$data" ]] || data="tests/data/sample.csv"
repo="$work/models"
mkdir -p "$repo"
cp models/spam-nb.json models/spam-cnb.json "$repo/"
"$bin" train --data "$data" --out "$work/below-gate.json" --name spam-cnb \
    --model-version bad-gate --alpha 1000 >"$work/train.log" 2>&1 || { cat "$work/train.log" >&2; exit 1; }
python3 - "$data" "$work/bodies.jsonl" <<'PY'
import csv, json, sys
csv.field_size_limit(1 << 24)
with open(sys.argv[1], newline="", encoding="utf-8") as f, open(sys.argv[2], "w") as out:
    for i, row in enumerate(csv.DictReader(f)):
        if i == 500:
            break
        out.write(json.dumps({"text": row["text"][:4000]}) + "\n")
PY

# --- the server ---------------------------------------------------------------------
NBSERVE__MODEL__REPOSITORY="$repo" NBSERVE__MODEL__DIR="$repo" NBSERVE__MODEL__DEFAULT=spam-nb \
NBSERVE__ADMIN__TOKEN="$token" NBSERVE__LOG__FORMAT=json NBSERVE__SERVER__HOST="$host" NBSERVE__SERVER__PORT="$PORT" \
    "$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
base="http://$host:$PORT"
for _ in $(seq 1 100); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/ready" || true)" == 200 ]] && break
    kill -0 "$server_pid" 2>/dev/null || { log "the server stopped:"; cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done

# --- load, and spam-cnb's steps meanwhile --------------------------------------------
BODIES="$work/bodies.jsonl" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s \
    -s bench/post.lua "$base/predict" >"$work/wrk.out" 2>&1 &
wrk_pid=$!
pause=$(( DURATION / 6 > 1 ? DURATION / 6 : 1 ))
bad=0
status() { curl -s -o /dev/null -w '%{http_code}' "$@" || true; }
cnb_predict() {
    status -X POST "$base/models/spam-cnb/predict" -H 'Content-Type: application/json' -d '{"text": "hello"}'
}
# step NAME EXPECTED_LOAD_STATUS EXPECTED_PREDICT_STATUS PATH_OF_THE_V2_CALL
step() {
    sleep "$pause"
    local got predict
    got="$(status -X POST "$base/v2/repository/models/spam-cnb/$4" -H "Authorization: Bearer $token")"
    predict="$(cnb_predict)"
    printf '| %s | %s (expected %s) | %s (expected %s) |\n' "$1" "$got" "$2" "$predict" "$3"
    [[ "$got" == "$2" && "$predict" == "$3" ]] || bad=1
}
echo "| spam-cnb step | V2 answer | /models/spam-cnb/predict after it |"
echo "|---|---|---|"
step "unload" 200 503 unload
step "load" 200 200 load
cp "$work/below-gate.json" "$repo/spam-cnb.json"
step "load below the gate (refused)" 422 200 load
cp models/spam-cnb.json "$repo/spam-cnb.json"
step "load the good artifact again" 200 200 load
wait "$wrk_pid"
wrk_pid=""

# --- figures ------------------------------------------------------------------------
summary="$(grep '^{"requests"' "$work/wrk.out" || { cat "$work/wrk.out" >&2; exit 1; })"
python3 - "$summary" "$work/server.log" "$DURATION" "$CONNECTIONS" <<'PY'
import collections, json, sys
s = json.loads(sys.argv[1])
failed = s["errors_connect"] + s["errors_read"] + s["errors_write"] + s["errors_status"] + s["errors_timeout"]
print()
print(f"POST /predict (spam-nb), {sys.argv[3]} s, {sys.argv[4]} connections:")
print(f"requests {s['requests']}  failed {failed}  rps {s['rps']:.0f}  "
      f"p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  max {s['max_ms']:.2f} ms")
# The server's ERROR and WARN lines, by message (the refused load, the
# requests for the unloaded model).
seen = collections.Counter()
for line in open(sys.argv[2], errors="replace"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("level") in ("ERROR", "WARN"):
        f = {**e, **e.get("fields", {})}
        seen[(e["level"], f.get("message", ""), f.get("code", ""))] += 1
for (level, message, code), n in sorted(seen.items()):
    print(f"server log: {n} x {level} {message}" + (f" ({code})" if code else ""))
sys.exit(1 if failed else 0)
PY
[[ "$bad" == 0 ]] || { log "a spam-cnb step answered otherwise than expected (server log below)"; tail -n 20 "$work/server.log" >&2; exit 1; }
