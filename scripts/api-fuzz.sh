#!/usr/bin/env bash
# Schema-driven API fuzzing: Schemathesis (scripts/api-fuzz-requirements.txt:
# every package pinned and hash-checked; venv under
# ${NBSERVE_CACHE:-~/.cache/nbserve}) generates valid and invalid requests for
# every operation in the running server's /openapi.json and checks that
#   - no answer is a 5xx                        (not_a_server_error)
#   - every body matches its documented schema  (response_schema_conformance)
#   - every status is documented                (status_code_conformance)
#   - every content type is documented          (content_type_conformance)
# Bounded by cases, not by time: FUZZ_EXAMPLES (100) examples per operation,
# fixed seed (FUZZ_SEED, 1) so a run is reproducible, and at least
# FUZZ_MIN_CASES (600; seed 1 generates 703) test cases in all, or the run
# fails. FUZZ_TIMEOUT (900 s) only guards against a hang: reaching it fails.
# FUZZ_SECS (the former time cap) is refused.
# Starts its own server (debug build; NBSERVE_BIN to use another binary) on a
# free 127.0.0.1 port with an admin token and the same feedback token, so
# /admin/reload and the label-writing endpoints (/feedback, /feedback/batch,
# /examples) are fuzzed with valid credentials, and with
# feedback.accept_examples (and keep_text) on, so is POST /examples; stops it
# on exit.
#
#   scripts/api-fuzz.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
SCHEMATHESIS_VERSION="4.32.5"
req="$root/scripts/api-fuzz-requirements.txt"
FUZZ_EXAMPLES="${FUZZ_EXAMPLES:-100}"
FUZZ_MIN_CASES="${FUZZ_MIN_CASES:-600}"
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-900}"
FUZZ_SEED="${FUZZ_SEED:-1}"
if [[ -n "${FUZZ_SECS:-}" ]]; then
    echo "api-fuzz: FUZZ_SECS is no longer supported: fuzzing is bounded by cases (FUZZ_EXAMPLES), not time" >&2
    exit 2
fi
token="api-fuzz-token-$$"

log() { echo "api-fuzz: $*" >&2; }

# Every package pinned with its sha256 (wheels for CPython 3.11, x86_64 Linux).
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
venv="$(pinned_venv schemathesis "$req")"

# shellcheck source=scripts/lib/local-server.sh
source scripts/lib/local-server.sh
local_server_setup
# With a feedback log, kept texts and POST /examples on, so /examples is fuzzed
# past its 404 and feedback lines carry texts.
local_server_start_shipped "$work/server.log" \
    NBSERVE__FEEDBACK__LOG_PATH="$work/feedback.jsonl" \
    NBSERVE__FEEDBACK__KEEP_TEXT=true NBSERVE__FEEDBACK__ACCEPT_EXAMPLES=true \
    NBSERVE__FEEDBACK__TOKEN="$token"
url="http://127.0.0.1:$port"

passed=0
failed=0
check() {
    if [[ "$2" -eq 0 ]]; then
        passed=$((passed + 1)); log "PASS: $1"
    else
        failed=$((failed + 1)); log "FAIL: $1"
    fi
}

log "schemathesis $SCHEMATHESIS_VERSION against $url/openapi.json (${FUZZ_EXAMPLES} examples/operation, at least $FUZZ_MIN_CASES cases, seed $FUZZ_SEED)"
rc=0
(cd "$work" && timeout "$FUZZ_TIMEOUT" "$venv/bin/st" run "$url/openapi.json" --url "$url" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --header "Authorization: Bearer $token" \
    --max-examples "$FUZZ_EXAMPLES" --seed "$FUZZ_SEED" \
    --workers 2 --request-timeout 20 --warnings off) 2>&1 | tee "$work/st.log" || rc=$?
[[ $rc -eq 124 ]] && log "schemathesis did not finish within FUZZ_TIMEOUT=${FUZZ_TIMEOUT}s"
check "schemathesis: no 5xx, documented statuses, schemas and content types" "$rc"
cases="$(sed -n 's/^ *\([0-9][0-9]*\) generated.*/\1/p' "$work/st.log" | tail -n 1)"
rc=0; [[ -n "$cases" && "$cases" -ge "$FUZZ_MIN_CASES" ]] || rc=1
check "schemathesis generated ${cases:-no} test cases (at least $FUZZ_MIN_CASES)" "$rc"
rc=0; kill -0 "$pid" 2>/dev/null || rc=1
check "the server survived" "$rc"
# Independent of schemathesis: the server's own count of 5xx answers.
rc=0; ! curl -sf "$url/metrics" | grep -E '^nbserve_http_requests_total\{.*status="5' >&2 || rc=1
check "no 5xx answers in /metrics" "$rc"
rc=0; ! grep -E '"level":"ERROR"|panicked' "$work/server.log" >&2 || rc=1
check "no errors or panics in the server log" "$rc"
echo "api-fuzz: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
