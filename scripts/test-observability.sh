#!/usr/bin/env bash
# Tests the monitoring files (prometheus.yml, prometheus/, alertmanager.yml,
# grafana/) in pytest (tests/observability/):
#  1. installs Prometheus + promtool and Alertmanager + amtool (Debian's packages,
#     scripts/install-prometheus.sh, scripts/install-alertmanager.sh);
#  2. test_observability_static.py: promtool check config / check rules / test
#     rules (rule unit tests), amtool check-config, dashboards and provisioning;
#  3. test_observability_live.py: runs the real nbserve and a real Prometheus
#     scraping it every 1s with the alert rules loaded, and a real Alertmanager
#     posting to the test's own webhook; replays the held-out split of the real
#     dataset (data/spamassassin.csv, fetched by scripts/fetch-data.sh if
#     missing: live quality must equal `nbserve evaluate` and the artifact's
#     stored figures), drives traffic (predictions of both classes, batches,
#     4xx, a reload and a failing one, feedback, labelled examples), then
#     evaluates EVERY PromQL expression of the dashboards and the rules through
#     the HTTP API: all must be valid and every dashboard query must return data
#     (except the few whitelisted in check.py, with their reason); then wrong
#     labels and one-class traffic (NbserveLiveF1BelowGate, NbserveLabelDrift
#     pending) and the alerts delivered through Alertmanager (Watchdog, the
#     failed reload's ticket, NbserveDown's page once nbserve is stopped).
#
# Env: NBSERVE_BIN (default: the debug build, built if missing),
#      NBSERVE_OBS_LIVE=0 to skip step 3, NBSERVE_CACHE (Prometheus and Alertmanager cache),
#      NBSERVE_OBS_REPLAY=0 to skip the real-dataset replay (no data/spamassassin.csv
#      and no registry access to fetch it). Skipped tests are reported, never
#      counted as passed.
# Only 127.0.0.1 and free ports are used; everything started is stopped at the
# end. The figures (replay, delivery delays, ...) are printed in the closing
# "figures"; prints `observability: N passed, M failed` (from pytest's JUnit
# XML); pytest arguments pass through.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
NBSERVE_PROMETHEUS_BIN="$(scripts/install-prometheus.sh | tail -n 1)"
NBSERVE_ALERTMANAGER_BIN="$(scripts/install-alertmanager.sh | tail -n 1)"
export NBSERVE_PROMETHEUS_BIN NBSERVE_ALERTMANAGER_BIN
if [[ "${NBSERVE_OBS_LIVE:-1}" != 0 && "${NBSERVE_OBS_REPLAY:-1}" != 0 && ! -f data/spamassassin.csv ]]; then
  scripts/fetch-data.sh
fi
pytest_suite observability "$(pytest_venv)" tests/observability "$@"
