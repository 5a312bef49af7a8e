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
if [[ -z "${NBSERVE_BIN_RELEASE:-}" ]]; then
    cargo build --locked --release --quiet --bin nbserve
    # shellcheck source=scripts/lib/cargo.sh
    source scripts/lib/cargo.sh
    NBSERVE_BIN_RELEASE="$(cargo_bin release nbserve)"
    export NBSERVE_BIN_RELEASE
fi
pytest_suite hardening "$py" tests/hardening "$@"
