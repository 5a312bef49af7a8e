#!/usr/bin/env bash
# The cost of one /predict request, counted in instructions (valgrind's
# callgrind) on the release binary, against the committed baseline
# tests/perf/baseline.json: fails when it grows by more than 10 %
# (tests/perf/). Deterministic, so not a timed test.
# NBSERVE_BIN_RELEASE names a built release binary; otherwise `cargo build
# --release` runs here, which is a no-op when the hardening suite built it.
# Prints `perf: N passed, M failed` (from pytest's JUnit XML).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
# valgrind from PATH, else unpacked from Debian's archive into the cache.
PATH="$(scripts/install-valgrind.sh | tail -n1):$PATH"
export PATH
py="$(pytest_venv)"
# shellcheck source=scripts/lib/cargo.sh
source scripts/lib/cargo.sh
export_release_nbserve
pytest_suite perf "$py" tests/perf "$@"
