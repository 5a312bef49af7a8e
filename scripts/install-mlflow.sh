#!/usr/bin/env bash
# Install (once) a real MLflow tracking server + model registry and print the
# directory holding its `mlflow` executable (the venv's bin dir, which is not
# put on PATH: call the tool by that path).
#
#   MLFLOW_BIN="$(scripts/install-mlflow.sh)"
#   "$MLFLOW_BIN/mlflow" server --host 127.0.0.1 --port 5000 ...
#
# mlflow==3.17.2 and every dependency pinned with its sha256 in
# scripts/mlflow-requirements.txt (wheels for CPython 3.11, x86_64 Linux;
# NBSERVE_PYTHON picks another interpreter). The venv lives at
# $NBSERVE_CACHE/venv-mlflow-<hash of the file>, made once (a few hundred MB,
# installed under `nice`). Progress goes to stderr; stdout is the bin dir only.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/venv.sh
source "$root/scripts/lib/venv.sh"
renice -n 10 -p $$ >/dev/null 2>&1 || true
venv="$(NBSERVE_PYTHON="${NBSERVE_PYTHON:-python3.11}" pinned_venv mlflow "$root/scripts/mlflow-requirements.txt")"
echo "install-mlflow: $("$venv/bin/mlflow" --version) in $venv/bin" >&2
echo "$venv/bin"
