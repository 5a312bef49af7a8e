#!/usr/bin/env bash
# Create (once) the Python venv for the scikit-learn parity suite and print its python.
#
#   PY=$(scripts/setup-python.sh)
#
# The venv lives at $NBSERVE_CACHE/venv-<sha256 of tests/parity/requirements.txt + python
# version>, so a changed pin gives a new venv and an unchanged one is reused. Only the
# last line of stdout is the interpreter path; progress goes to stderr.
# Needs CPython 3.11 (the pinned wheels are cp311); set NBSERVE_PYTHON to choose one.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
req="$root/tests/parity/requirements.txt"

base_py="${NBSERVE_PYTHON:-}"
if [[ -z "$base_py" ]]; then
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1; then base_py="$cand"; break; fi
    done
fi
if [[ -z "$base_py" ]]; then
    echo "setup-python: no python3 found (set NBSERVE_PYTHON)" >&2
    exit 1
fi
pyver="$("$base_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$pyver" != "3.11" ]]; then
    echo "setup-python: $base_py is Python $pyver; the pinned wheels need 3.11 (set NBSERVE_PYTHON)" >&2
    exit 1
fi

hash="$( { cat "$req"; echo "python=$pyver"; } | sha256sum | cut -c1-16)"
venv="$cache/venv-$hash"
py="$venv/bin/python"

if [[ -x "$py" && -f "$venv/.complete" ]]; then
    echo "setup-python: using $venv" >&2
else
    echo "setup-python: creating $venv (Python $pyver, pins from tests/parity/requirements.txt)" >&2
    mkdir -p "$cache"
    rm -rf "$venv"
    "$base_py" -m venv "$venv"
    "$py" -m pip install --quiet --disable-pip-version-check --no-input \
        --only-binary=:all: --require-hashes -r "$req" >&2
    "$py" -c 'import sklearn, numpy, scipy' >&2
    touch "$venv/.complete"
    echo "setup-python: ready" >&2
fi
"$py" -c 'import sklearn, numpy, scipy, sys; print("setup-python: python %s, scikit-learn %s, numpy %s, scipy %s" % (sys.version.split()[0], sklearn.__version__, numpy.__version__, scipy.__version__), file=sys.stderr)'
echo "$py"
