#!/usr/bin/env bash
# The retrain loop end to end with the real binary (tests/retrain/, pytest):
#   1. a server polling model.path (model.poll_interval_secs=1) serves v1 under
#      steady /predict traffic (tests/retrain/load.py: keep-alive clients, every
#      non-200 or connection error is a failure);
#   2. labelled field data arrives through the API: predictions whose texts the
#      server keeps (feedback.keep_text) labelled with /feedback/batch, and
#      POST /examples (feedback.accept_examples); the feedback log carries the texts;
#   3. `nbserve retrain` (base CSV + that log, fixed holdout) promotes v2 and
#      the server switches to it (GET /model and the clients see v2);
#   4. deliberately mislabelled examples (2 labels in 5 swapped, through
#      /examples): `nbserve retrain` exits 5, model.path is unchanged and the
#      server still serves v2;
#   5. `nbserve rollback` brings v1 back and the server follows;
#   6. zero failed requests over the whole run; no ERROR or panic in the server log.
# The timings (retrain durations, promote → served latencies), both gates'
# numbers from the reports and the load are printed in the closing "figures".
# Data: tests/retrain/make_data.py (from the committed tests/data/sample.csv).
# Debug build unless NBSERVE_BIN is set. Prints `retrain: N passed, M failed`
# (from pytest's JUnit XML); pytest arguments pass through.
#
#   scripts/test-retrain.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
pytest_suite retrain "$(pytest_venv)" tests/retrain "$@"
