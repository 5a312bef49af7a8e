#!/usr/bin/env bash
# Hardening regressions against the release binary, the way a client or an
# operator meets them (tests/hardening/): hostile requests, misbehaving model
# registries, corrupted stores, a crash in the middle of a promotion.
# NBSERVE_BIN_RELEASE names a built release binary; otherwise it is built here.
# Prints `hardening: N passed, M failed` (from pytest's JUnit XML).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
py="$(pytest_venv)"
# shellcheck source=scripts/lib/cargo.sh
source scripts/lib/cargo.sh
export_release_nbserve
pytest_suite hardening "$py" tests/hardening "$@"
