#!/usr/bin/env bash
# Every test of the default suite, in the order that fails fastest.
# Installs what it needs itself (Python venv, Prometheus, lint tools) into
# ${NBSERVE_CACHE:-$HOME/.cache/nbserve}. Heavy suites (load, soak, benches)
# live in bench/ and are documented in the book (docs/performance.md).
#
# fmt and clippy stop the run at once; after them every suite runs even if one
# before it failed. The closing `tests: N passed, M failed` (`, K skipped` when
# tests were skipped or ignored) is computed from machine-readable results
# only: cargo's own `test result:` lines and the pytest suites' JUnit XML
# (scripts/lib/results.py); the exit status is non-zero if anything failed.
#
# Variables that would shrink the run (NBSERVE_OBS_LIVE=0, NBSERVE_OBS_REPLAY=0,
# FUZZ_SECS, FUZZ_EXAMPLES below 100, FUZZ_MIN_CASES below 600, PROPTEST_CASES
# below 256) are refused;
# NBSERVE_ALLOW_REDUCED_TESTS=1 runs anyway and says so loudly, also in the
# closing line.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

# shellcheck source=scripts/lib/preflight.sh
source scripts/lib/preflight.sh
preflight test.sh cargo rustfmt cargo-clippy python3.11 npm curl git setsid kubectl apt-get apt-cache dpkg readelf strace unshare
if [[ "$(id -u)" -ne 0 && ! -x "${NBSERVE_CACHE:-$HOME/.cache/nbserve}/prometheus/root/usr/bin/prometheus" ]]; then
  echo "test.sh: note: not root; if apt's package lists are stale, fetching Prometheus needs 'apt-get update' (root)" >&2
fi

# ------------------------------------------------------------ reduced runs
reduced=()
[[ "${NBSERVE_OBS_LIVE:-1}" == 0 ]] && reduced+=("NBSERVE_OBS_LIVE=0 skips the live Prometheus checks")
[[ "${NBSERVE_OBS_REPLAY:-1}" == 0 ]] && reduced+=("NBSERVE_OBS_REPLAY=0 skips the real-dataset replay")
[[ -n "${FUZZ_SECS:-}" ]] && reduced+=("FUZZ_SECS=$FUZZ_SECS would cap API fuzzing by time")
if [[ -n "${FUZZ_EXAMPLES:-}" ]] && ! [[ "$FUZZ_EXAMPLES" =~ ^[0-9]+$ && "$FUZZ_EXAMPLES" -ge 100 ]]; then
    reduced+=("FUZZ_EXAMPLES=$FUZZ_EXAMPLES is below the 100 examples per operation")
fi
if [[ -n "${FUZZ_MIN_CASES:-}" ]] && ! [[ "$FUZZ_MIN_CASES" =~ ^[0-9]+$ && "$FUZZ_MIN_CASES" -ge 600 ]]; then
    reduced+=("FUZZ_MIN_CASES=$FUZZ_MIN_CASES is below the 600 fuzzing cases required")
fi
if [[ -n "${PROPTEST_CASES:-}" ]] && ! [[ "$PROPTEST_CASES" =~ ^[0-9]+$ && "$PROPTEST_CASES" -ge 256 ]]; then
    reduced+=("PROPTEST_CASES=$PROPTEST_CASES is below proptest's 256 cases")
fi
loud_reduced() {
    printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n'
    printf '!!! REDUCED TEST RUN: %s\n' "${reduced[@]}"
    printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n'
}
if ((${#reduced[@]})); then
    if [[ "${NBSERVE_ALLOW_REDUCED_TESTS:-0}" != 1 ]]; then
        printf 'test.sh: refusing a reduced run:\n' >&2
        printf '  %s\n' "${reduced[@]}" >&2
        printf 'unset these, or set NBSERVE_ALLOW_REDUCED_TESTS=1 to run reduced on purpose\n' >&2
        exit 2
    fi
    loud_reduced
fi

logs="$(mktemp -d)"
prefetch_pid=
release_pid=
# The prefetch and the background release build run in their own sessions
# (setsid) so that stopping them stops the pip, apt or rustc they are running.
trap '[[ -n "$prefetch_pid" ]] && kill -- "-$prefetch_pid" 2>/dev/null; [[ -n "$release_pid" ]] && kill -- "-$release_pid" 2>/dev/null; rm -rf "$logs"' EXIT

# What the suites install (venvs, Prometheus, linters, browsers...) is fetched
# in the background while cargo compiles below, and waited for before the
# first suite: downloads overlap with compiling instead of following it on a
# cold cache. Never fails; each suite still installs what is missing.
step "prefetch: what the suites install, in the background"
setsid scripts/prefetch.sh "$logs/prefetch.log" >"$logs/prefetch.out" 2>&1 &
prefetch_pid=$!

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

suites=()

# suite NAME CMD...: runs CMD with its output shown and kept in $logs/NAME.log.
# CMD writes its machine-readable results into NBSERVE_RESULTS=$logs/NAME/:
# pytest's JUnit XML (scripts/lib/pytest.sh `pytest_suite`) or cargo's output
# (*.cargo.log); the closing count is computed from those files and the exit
# status (scripts/lib/results.py), never from what the suite printed.
suite() {
    local name="$1" status=0 began
    shift
    mkdir -p "$logs/$name"
    began=$(date +%s)
    NBSERVE_RESULTS="$logs/$name" "$@" 2>&1 | tee "$logs/$name.log" || status=$?
    echo "$status" >"$logs/$name/status"
    echo "$(($(date +%s) - began))" >"$logs/$name/seconds"
    suites+=("$name")
}

# cargo test, its output kept for cargo's own `test result:` lines (one per test binary).
cargo_tests() {
    local status=0
    # --no-fail-fast: every test binary runs and is counted, even after one failed.
    # Six test threads on two cores: most API tests wait on a server, a timer
    # or a socket, not the CPU (the API tests take less than half the time).
    RUST_TEST_THREADS="${RUST_TEST_THREADS:-6}" cargo test --locked --no-fail-fast 2>&1 | tee "$NBSERVE_RESULTS/test.cargo.log" || status=$?
    python3 scripts/lib/results.py cargo "$NBSERVE_RESULTS/test.cargo.log" || true
    return "$status"
}

step "cargo test (unit, property and API integration tests)"
suite cargo cargo_tests

# shellcheck source=scripts/lib/cargo.sh
source scripts/lib/cargo.sh
# The binary `cargo test` just built, wherever CARGO_TARGET_DIR puts it.
NBSERVE_BIN="$(cargo_bin debug nbserve)"
export NBSERVE_BIN

# One release build for the suites that test what ships: the hardening and
# perf suites run it, the container suite puts it into the image, the docs
# suite runs the README's and the book's recipes with it. It runs in the
# background while the suites that only need the debug binary and whose
# waits are generous (no latency or delivery-time checks) go on: its fat-LTO
# link keeps one core busy for minutes and leaves the other idle. Its output
# is shown once it is waited for.
step "release build of nbserve, in the background (hardening, perf, container and docs suites)"
release_began=$(date +%s)
# shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
setsid bash -c 'cargo build --locked --release --bin nbserve >"$1" 2>&1; echo "$?" >"$2"' \
    release-build "$logs/release-build.log" "$logs/release-build.status" &
release_pid=$!

step "prefetch: waiting for the installs started before the build"
wait "$prefetch_pid" || true
prefetch_pid=
cat "$logs/prefetch.out"

step "scikit-learn parity"
suite parity scripts/parity.sh

step "deployment files: compose, Dockerfile, workflows, settings names"
suite check-deploy scripts/check-deploy.sh

step "Kubernetes manifests: kustomize render, kubernetes-validate --strict, settings, probes"
suite kubernetes scripts/check-kubernetes.sh

step "Open Inference Protocol: tritonclient (binary + JSON) and open-inference-openapi"
suite v2-clients scripts/test-v2-clients.sh

step "MLflow: tracking, registry and champion following against a real mlflow server"
suite mlflow scripts/test-mlflow.sh

step "Prefect flows: promote and reject through the real prefect package (ephemeral API); count and merge on a Dask LocalCluster"
suite prefect scripts/test-prefect.sh

step "release build: waiting for it"
wait "$release_pid" || true
release_pid=
cat "$logs/release-build.log"
if [[ "$(cat "$logs/release-build.status" 2>/dev/null)" != 0 ]]; then
    echo "test.sh: the release build failed (above)" >&2
    exit 1
fi
echo "release build took $(($(date +%s) - release_began)) s (started in the background)"
NBSERVE_BIN_RELEASE="$(cargo_bin release nbserve)"
export NBSERVE_BIN_RELEASE

step "hardening: hostile clients, registries and stores against the release binary"
suite hardening scripts/test-hardening.sh

step "perf: instructions per /predict (callgrind) within 10 % of tests/perf/baseline.json"
suite perf scripts/test-perf.sh

step "container: the image built offline from the Dockerfile and run with podman, its SBOM, the compose stack, the Kubernetes pod"
suite container scripts/test-container.sh

step "observability: promtool, dashboards, live PromQL against a real Prometheus"
suite observability scripts/test-observability.sh

step "OpenTelemetry traces: an OTLP/HTTP receiver on the official opentelemetry-proto, traceparent, sampling, a dead collector"
suite otel scripts/test-otel.sh

step "fleet: three replicas + Prometheus, fleet F1 equals the offline union"
suite fleet scripts/test-fleet.sh

step "retrain loop end to end: v1 under load, field data via the API, promote, reject (exit 5), roll back"
suite retrain scripts/test-retrain.sh

step "the API page at /docs in headless chromium (Playwright)"
suite browser scripts/test-browser.sh

step "documentation: the book builds, its links resolve, every runnable README and book block runs"
# With NBSERVE_BIN_RELEASE (the recipes train and tune on the real corpus).
suite docs scripts/test-docs.sh

step "API fuzzing: schemathesis against /openapi.json (no 5xx, documented statuses and schemas)"
suite api-fuzz scripts/api-fuzz.sh

printf '\ntest suites finished in %ss\n\n' "$(($(date +%s) - started))"
if ((${#reduced[@]})); then
    loud_reduced
fi
python3 scripts/lib/results.py total \
    --suffix="$( ((${#reduced[@]})) && echo ' (REDUCED RUN)' || true)" "$logs" "${suites[@]}"
