#!/usr/bin/env bash
# The Prefect flow (orchestration/prefect/flow.py) run with the real prefect
# package (pinned and hash-checked, scripts/install-prefect.sh, whose venv also
# holds pytest) in local ephemeral mode (a temporary API in a subprocess,
# PREFECT_HOME in a temp dir, no server to start) against the real
# `nbserve retrain` (tests/prefect/, pytest):
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
#     redaction rules themselves: tests/prefect/test_prefect_redact.py;
#   - tests/prefect/test_prefect_serve.py: `flow.py serve` refuses without
#     PREFECT_API_URL (exit 2, one line); the flow sets the ephemeral
#     start-up wait itself; a real `prefect server start` (own process group,
#     free port) with `flow.py serve --interval 5` against it: a scheduled run
#     reaches COMPLETED through the API; SIGINT and SIGTERM to flow.py alone,
#     a scheduled run's command in flight: exit 0, nothing left in its
#     session; SIGTERM mid `flow.py run`: the temporary API and the command go.
#   - tests/prefect/test_prefect_count_flow.py: orchestration/prefect/count_flow.py
#     counts 7 shards on a Dask LocalCluster of 2 worker processes
#     (prefect-dask) and merges them as a tree passing file paths: the model's
#     sha256 is `nbserve train`'s on the shards; a shard with a bad row fails
#     the run naming it, and no model is written.
# Data: tests/retrain/make_data.py (from the committed tests/data/sample.csv).
# Debug build unless NBSERVE_BIN is set. Timings and gate numbers are printed
# in the closing "figures"; prints `prefect: N passed, M failed` (from pytest's
# JUnit XML); pytest arguments pass through.
#
#   scripts/test-prefect.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
PREFECT_BIN="$(scripts/install-prefect.sh | tail -n 1)"
pytest_suite prefect "$PREFECT_BIN/python" tests/prefect "$@"
