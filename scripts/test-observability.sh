#!/usr/bin/env bash
# Functions here run through check/need ("$@") and trap, which shellcheck
# does not follow: its SC2329 "never invoked" is a false alarm.
# shellcheck disable=SC2329
# Tests the monitoring files (prometheus.yml, prometheus/, alertmanager.yml, grafana/):
#  1. installs Prometheus + promtool and Alertmanager + amtool (Debian's packages,
#     scripts/install-prometheus.sh, scripts/install-alertmanager.sh)
#  2. promtool check config / check rules / test rules (rule unit tests),
#     amtool check-config
#  3. dashboard + provisioning structure (tests/observability/check.py static)
#  4. live: runs the real nbserve and a real Prometheus scraping it every 1s
#     with the alert rules loaded, drives traffic (predictions of both
#     classes, batches, 4xx, a reload, feedback, labelled examples: 2 per class
#     of tests/data/sample.csv, hence `--examples 4`), then evaluates EVERY PromQL
#     expression of the dashboards and the rules through the HTTP API: all
#     must be valid and every dashboard query must return data (except the
#     few whitelisted in check.py, with their reason).
#
# The Model lifecycle panels must show the served artifact's age (now minus its
# created_at), one version, the accepted examples and kept prediction text.
#
# The server gets a temporary model.dir holding the shipped model and a broken
# artifact; a reload of the broken one must make NbserveModelReloadFailing fire,
# and the fleet live F1/BA/accuracy computed in PromQL from the feedback
# counters must equal the server's own nbserve_live_* gauges.
#
# Before that traffic, the held-out split of the real dataset (data/spamassassin.csv,
# `nbserve split --test-size 0.2 --seed 42`: the split models/spam-nb.json was
# evaluated on) is replayed through /predict/batch and /feedback/batch: live
# quality (/model/quality) must equal `nbserve evaluate` and the artifact's stored
# figures to 1e-9, the dashboards' fleet PromQL to 1e-6. After it, wrong labels
# and one-class traffic must drop live F1 and make the NbserveLiveF1BelowGate and
# NbserveLabelDrift expressions true (both rules go pending; their `for` is 15m).
#
# Prometheus sends its alerts to a real Alertmanager whose receivers post to a
# webhook listener of the test's own: the Watchdog must arrive at the watchdog
# receiver, the failed reload's NbserveModelReloadFailing at the ticket receiver,
# and once nbserve is stopped NbserveDown (`for` 2s in the test's copy of the
# rules) at the page receiver; the delivery delays are printed.
#
# Env: NBSERVE_BIN (default: the debug build, built if missing),
#      NBSERVE_OBS_LIVE=0 to skip step 4, NBSERVE_CACHE (Prometheus and Alertmanager cache),
#      NBSERVE_OBS_REPLAY=0 to skip the real-dataset replay (no data/spamassassin.csv
#      and no registry access to fetch it).
# Only 127.0.0.1 and free ports are used; everything started is stopped on exit.
# Every check below runs even if one before it failed (unless what it needs
# could not be set up); the last line is `observability: N passed, M failed`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
started=$(date +%s)
CHECK=(python3 "$ROOT/tests/observability/check.py")

step() { printf '\n== %s\n' "$*"; }

passed=0
failed=0
# check NAME CMD...: one counted check.
check() {
  local name="$1" rc=0
  shift
  "$@" || rc=$?
  if [[ $rc -eq 0 ]]; then
    passed=$((passed + 1)); echo "PASS: $name"
  else
    failed=$((failed + 1)); echo "FAIL: $name (exit status $rc)"
  fi
}
# need NAME CMD...: a check the rest depends on; stops the run if it fails.
need() {
  local before=$failed
  check "$@"
  if [[ $failed -ne $before ]]; then
    echo "observability: the remaining checks need this one; stopping"
    finish
  fi
}
finished=0
finish() {
  finished=1
  echo "observability: $passed passed, $failed failed"
  if [[ $failed -eq 0 ]]; then exit 0; else exit 1; fi
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/nbserve-obs.XXXXXX")"
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
    for log in "$tmp"/nbserve.log "$tmp"/prometheus.log "$tmp"/alertmanager.log "$tmp"/webhook.log; do
      [[ -f "$log" ]] && { echo "--- last lines of ${log##*/}"; tail -n 30 "$log"; }
    done
  fi
  rm -rf "$tmp"
  if [[ $rc -ne 0 && $finished -eq 0 ]]; then
    echo "observability: stopped early (exit status $rc)"
    echo "observability: $passed passed, $((failed + 1)) failed"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/lib/poll.sh
source "$ROOT/scripts/lib/poll.sh"

step "install Prometheus"
PROM_BIN="$(scripts/install-prometheus.sh | tail -n1)"
PROMTOOL="$PROM_BIN/promtool"
"$PROMTOOL" --version 2>&1 | head -n1

step "install Alertmanager"
AM_BIN="$(scripts/install-alertmanager.sh | tail -n1)"

step "promtool check config / check rules / test rules"
# A copy with the same layout, so the relative rule path resolves the same way
# it does in the container (/etc/prometheus/prometheus/alerts.yml).
mkdir -p "$tmp/config/prometheus"
cp prometheus.yml "$tmp/config/prometheus.yml"
cp prometheus/alerts.yml "$tmp/config/prometheus/alerts.yml"
check "promtool check config" "$PROMTOOL" check config "$tmp/config/prometheus.yml"
check "promtool check rules" "$PROMTOOL" check rules prometheus/alerts.yml
check "promtool test rules (alert unit tests)" "$PROMTOOL" test rules prometheus/alerts_test.yml

step "amtool check-config"
check "amtool check-config alertmanager.yml" "$AM_BIN/amtool" check-config alertmanager.yml

step "dashboards and provisioning"
check "dashboards and provisioning (check.py static)" "${CHECK[@]}" static

if [[ "${NBSERVE_OBS_LIVE:-1}" == 0 ]]; then
  echo "!!! NBSERVE_OBS_LIVE=0: the live evaluation is SKIPPED (not counted) !!!"
  echo "observability: static part in $(($(date +%s) - started))s"
  finish
fi

step "live: nbserve + Prometheus"
# shellcheck source=scripts/lib/cargo.sh
source "$ROOT/scripts/lib/cargo.sh"
NBSERVE_BIN="${NBSERVE_BIN:-$(cargo_bin debug nbserve)}"
if [[ ! -x "$NBSERVE_BIN" ]]; then
  echo "building $NBSERVE_BIN"
  cargo build --bin nbserve
fi
[[ -f models/spam-nb.json ]] || { echo "models/spam-nb.json missing" >&2; exit 1; }

replay="${NBSERVE_OBS_REPLAY:-1}"
# The dashboards hide fleet live quality below $min_samples labels (100); the
# traffic alone labels ~66 predictions, the replay ~1,200.
min_samples=100
[[ "$replay" != 0 ]] || min_samples=10
if [[ "$replay" != 0 ]]; then
  # The held-out split of the real dataset and its offline evaluation.
  [[ -f data/spamassassin.csv ]] || scripts/fetch-data.sh
  # The split the artifact records (its test size and seed), so a retrained
  # model is replayed on its own held-out part.
  read -r test_size seed < <(python3 -c 'import json, sys; t = json.load(open(sys.argv[1]))["training"]; print(repr(t["test_size"]), t["seed"])' models/spam-nb.json)
  need "split of data/spamassassin.csv (test size $test_size, seed $seed)" \
    "$NBSERVE_BIN" split --data data/spamassassin.csv --train-out "$tmp/train.csv" \
    --test-out "$tmp/test.csv" --test-size "$test_size" --seed "$seed"
  "$NBSERVE_BIN" evaluate --model models/spam-nb.json --data "$tmp/test.csv" --json >"$tmp/offline.json"
else
  echo "!!! NBSERVE_OBS_REPLAY=0: the real-dataset replay is SKIPPED (not counted) !!!"
fi

live_started=$(date +%s)
# The shipped model, plus a broken artifact in the same model.dir so a reload
# can fail for real (and NbserveModelReloadFailing fire).
mkdir -p "$tmp/models"
cp models/spam-nb.json "$tmp/models/spam-nb.json"
echo '{"not": "a model"}' >"$tmp/models/broken.json"
# admin.token must be at least 8 characters (the server refuses shorter ones).
token="test-observability"
port="$(free_port)"
# feedback.window holds all of the test's feedback (replay ~1,200 + traffic + wrong
# labels), so the server's live gauges and the fleet PromQL cover the same samples.
# The feedback log with kept texts and labelled examples is on (the retrain loop's
# inputs), so the Model lifecycle panels show real examples and kept-text bytes.
NBSERVE__SERVER__HOST=127.0.0.1 \
  NBSERVE__SERVER__PORT="$port" \
  NBSERVE__FEEDBACK__WINDOW=2000 \
  NBSERVE__FEEDBACK__LOG_PATH="$tmp/feedback.jsonl" \
  NBSERVE__FEEDBACK__KEEP_TEXT=true \
  NBSERVE__FEEDBACK__ACCEPT_EXAMPLES=true \
  NBSERVE__ADMIN__TOKEN="$token" \
  NBSERVE__MODEL__PATH="$tmp/models/spam-nb.json" \
  NBSERVE__MODEL__DIR="$tmp/models" \
  "$NBSERVE_BIN" serve >"$tmp/nbserve.log" 2>&1 &
nbserve_pid=$!
pids+=("$nbserve_pid")
url="http://127.0.0.1:$port"
nbserve_ready() {
  kill -0 "$nbserve_pid" 2>/dev/null || { echo "nbserve exited" >&2; exit 1; }
  curl -fsS "$url/ready"
}
need "nbserve ready on $url" wait_for 60 "nbserve $url/ready" nbserve_ready

# The test's own webhook receiver and a real Alertmanager posting to it.
"${CHECK[@]}" webhook --port-file "$tmp/webhook.port" --log "$tmp/webhook.log" &
pids+=($!)
wait_for 10 "the webhook listener" test -s "$tmp/webhook.port"
webhook="http://127.0.0.1:$(cat "$tmp/webhook.port")"
"${CHECK[@]}" am-config --out "$tmp/alertmanager.yml" --webhook "$webhook"
"$AM_BIN/amtool" check-config "$tmp/alertmanager.yml" >/dev/null
aport="$(free_port)"
"$AM_BIN/prometheus-alertmanager" \
  --config.file="$tmp/alertmanager.yml" \
  --storage.path="$tmp/am-data" \
  --web.listen-address="127.0.0.1:$aport" \
  --cluster.listen-address="" \
  --log.level=warn >"$tmp/alertmanager.log" 2>&1 &
pids+=($!)
wait_for 20 "Alertmanager on :$aport" curl -fsS "http://127.0.0.1:$aport/-/ready"

pport="$(free_port)"
while [[ "$pport" == "$port" || "$pport" == "$aport" ]]; do pport="$(free_port)"; done
prom="http://127.0.0.1:$pport"
# The test's copy of the rules: NbserveDown after 2s instead of 1m, so that
# stopping nbserve at the end shows a real alert reaching the webhook.
"${CHECK[@]}" prom-config --out "$tmp/prometheus.yml" --rules "$ROOT/prometheus/alerts.yml" \
  --nbserve "127.0.0.1:$port" --prometheus "127.0.0.1:$pport" --alertmanager "127.0.0.1:$aport" \
  --for NbserveDown=2s
"$PROMTOOL" check config "$tmp/prometheus.yml" >/dev/null
prom_started=$(date +%s.%N)
# resend-delay 1s: alerts that fired before the notifier knew the Alertmanager
# are sent again at once, not after the default minute.
"$PROM_BIN/prometheus" \
  --config.file="$tmp/prometheus.yml" \
  --storage.tsdb.path="$tmp/tsdb" \
  --web.listen-address="127.0.0.1:$pport" \
  --rules.alert.resend-delay=1s \
  --log.level=warn >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
need "Prometheus ready on $prom" wait_for 60 "Prometheus $prom/-/ready" curl -fsS "$prom/-/ready"
scraped() {
  curl -fsS "$prom/api/v1/query" --data-urlencode 'query=up{job="nbserve"} == 1' | grep -q '"value"'
}
need "Prometheus scrapes nbserve" wait_for 60 "the first scrape of nbserve" scraped
echo "Prometheus on $prom scrapes nbserve, sends alerts to Alertmanager on :$aport"

if [[ "$replay" != 0 ]]; then
  step "live: replay the held-out split of data/spamassassin.csv"
  check "replay of the held-out split: live quality = offline" \
    "${CHECK[@]}" replay --url "$url" --prom "$prom" --data "$tmp/test.csv" \
    --offline "$tmp/offline.json" --model "$ROOT/models/spam-nb.json"
fi

step "live: traffic"
check "traffic: documented statuses and error codes" \
  "${CHECK[@]}" traffic --url "$url" --token "$token" --sample "$ROOT/tests/data/sample.csv" \
  --broken-model broken.json --examples
check "Prometheus scraped the traffic" "${CHECK[@]}" wait-scraped --url "$url" --prom "$prom" --timeout 60

step "live: evaluate every PromQL expression"
check "every dashboard and rule expression: valid, with data" \
  "${CHECK[@]}" live --prom "$prom" --job nbserve --instance ".*" --since "$prom_started" \
  --min-samples "$min_samples" --expect-firing NbserveModelReloadFailing --expect-firing Watchdog \
  --model-file "$tmp/models/spam-nb.json" --examples 4

step "live: wrong labels and one-class traffic"
check "wrong labels and one-class traffic: live F1 falls, alerts pending" \
  "${CHECK[@]}" degrade --url "$url" --prom "$prom" --timeout 60 --min-samples "$min_samples" \
  --data "$([[ "$replay" != 0 ]] && echo "$tmp/test.csv" || echo "$ROOT/tests/data/sample.csv")"

step "live: alerts reach the webhook through Alertmanager"
check "Watchdog reaches the watchdog receiver" \
  "${CHECK[@]}" wait-webhook --log "$tmp/webhook.log" --alert Watchdog --receiver watchdog \
  --since "$prom_started" --since-what "Prometheus start" --timeout 60
# A ticket: the failed reload of the traffic step (NbserveModelReloadFailing).
check "NbserveModelReloadFailing reaches the ticket receiver" \
  "${CHECK[@]}" wait-webhook --log "$tmp/webhook.log" --alert NbserveModelReloadFailing --receiver ticket \
  --timeout 30
# Stop nbserve for real: NbserveDown (its `for` shortened to 2s here) must be
# delivered to the page receiver.
kill "$nbserve_pid"
wait "$nbserve_pid" 2>/dev/null || true
stopped=$(date +%s.%N)
check "NbserveDown reaches the page receiver" \
  "${CHECK[@]}" wait-webhook --log "$tmp/webhook.log" --alert NbserveDown --receiver page \
  --since "$stopped" --since-what "nbserve stopped" --timeout 60

echo
echo "observability: finished in $(($(date +%s) - started))s (live part $(($(date +%s) - live_started))s)"
finish
