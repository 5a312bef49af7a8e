# shellcheck shell=bash
# Sourced (not run) by scripts that start their own nbserve on 127.0.0.1:
# bench/reliability.sh and bench/soak.sh.
#
#   source scripts/lib/local-server.sh
#   local_server_setup                      # $work (temp dir) + EXIT trap
#   local_server_start LOG [VAR=VALUE ...]  # sets $port and $pid
#
# The caller sets BIN (the nbserve binary) and token (the admin token) and
# puts the models in $work/models (spam-nb.json is served).

# Sets BIN to $NBSERVE_BIN_RELEASE, or builds and uses the release binary;
# fetches the corpus if it is missing; writes the benchmark artifacts
# (bench/make_artifacts.sh) to $work/models. Needs local_server_setup first
# and a `log` function; the caller sets `root` (the repository root).
local_server_release_models() {
    BIN="${NBSERVE_BIN_RELEASE:-}"
    if [[ -z "$BIN" ]]; then
        log "building the release binary"
        cargo build --release --quiet --bin nbserve
        # shellcheck source=scripts/lib/cargo.sh
        # shellcheck disable=SC2154 # root: set by the caller
        source "$root/scripts/lib/cargo.sh"
        BIN="$(cargo_bin release nbserve)"
    fi
    [[ -f data/spamassassin.csv ]] || scripts/fetch-data.sh
    bench/make_artifacts.sh "$BIN" "$work/models" >&2
}

# Creates $work and a trap that stops every server local_server_start
# started (and any pid a caller adds to local_server_pids, e.g. a Prometheus)
# and removes $work on exit, also on failure or Ctrl-C.
local_server_setup() {
    work="$(mktemp -d)"
    pid=""
    local_server_pids=()
    trap local_server_cleanup EXIT
    trap 'exit 130' INT TERM
}

local_server_cleanup() {
    local p
    for p in "${local_server_pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}

# shellcheck source=scripts/lib/poll.sh
source "${BASH_SOURCE[0]%/*}/poll.sh"

local_server_free_port() {
    free_port
}

# Serves $work/models/spam-nb.json on a free loopback port with admin token
# $token and JSON logs to LOG; extra VAR=VALUE settings override. Returns once
# GET /ready answers 200 (60 s at most). Refused connects do not reach the
# server; the server binds only after the model passed the gate, so the first
# probe that connects is answered 200: the server's counts hold exactly one
# readiness probe (one connection, one GET /ready) besides the caller's traffic.
local_server_start() {
    local log="$1"
    shift
    : "${BIN:?local_server_start needs BIN}" "${token:?local_server_start needs token}"
    port="$(local_server_free_port)"
    env NBSERVE__SERVER__HOST=127.0.0.1 NBSERVE__SERVER__PORT="$port" \
        NBSERVE__MODEL__PATH="$work/models/spam-nb.json" NBSERVE__MODEL__DIR="$work/models" \
        NBSERVE__ADMIN__TOKEN="$token" NBSERVE__LOG__FORMAT=json "$@" \
        "$BIN" serve 2>"$log" >/dev/null &
    pid=$!
    local_server_pids+=("$pid")
    local _
    for _ in $(seq 600); do
        curl -fsS --max-time 30 -o /dev/null "http://127.0.0.1:$port/ready" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.1
    done
    echo "nbserve not ready within 60 s" >&2
    cat "$log" >&2
    exit 1
}
