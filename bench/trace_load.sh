#!/usr/bin/env bash
# What tracing costs in throughput and latency: POST /predict under wrk with
# tracing off, on at 1 % and on at 100 % sampling (spans exported to a local
# OTLP/HTTP sink). Arguments go to bench/trace_load.py (--mix, --duration,
# --runs, --connections); see its docstring.
#
#   NBSERVE_BIN=path/to/release/nbserve bench/trace_load.sh --mix short
#
# NBSERVE_BIN defaults to the release build (built if missing). Needs wrk
# (bench/load.sh fetches Debian's; `apt-get install wrk` works too).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/wrk-bench.sh
source scripts/lib/wrk-bench.sh
wrk_bench trace_load bench/trace_load.py "$@"
