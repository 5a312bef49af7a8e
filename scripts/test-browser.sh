#!/usr/bin/env bash
# The API page at /docs in a real headless browser (tests/browser/): Debian's
# chromium (scripts/install-chromium.sh) driven by Playwright for Python
# (hash-pinned, tests/browser/requirements.txt). Debug build unless NBSERVE_BIN
# names a binary. Prints `N passed, M failed`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
NBSERVE_CHROMIUM="$(scripts/install-chromium.sh)"
export NBSERVE_CHROMIUM
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
venv="$(NBSERVE_PYTHON="${NBSERVE_PYTHON:-python3.11}" pinned_venv browser tests/browser/requirements.txt)"
run_pytest "$venv/bin/python" tests/browser "$@"
