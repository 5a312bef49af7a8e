#!/usr/bin/env bash
# Every test of the default suite, in the order that fails fastest.
# Installs what it needs itself (Python venv, Prometheus, lint tools) into
# ${NBSERVE_CACHE:-$HOME/.cache/nbserve}. Heavy suites (load, soak, benches)
# live in bench/ and are documented in the README.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

# shellcheck source=scripts/lib/preflight.sh
source scripts/lib/preflight.sh
preflight test.sh cargo rustfmt cargo-clippy python3.11 npm curl git setsid kubectl apt-get apt-cache dpkg readelf
if [[ "$(id -u)" -ne 0 && ! -x "${NBSERVE_CACHE:-$HOME/.cache/nbserve}/prometheus/root/usr/bin/prometheus" ]]; then
  echo "test.sh: note: not root; if apt's package lists are stale, fetching Prometheus needs 'apt-get update' (root)" >&2
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test (unit, property and API integration tests)"
cargo_log="$(mktemp)"
trap 'rm -f "$cargo_log"' EXIT
cargo test --locked 2>&1 | tee "$cargo_log"
cargo_passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$cargo_log" | awk '{n += $4} END {print n + 0}')

# shellcheck source=scripts/lib/cargo.sh
source scripts/lib/cargo.sh
# The binary `cargo test` just built, wherever CARGO_TARGET_DIR puts it.
NBSERVE_BIN="$(cargo_bin debug nbserve)"
export NBSERVE_BIN

step "scikit-learn parity"
scripts/parity.sh

step "observability: promtool, dashboards, live PromQL against a real Prometheus"
scripts/test-observability.sh

step "deployment files: compose, Dockerfile, workflows, settings names"
scripts/check-deploy.sh

step "Kubernetes manifests: kustomize render, kubernetes-validate --strict, settings, probes"
NBSERVE_BIN="$NBSERVE_BIN" scripts/check-kubernetes.sh

step "Open Inference Protocol: tritonclient (binary + JSON) and open-inference-openapi"
NBSERVE_BIN="$NBSERVE_BIN" scripts/test-v2-clients.sh

step "fleet: three replicas + Prometheus, fleet F1 equals the offline union"
NBSERVE_BIN="$NBSERVE_BIN" scripts/test-fleet.sh

step "MLflow: tracking, registry and champion following against a real mlflow server"
scripts/test-mlflow.sh

step "API fuzzing: schemathesis against /openapi.json (no 5xx, documented statuses and schemas)"
NBSERVE_BIN="$NBSERVE_BIN" scripts/api-fuzz.sh

printf '\nall test suites passed in %ss\n' "$(( $(date +%s) - started ))"
# Reaching this line means every suite passed (set -e); the count is the
# cargo tests, each suite below counted as one.
printf 'tests: %d passed, 0 failed\n' "$(( cargo_passed + 8 ))"
