#!/usr/bin/env bash
# The documentation: builds the book (docs/, mdBook pinned by
# scripts/install-mdbook.sh) into a scratch directory, then runs tests/docs/:
# every relative link and anchor of the built pages resolves, and every
# runnable block of README.md and the book runs as written (tests/docs/
# runblocks.py says how). The reference pages themselves are checked against
# the code by `cargo test --test reference`. The recipes run the release
# binary NBSERVE_BIN_RELEASE when set (they train on the real corpus), else
# the debug one (NBSERVE_BIN, else built). Prints `N passed, M failed`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib/preflight.sh
source scripts/lib/preflight.sh
preflight test-docs.sh cargo python3.11 curl npm
mdbook="$(scripts/install-mdbook.sh)"
book="$(mktemp -d)"
trap 'rm -rf "$book"' EXIT
"$mdbook" build docs --dest-dir "$book" 2>&1 | grep -v ' INFO ' >&2 || true
[[ -f "$book/index.html" ]] || { echo "test-docs: mdbook build produced no book" >&2; exit 1; }
export NBSERVE_BOOK_DIR="$book"
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
run_pytest "$(pytest_venv)" tests/docs "$@"
