#!/usr/bin/env bash
# Installs ahead of time what the suites of scripts/test.sh install for
# themselves: the pinned venvs, Prometheus and Alertmanager, the linters,
# kubectl, MLflow, Prefect, chromium, mdBook, valgrind, cargo-cyclonedx,
# podman and the corpus.
#
#   scripts/prefetch.sh [LOG]
#
# Why: on a cold cache these installs are mostly downloads and unpacking
# (network and disk), while the first minutes of the test run are cargo
# compiling (CPU). scripts/test.sh starts this in the background before it
# compiles and waits for it before the first suite, so the two overlap and no
# installer ever runs twice at once.
#
# Every step is the very call its suite makes (idempotent, keyed by its pins),
# so this is only ever a head start: a step that fails here is run again, and
# reported, by its own suite. This script therefore never fails; it prints one
# line per step with its time and outcome, and each step's output goes to LOG
# (default: discarded). tests/deploy checks that every installer and pinned
# venv a suite uses is listed here.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 0
log="${1:-/dev/null}"

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
# shellcheck source=scripts/lib/podman.sh
source scripts/lib/podman.sh

py311() { NBSERVE_PYTHON="${NBSERVE_PYTHON:-python3.11}" "$@"; }

step() {
    local began status=0
    began=$(date +%s)
    { echo "==> prefetch: $*"; "$@"; } >>"$log" 2>&1 </dev/null || status=$?
    printf 'prefetch: %-60s %4ss %s\n' "$*" "$(($(date +%s) - began))" \
        "$( ((status == 0)) && echo ok || echo "failed ($status): its suite retries it")"
}

began=$(date +%s)
# Slowest and most widely used first.
step py311 pinned_venv pytest tests/requirements.txt
step scripts/fetch-data.sh
step scripts/setup-python.sh
step scripts/install-prometheus.sh
step scripts/install-alertmanager.sh
step install_podman
step py311 pinned_venv podman-compose scripts/podman-compose-requirements.txt
step scripts/install-cargo-cyclonedx.sh
step scripts/install-valgrind.sh
step scripts/install-tools.sh
step scripts/install-kubectl.sh
step py311 pinned_venv kubernetes-validate scripts/check-kubernetes-requirements.txt
step py311 pinned_venv v2-clients scripts/test-v2-clients-requirements.txt
step py311 pinned_venv otel scripts/test-otel-requirements.txt
step scripts/install-mlflow.sh
step scripts/install-prefect.sh
step scripts/install-chromium.sh
step py311 pinned_venv browser tests/browser/requirements.txt
step scripts/install-mdbook.sh
step pinned_venv schemathesis scripts/api-fuzz-requirements.txt
echo "prefetch: done in $(($(date +%s) - began)) s"
