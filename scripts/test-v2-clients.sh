#!/usr/bin/env bash
# The Open Inference Protocol (KServe V2) routes driven by real clients nobody
# here wrote (tests/v2_clients/clients.py): tritonclient[http] with its defaults
# (binary tensor data both ways) and with binary_data=False, and
# open-inference-openapi (JSON). Their results must equal /predict's for the
# same texts. Clients pinned and hash-checked in
# scripts/test-v2-clients-requirements.txt, venv under ${NBSERVE_CACHE:-~/.cache/nbserve}.
# Starts its own server (debug build; NBSERVE_BIN to use another binary) on a
# free 127.0.0.1 port and stops it on exit. Prints `N passed, M failed`.
#
#   scripts/test-v2-clients.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
token="v2-clients-token-$$"

log() { echo "test-v2-clients: $*" >&2; }

# Wheels for CPython 3.11, x86_64 Linux.
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
venv="$(NBSERVE_PYTHON="${NBSERVE_PYTHON:-python3.11}" pinned_venv v2-clients scripts/test-v2-clients-requirements.txt)"

# shellcheck source=scripts/lib/local-server.sh
source scripts/lib/local-server.sh
local_server_setup
local_server_start_shipped "$work/server.log"

status=0
"$venv/bin/python" tests/v2_clients/clients.py "http://127.0.0.1:$port" || status=1
kill -0 "$pid" 2>/dev/null || { log "FAIL: the server died"; status=1; }
if grep -E '"level":"ERROR"|panicked' "$work/server.log" >&2; then
    log "FAIL: errors or panics in the server log"; status=1
fi
exit $status
