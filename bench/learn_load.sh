#!/usr/bin/env bash
# Learning in place under load: serves the release nbserve with a champion
# trained with --statistics on part of the corpus, drives POST /predict with
# wrk while a labelled stream goes to /predict/batch, /feedback/batch and
# /learn, then compares champion and challenger, promotes the challenger and
# rolls back, all under the load (bench/learn_load.py says how).
#
#   bench/learn_load.sh                          # release build, defaults
#   NBSERVE_BIN=path/to/nbserve bench/learn_load.sh --duration 60 --batch 100
#
# Prints requests, failed requests (must be 0), learn throughput (examples/s),
# the challenger's memory and the artifact size before/after schema 3; exits 1
# when a request failed, the challenger did not beat the champion or the
# rollback did not bring it back. Needs wrk on PATH (bench/load.sh fetches one).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/wrk-bench.sh
source scripts/lib/wrk-bench.sh
wrk_bench learn_load bench/learn_load.py "$@"
