#!/usr/bin/env bash
# nbserve against a real MLflow tracking server and model registry
# (tests/mlflow/, pytest): installs MLflow (scripts/install-mlflow.sh, pinned),
# then the suite starts `mlflow server` on a free loopback port with a SQLite
# backend store and a local artifact destination in a temporary directory and
# checks:
#  - `train` with tracking: the run read back through MLflow's REST API has
#    the params, metrics equal to the artifact's evaluation, the tags, status
#    FINISHED, and the artifact downloads byte-identical to the local file;
#  - `tune` with tracking: the run holds the chosen point's cross-validation
#    mean/std, Brier, ECE, the temperature and the grid, equal to the artifact;
#  - `--register` gives versions 1, 2, 3; `promote` moves `champion` to 1 and
#    refuses the below-gate version 3 (exit 5, alias unchanged);
#  - two servers on `models:/NAME@champion` polling every 2 s: `/model` shows
#    registry version and run id; after `promote` to version 2 both switch
#    within two intervals (+2 s) under steady /predict traffic with zero failed
#    requests; pointing the alias at version 3 behind promote's back is
#    refused (logged, counted) and version 2 keeps serving;
#  - `retrain` with model.path = models:/NAME@champion (pointing at the
#    below-gate version): scores it on the holdout, registers version 4, moves
#    champion, the polling server follows, the run carries the verdict; a
#    retrain under --min-f1-macro 0.99 exits 5, registers nothing, run FAILED;
#    the same retrain again is unchanged: exit 0, nothing registered, run FINISHED;
#  - learning in place (test_mlflow_learning.py): a promoted challenger is
#    logged as a run tagged learning_in_place (learned/forgotten), its artifact
#    byte-identical to the served file, registered as a new version; a refused
#    one leaves a FAILED run; on models:/NAME@champion the alias moves to it;
#  - with MLflow stopped: `train` fails with exit 1 and one line that holds no
#    secret and leaves no file; the running server keeps serving; a server
#    starting on the unreachable registry exits 4.
# The switch times and the traffic seen are printed in the closing "figures".
# Prints `mlflow: N passed, M failed` (from pytest's JUnit XML); pytest
# arguments pass through (-k PATTERN, -x, ...).
#
# Env: NBSERVE_BIN (default: the debug build, built if missing), NBSERVE_CACHE.
# Only 127.0.0.1 and free ports are used; everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
NBSERVE_MLFLOW_BIN="$(scripts/install-mlflow.sh | tail -n1)"
export NBSERVE_MLFLOW_BIN
pytest_suite mlflow "$(pytest_venv)" tests/mlflow "$@"
