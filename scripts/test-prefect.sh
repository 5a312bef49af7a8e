#!/usr/bin/env bash
# The Prefect flow (orchestration/prefect/flow.py) run with the real prefect
# package (pinned and hash-checked, scripts/install-prefect.sh) in local
# ephemeral mode (a temporary API in a subprocess, PREFECT_HOME in a temp dir,
# no server to start) against the real `nbserve retrain`:
#   - a run on correctly labelled feedback promotes: flow run COMPLETED, report
#     verdict `promoted`, model.path holds the new version, the old one is kept;
#   - the same run again is `unchanged` (the candidate predicts exactly as the
#     model in service): flow run COMPLETED, nothing under models/ changed;
#   - a run on mislabelled feedback is rejected: flow run FAILED with the
#     report's reason, model.path unchanged;
#   - Prefect's API recorded the states and the report artifacts; the cron
#     deployment `flow.py serve` builds carries its schedule; `flow.py run`
#     exits 5 on a rejection;
#   - credentials in the fetch and retrain command lines and in a failing
#     command's stderr are `***` in the logs and the state message; the
#     redaction rules themselves: tests/prefect/check_redact.py.
# Data: tests/retrain/make_data.py (from the committed tests/data/sample.csv).
# Debug build unless NBSERVE_BIN is set. Prints `N passed, M failed`.
#
#   scripts/test-prefect.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { echo "test-prefect: $*" >&2; }
started=$SECONDS

PREFECT_BIN="$(scripts/install-prefect.sh | tail -n 1)"

BIN="${NBSERVE_BIN:-}"
if [[ -z "$BIN" ]]; then
    cargo build --quiet --bin nbserve
    # shellcheck source=scripts/lib/cargo.sh
    source scripts/lib/cargo.sh
    BIN="$(cargo_bin debug nbserve)"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
# PASS/FAIL lines of the Python driver -> counters.
tally() {
    local line
    while IFS= read -r line; do
        case "$line" in
            PASS:*) passed=$((passed + 1)) ;;
            FAIL:*) failed=$((failed + 1)) ;;
        esac
        printf '%s\n' "$line"
    done
}

python3 tests/retrain/make_data.py "$work" >&2
mkdir -p "$work/models"
cat >"$work/settings.toml" <<EOF
[model]
path = "$work/models/spam-nb.json"
dir = "$work/models"
[gate]
min_f1_macro = 0.6
EOF
# v1: trained on the small base set only, so the field data can improve on it.
"$BIN" tune --data "$work/base.csv" --test-data "$work/holdout.csv" --out "$work/models/spam-nb.json" \
    --name spam-nb --model-version v1 --alpha 0.1,1 --min-df 1,2 --max-features 0 --folds 3 >/dev/null

# Local ephemeral Prefect: no API URL, state in the temp dir, no telemetry
# (this machine is offline anyway). The temporary API migrates a fresh
# database first: on 2 busy cores that can take longer than Prefect's default
# 20 s startup timeout.
unset PREFECT_API_URL PREFECT_API_KEY
export PREFECT_HOME="$work/prefect" PREFECT_SERVER_ALLOW_EPHEMERAL_MODE=true \
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_LEVEL=WARNING
status=0
# check_redact.py and check_flow.py exit 3 when checks failed (each printed);
# anything else non-zero means they stopped before their end.
tally < <("$PREFECT_BIN/python" tests/prefect/check_redact.py 2>&1 \
    || { rc=$?; [[ $rc -eq 3 ]] || echo "FAIL: check_redact.py stopped early (exit $rc)"; })
tally < <("$PREFECT_BIN/python" tests/prefect/check_flow.py "$work" "$BIN" 2>"$work/prefect.log" \
    || { rc=$?; [[ $rc -eq 3 ]] || echo "FAIL: check_flow.py stopped early (exit $rc)"; })
if ((failed > 0)); then
    log "Prefect's log (last 60 lines):"
    tail -n 60 "$work/prefect.log" >&2
    status=1
fi
log "took $((SECONDS - started)) s"
printf '%d passed, %d failed\n' "$passed" "$failed"
exit $status
