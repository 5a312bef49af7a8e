#!/usr/bin/env bash
# Schema-driven API fuzzing: Schemathesis (scripts/api-fuzz-requirements.txt:
# every package pinned and hash-checked; venv under
# ${NBSERVE_CACHE:-~/.cache/nbserve}) generates valid and invalid requests for
# every operation in the running server's /openapi.json and checks that
#   - no answer is a 5xx                        (not_a_server_error)
#   - every body matches its documented schema  (response_schema_conformance)
#   - every status is documented                (status_code_conformance)
#   - every content type is documented          (content_type_conformance)
# Bounded: FUZZ_EXAMPLES (30) cases per operation and FUZZ_SECS (30) s of
# fuzzing in all, fixed seed (FUZZ_SEED, 1) so a run is reproducible.
# Starts its own server (debug build; NBSERVE_BIN to use another binary) on a
# free 127.0.0.1 port with an admin token, so /admin/reload is fuzzed with
# valid credentials, and stops it on exit.
#
#   scripts/api-fuzz.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
SCHEMATHESIS_VERSION="4.32.5"
req="$root/scripts/api-fuzz-requirements.txt"
FUZZ_EXAMPLES="${FUZZ_EXAMPLES:-30}"
FUZZ_SECS="${FUZZ_SECS:-30}"
FUZZ_SEED="${FUZZ_SEED:-1}"
token="api-fuzz-token-$$"

log() { echo "api-fuzz: $*" >&2; }

# Every package pinned with its sha256 (wheels for CPython 3.11, x86_64 Linux).
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
venv="$(pinned_venv schemathesis "$req")"

# shellcheck source=scripts/lib/local-server.sh
source scripts/lib/local-server.sh
local_server_setup
local_server_start_shipped "$work/server.log"
url="http://127.0.0.1:$port"

log "schemathesis $SCHEMATHESIS_VERSION against $url/openapi.json (${FUZZ_EXAMPLES} examples/operation, ${FUZZ_SECS}s, seed $FUZZ_SEED)"
status=0
(cd "$work" && "$venv/bin/st" run "$url/openapi.json" --url "$url" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --header "Authorization: Bearer $token" \
    --max-examples "$FUZZ_EXAMPLES" --max-time "$FUZZ_SECS" --seed "$FUZZ_SEED" \
    --workers 2 --request-timeout 20 --warnings off) || status=1
kill -0 "$pid" 2>/dev/null || { log "FAIL: the server died"; status=1; }
# Independent of schemathesis: the server's own count of 5xx answers.
if curl -sf "$url/metrics" | grep -E '^nbserve_http_requests_total\{.*status="5' >&2; then
    log "FAIL: 5xx answers in /metrics"; status=1
fi
if grep -E '"level":"ERROR"|panicked' "$work/server.log" >&2; then
    log "FAIL: errors or panics in the server log"; status=1
fi
if [[ $status -eq 0 ]]; then log "PASS"; else log "FAIL"; fi
exit $status
