#!/usr/bin/env bash
# A fleet on one machine: three nbserve processes on their own ports, scraped by
# one real Prometheus (scripts/install-prometheus.sh). The held-out split of the
# real dataset (data/spamassassin.csv, `nbserve split --test-size 0.2 --seed 42`)
# is dealt round-robin to the three: each prediction is labelled through
# /feedback on the replica that made it. The model dashboard's fleet-wide F1
# macro, balanced accuracy and accuracy (PromQL over all replicas' confusion
# counters) must equal `nbserve evaluate` on the union to 1e-6 — the evidence
# that the monitoring adds up across replicas (tests/observability/check.py fleet).
#
#   scripts/test-fleet.sh          # NBSERVE_BIN to use another binary
#
# Only 127.0.0.1 and free ports; everything started is stopped on exit.
# Prints `N passed, M failed` (check.py's count).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
REPLICAS=3
CHECK=(python3 "$ROOT/tests/observability/check.py")
tmp="$(mktemp -d "${TMPDIR:-/tmp}/nbserve-fleet.XXXXXX")"
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [[ $rc -ne 0 ]]; then
    for log in "$tmp"/*.log; do
      [[ -f "$log" ]] && { echo "--- last lines of ${log##*/}"; tail -n 20 "$log"; }
    done
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/lib/local-server.sh
source scripts/lib/local-server.sh   # for local_server_free_port only
wait_for() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "timed out after ${timeout}s waiting for $what" >&2; return 1; fi
    sleep 0.25
  done
}

PROM_BIN="$(scripts/install-prometheus.sh | tail -n1)"
# shellcheck source=scripts/lib/cargo.sh
source scripts/lib/cargo.sh
NBSERVE_BIN="${NBSERVE_BIN:-$(cargo_bin debug nbserve)}"
[[ -x "$NBSERVE_BIN" ]] || cargo build --quiet --bin nbserve
[[ -f data/spamassassin.csv ]] || scripts/fetch-data.sh
"$NBSERVE_BIN" split --data data/spamassassin.csv --train-out "$tmp/train.csv" \
  --test-out "$tmp/test.csv" --test-size 0.2 --seed 42
"$NBSERVE_BIN" evaluate --model models/spam-nb.json --data "$tmp/test.csv" --json >"$tmp/offline.json"

urls=()
targets=()
for i in $(seq "$REPLICAS"); do
  port="$(local_server_free_port)"
  NBSERVE__SERVER__HOST=127.0.0.1 NBSERVE__SERVER__PORT="$port" \
    NBSERVE__FEEDBACK__WINDOW=2000 NBSERVE__MODEL__PATH="$ROOT/models/spam-nb.json" \
    NBSERVE__MODEL__DIR="$ROOT/models" NBSERVE__LOG__FORMAT=json \
    "$NBSERVE_BIN" serve >"$tmp/nbserve-$i.log" 2>&1 &
  pids+=($!)
  wait_for 30 "replica $i on port $port" curl -fsS "http://127.0.0.1:$port/ready"
  urls+=(--url "http://127.0.0.1:$port")
  targets+=(--nbserve "127.0.0.1:$port")
done
pport="$(local_server_free_port)"
prom="http://127.0.0.1:$pport"
"${CHECK[@]}" prom-config --out "$tmp/prometheus.yml" --rules "$ROOT/prometheus/alerts.yml" \
  "${targets[@]}" --prometheus "127.0.0.1:$pport"
"$PROM_BIN/prometheus" --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="127.0.0.1:$pport" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
wait_for 20 "Prometheus $prom/-/ready" curl -fsS "$prom/-/ready"
echo "fleet: $REPLICAS replicas (${urls[*]//--url /}) scraped by Prometheus on $prom"
"${CHECK[@]}" fleet "${urls[@]}" --prom "$prom" --data "$tmp/test.csv" --offline "$tmp/offline.json"
