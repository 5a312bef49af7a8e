#!/usr/bin/env bash
# A fleet on one machine (tests/fleet/, pytest): three nbserve processes on
# their own ports, scraped by one real Prometheus (scripts/install-prometheus.sh).
# The held-out split of the real dataset (data/spamassassin.csv, fetched by
# scripts/fetch-data.sh if missing; `nbserve split --test-size 0.2 --seed 42`)
# is dealt round-robin to the three: each prediction is labelled through
# /feedback on the replica that made it. The model dashboard's fleet-wide F1
# macro, balanced accuracy and accuracy (PromQL over all replicas' confusion
# counters) must equal `nbserve evaluate` on the union to 1e-9 — the evidence
# that the monitoring adds up across replicas.
#
#   scripts/test-fleet.sh          # NBSERVE_BIN to use another binary (default: debug build)
#
# Only 127.0.0.1 and free ports; everything started is stopped on exit. The
# figures are printed in the closing "figures"; prints `fleet: N passed, M
# failed` (from pytest's JUnit XML); pytest arguments pass through.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
NBSERVE_PROMETHEUS_BIN="$(scripts/install-prometheus.sh | tail -n1)"
export NBSERVE_PROMETHEUS_BIN
[[ -f data/spamassassin.csv ]] || scripts/fetch-data.sh
pytest_suite fleet "$(pytest_venv)" tests/fleet "$@"
