#!/usr/bin/env bash
# Soak: SOAK_SECS (600) of mixed traffic against the release binary on
# 127.0.0.1 — /predict, /predict/batch (20 texts), /feedback for half the
# predictions, reads (/health, /ready, /model, /model/quality, /metrics) and
# deliberately bad requests (truncated JSON, empty and wrong-typed text, empty
# batch, unknown prediction id, invalid UTF-8) — from CONNS (16) keep-alive
# clients, with a reload every RELOAD_EVERY (10) s cycling through three valid
# artifacts. A bad request counts as success only when it gets its documented
# status. Reports errors (must be 0) and the server's RSS (VmRSS from
# /proc/PID/status) at the start, every reload, and the end. Not part of
# scripts/test.sh.
#
#   bench/soak.sh                 # 10 minutes
#   SOAK_SECS=120 bench/soak.sh   # 2 minutes
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
SOAK_SECS="${SOAK_SECS:-600}"
CONNS="${CONNS:-16}"
RELOAD_EVERY="${RELOAD_EVERY:-10}"
token="soak-token-$$"

log() { echo "soak: $*" >&2; }

# shellcheck source=scripts/lib/local-server.sh
source scripts/lib/local-server.sh
local_server_setup
local_server_release_models

local_server_start "$work/server.log"

log "${SOAK_SECS}s, $CONNS connections, reload every ${RELOAD_EVERY}s (server pid $pid, port $port)"
status=0
python3 bench/reliability.py soak --port "$port" --token "$token" --conns "$CONNS" \
    --seconds "$SOAK_SECS" --reload-every "$RELOAD_EVERY" --rss-pid "$pid" \
    --valid "rel-a.json=rel-a,rel-b.json=rel-b,spam-nb.json=2026.11.30" || status=1
kill -0 "$pid" 2>/dev/null || { log "FAIL: the server died"; status=1; }
grep -E 'VmHWM|VmRSS' "/proc/$pid/status" >&2 || true
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?; pid=""
[[ $rc -eq 0 ]] || { log "FAIL: exit code $rc after SIGTERM"; status=1; }
if grep -E '"level":"ERROR"|panicked' "$work/server.log" >&2; then
    log "FAIL: errors or panics in the server log"; status=1
fi
if [[ $status -eq 0 ]]; then log "PASS"; else log "FAIL"; fi
exit $status
