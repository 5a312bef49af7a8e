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
#   scripts/test-fleet.sh          # NBSERVE_BIN to use another binary (default: debug build)
#
# Only 127.0.0.1 and free ports; everything started is stopped on exit (the
# servers' logs are in the temporary directory, gone with it).
# Prints `N passed, M failed` (check.py's count).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
REPLICAS=3
CHECK=(python3 "$ROOT/tests/observability/check.py")
token="test-fleet-token-$$"

PROM_BIN="$(scripts/install-prometheus.sh | tail -n1)"
[[ -f data/spamassassin.csv ]] || scripts/fetch-data.sh
# shellcheck source=scripts/lib/local-server.sh
source scripts/lib/local-server.sh
local_server_setup   # $work; every server started below is stopped on exit
urls=()
targets=()
for i in $(seq "$REPLICAS"); do
  if [[ $i -eq 1 ]]; then
    local_server_start_shipped "$work/nbserve-$i.log" NBSERVE__FEEDBACK__WINDOW=2000
  else
    local_server_start "$work/nbserve-$i.log" NBSERVE__FEEDBACK__WINDOW=2000
  fi
  urls+=(--url "http://127.0.0.1:$port")
  targets+=(--nbserve "127.0.0.1:$port")
done
"$BIN" split --data data/spamassassin.csv --train-out "$work/train.csv" \
  --test-out "$work/test.csv" --test-size 0.2 --seed 42
"$BIN" evaluate --model models/spam-nb.json --data "$work/test.csv" --json >"$work/offline.json"

pport="$(local_server_free_port)"
prom="http://127.0.0.1:$pport"
"${CHECK[@]}" prom-config --out "$work/prometheus.yml" --rules "$ROOT/prometheus/alerts.yml" \
  "${targets[@]}" --prometheus "127.0.0.1:$pport"
"$PROM_BIN/prometheus" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$pport" --log.level=warn >"$work/prometheus.log" 2>&1 &
local_server_pids+=($!)
for _ in $(seq 80); do
  curl -fsS "$prom/-/ready" >/dev/null 2>&1 && break
  sleep 0.25
done
echo "fleet: $REPLICAS replicas (${urls[*]//--url /}) scraped by Prometheus on $prom"
"${CHECK[@]}" fleet "${urls[@]}" --prom "$prom" --data "$work/test.csv" --offline "$work/offline.json"
