#!/usr/bin/env bash
# The Open Inference Protocol (KServe V2) routes driven by real clients nobody
# here wrote (tests/v2_clients/, pytest): tritonclient[http] with its defaults
# (binary tensor data both ways) and with binary_data=False, and
# open-inference-openapi (JSON). Their results must equal /predict's for the
# same texts. Clients and pytest pinned and hash-checked in
# scripts/test-v2-clients-requirements.txt, venv under ${NBSERVE_CACHE:-~/.cache/nbserve}.
# Starts its own server (debug build; NBSERVE_BIN to use another binary) on a
# free 127.0.0.1 port and stops it at the end. Prints `v2-clients: N passed, M
# failed` (from pytest's JUnit XML); pytest arguments pass through.
#
#   scripts/test-v2-clients.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
# Wheels for CPython 3.11, x86_64 Linux.
venv="$(NBSERVE_PYTHON="${NBSERVE_PYTHON:-python3.11}" pinned_venv v2-clients scripts/test-v2-clients-requirements.txt)"
# No pytest plugin is used: anyio's, which the clients' packages register, is not loaded.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
pytest_suite v2-clients "$venv/bin/python" tests/v2_clients "$@"
