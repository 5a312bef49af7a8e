#!/usr/bin/env bash
# OpenTelemetry traces against a real OTLP/HTTP receiver (tests/otel/, pytest):
# the receiver decodes what nbserve exports with the official opentelemetry-proto
# classes. Trace-context propagation, sampling at 0, tracing off by default, a
# dead collector. Receiver and pytest pinned and hash-checked in
# scripts/test-otel-requirements.txt, venv under ${NBSERVE_CACHE:-~/.cache/nbserve}.
# Starts its own servers (debug build; NBSERVE_BIN to use another binary).
# Prints `otel: N passed, M failed` (from pytest's JUnit XML); pytest arguments
# pass through.
#
#   scripts/test-otel.sh [-k PATTERN]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
# Wheels for CPython 3.11, x86_64 Linux.
venv="$(NBSERVE_PYTHON="${NBSERVE_PYTHON:-python3.11}" pinned_venv otel scripts/test-otel-requirements.txt)"
pytest_suite otel "$venv/bin/python" tests/otel "$@"
