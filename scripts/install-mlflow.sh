#!/usr/bin/env bash
# Install (once) a real MLflow tracking server + model registry for the MLflow tests
# and print the directory holding its `mlflow` executable.
#
#   MLFLOW_BIN=$(scripts/install-mlflow.sh | tail -n1)
#
# PyPI `mlflow` is pinned (3.18.0 needs an mlflow-skinny the registry lacks). The venv
# lives at $NBSERVE_CACHE/venv-mlflow-<sha256 of the pin + python version>, so a changed
# pin gives a new venv; a `.complete` stamp makes a second run only re-check it. The
# install is large (a few hundred MB): it runs under `nice`. Progress goes to stderr;
# only the last line of stdout is the bin directory.
set -euo pipefail

MLFLOW_VERSION="3.17.2"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"

log() { echo "install-mlflow: $*" >&2; }

base_py="${NBSERVE_PYTHON:-}"
if [[ -z "$base_py" ]]; then
    for cand in python3.11 python3.12 python3; do
        if command -v "$cand" >/dev/null 2>&1; then base_py="$cand"; break; fi
    done
fi
if [[ -z "$base_py" ]]; then
    log "no python3 found (set NBSERVE_PYTHON)"
    exit 1
fi
pyver="$("$base_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
hash="$(printf 'mlflow==%s\npython=%s\n' "$MLFLOW_VERSION" "$pyver" | sha256sum | cut -c1-16)"
venv="$cache/venv-mlflow-$hash"
bin="$venv/bin"

installed_ok() {
    [[ -f "$venv/.complete" && -x "$bin/mlflow" ]] \
        && [[ "$("$bin/python" -c 'import importlib.metadata as m; print(m.version("mlflow"))' 2>/dev/null)" == "$MLFLOW_VERSION" ]]
}

if installed_ok; then
    log "mlflow $MLFLOW_VERSION already in $bin"
else
    log "creating $venv (Python $pyver, mlflow==$MLFLOW_VERSION; large, takes a few minutes)"
    mkdir -p "$cache"
    rm -rf "$venv"
    "$base_py" -m venv "$venv"
    nice -n 10 "$bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --prefer-binary "mlflow==$MLFLOW_VERSION" >&2
    "$bin/mlflow" --version >&2
    touch "$venv/.complete"
    log "installed mlflow $MLFLOW_VERSION into $bin"
fi
echo "$bin"
