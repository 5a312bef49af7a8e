#!/usr/bin/env bash
# Install (once) Prefect for orchestration/prefect/flow.py and print the
# directory holding the venv's `python`.
#
#   PREFECT_PY="$(scripts/install-prefect.sh | tail -n1)/python"
#   "$PREFECT_PY" orchestration/prefect/flow.py run --data ... --holdout ...
#
# prefect==3.9.1 and every dependency pinned with its sha256 in
# scripts/prefect-requirements.txt (wheels for CPython 3.11, x86_64 Linux;
# NBSERVE_PYTHON picks another interpreter). The venv lives at
# $NBSERVE_CACHE/venv-prefect-<hash of the file>, made once (~260 MB). Progress goes to stderr; only the last line of stdout is the bin dir.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/venv.sh
source "$root/scripts/lib/venv.sh"
venv="$(NBSERVE_PYTHON="${NBSERVE_PYTHON:-python3.11}" pinned_venv prefect "$root/scripts/prefect-requirements.txt")"
"$venv/bin/python" -c 'import prefect; print("install-prefect: prefect", prefect.__version__, "in", prefect.__file__)' >&2
echo "$venv/bin"
