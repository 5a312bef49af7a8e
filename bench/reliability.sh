#!/usr/bin/env bash
# Nothing lost: reload under load, then SIGTERM under load, against the release
# binary on 127.0.0.1. Heavy (about a minute plus the build); not part of
# scripts/test.sh — tests/api/ holds the small versions that are.
#
#   bench/reliability.sh
#   CONNS=32 DURATION=10 RELOADS=10 bench/reliability.sh     # lighter
#
# (a) CONNS (64) keep-alive clients POST /predict for DURATION (20) s while
#     RELOADS (20) reloads go to /admin/reload, alternating valid artifacts and
#     invalid ones (corrupt byte, truncated file, below the gate) in a temporary
#     models directory. Pass: 0 failed requests, every model_version one of the
#     valid artifacts' versions, valid reloads 200, invalid ones 422.
# (b) CONNS clients, a fresh connection per request, for BEFORE (4) s; then
#     SIGTERM; they go on for AFTER (2) s. Pass: every request sent before the
#     signal got a complete 200; after it, connections are refused (or answered
#     in full, or closed unread by the kernel in the instant the listener
#     closes); the server's own count of accepted connections equals the
#     requests answered (+1 readiness probe), so no accepted connection went
#     unanswered; exit 0 and the drain (from the server log) within
#     server.shutdown_timeout_secs (SHUTDOWN_TIMEOUT, 30).
#
# Prints both JSON summaries; exit 1 if either fails. The server it started is
# stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CONNS="${CONNS:-64}"
DURATION="${DURATION:-20}"
RELOADS="${RELOADS:-20}"
BEFORE="${BEFORE:-4}"
AFTER="${AFTER:-2}"
SHUTDOWN_TIMEOUT="${SHUTDOWN_TIMEOUT:-30}"
token="reliability-token-$$"

log() { echo "reliability: $*" >&2; }

# shellcheck source=scripts/lib/local-server.sh
source scripts/lib/local-server.sh
local_server_setup

# --- artifacts -----------------------------------------------------------------
# Valid: the shipped model plus two retrained versions. Invalid: a corrupt copy
# (one byte flipped), a truncated copy, and a well-formed model below the gate.
local_server_release_models
valid="rel-a.json=rel-a,rel-b.json=rel-b,spam-nb.json=2026.11.30"
invalid="corrupt.json,truncated.json,below-gate.json"

status=0
local_server_start "$work/server-a.log" NBSERVE__SERVER__SHUTDOWN_TIMEOUT_SECS="$SHUTDOWN_TIMEOUT"
log "(a) reload under load: $CONNS connections, ${DURATION}s, $RELOADS reloads"
python3 bench/reliability.py reload --port "$port" --token "$token" --conns "$CONNS" \
    --duration "$DURATION" --reloads "$RELOADS" --valid "$valid" --invalid "$invalid" \
    --initial-version 2026.11.30 || status=1

kill -TERM "$pid"; wait "$pid" || true; pid=""

# (b) on a fresh server, so its count of accepted connections is exactly the
# readiness probe plus this phase's requests.
local_server_start "$work/server-b.log" NBSERVE__SERVER__SHUTDOWN_TIMEOUT_SECS="$SHUTDOWN_TIMEOUT"
log "(b) SIGTERM under load: $CONNS connections, signal after ${BEFORE}s"
python3 bench/reliability.py sigterm --port "$port" --pid "$pid" --conns "$CONNS" \
    --before "$BEFORE" --after "$AFTER" >"$work/sigterm.json" || status=1
cat "$work/sigterm.json"
rc=0
wait "$pid" || rc=$?
pid=""
log "server exit code $rc"
[[ $rc -eq 0 ]] || { log "FAIL: exit code $rc"; status=1; }
# Drain time, from the server's own log: SIGTERM received -> all connections closed.
python3 - "$work/server-b.log" "$work/sigterm.json" "$SHUTDOWN_TIMEOUT" <<'PY' || status=1
import datetime, json, sys
log, summary, limit = sys.argv[1], json.load(open(sys.argv[2])), float(sys.argv[3])
t = {}
accepted = None
for line in open(log):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    m = e.get("message", "")
    if m in ("SIGTERM received", "all connections closed", "drain timeout reached; closing remaining connections"):
        t[m] = datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
    if "connections_accepted" in e:
        accepted = e["connections_accepted"]
ok = True
if "all connections closed" in t and "SIGTERM received" in t:
    drain = (t["all connections closed"] - t["SIGTERM received"]).total_seconds()
    print(f"reliability: drain took {drain:.3f}s after SIGTERM (limit {limit:.0f}s)", file=sys.stderr)
    ok &= drain < limit
else:
    print("reliability: FAIL: no clean drain in the server log", file=sys.stderr)
    ok = False
completed = summary["completed_total"]
print(f"reliability: server accepted {accepted} connections; clients completed {completed} requests + 1 readiness probe", file=sys.stderr)
if accepted != completed + 1:
    print("reliability: FAIL: an accepted connection went unanswered", file=sys.stderr)
    ok = False
sys.exit(0 if ok else 1)
PY
if grep -hE '"level":"ERROR"|panicked' "$work"/server-*.log >&2; then
    log "FAIL: errors or panics in the server log"; status=1
fi
refused=$(grep -c '"model reload rejected' "$work/server-a.log" || true)
log "server log (a): $refused refused reloads logged"
if [[ $status -eq 0 ]]; then log "PASS"; else log "FAIL"; fi
exit $status
