#!/usr/bin/env bash
# Schema-driven API fuzzing (tests/api_fuzz/, pytest): Schemathesis
# (scripts/api-fuzz-requirements.txt: every package pinned and hash-checked,
# pytest included; venv under ${NBSERVE_CACHE:-~/.cache/nbserve}) generates
# valid and invalid requests for every operation in the running server's
# /openapi.json and checks that
#   - no answer is a 5xx                        (not_a_server_error)
#   - every body matches its documented schema  (response_schema_conformance)
#   - every status is documented                (status_code_conformance)
#   - every content type is documented          (content_type_conformance)
# Bounded by cases, not by time: FUZZ_EXAMPLES (100) examples per operation,
# fixed seed (FUZZ_SEED, 1) so a run is reproducible, and at least
# FUZZ_MIN_CASES (600) test cases in all, or the run fails. FUZZ_TIMEOUT
# (900 s) only guards against a hang: reaching it fails. FUZZ_SECS (the former
# time cap) is refused.
# Starts its own server (debug build; NBSERVE_BIN to use another binary) on a
# free 127.0.0.1 port with an admin token and the same feedback token, so
# /admin/reload and the label-writing endpoints (/feedback, /feedback/batch,
# /examples) are fuzzed with valid credentials, and with
# feedback.accept_examples (and keep_text) on, so is POST /examples; stops it
# at the end. Prints `api-fuzz: N passed, M failed` (from pytest's JUnit XML;
# the fuzzing's own outcome from Schemathesis's JSON and JUnit reports);
# pytest arguments pass through.
#
#   scripts/api-fuzz.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -n "${FUZZ_SECS:-}" ]]; then
    echo "api-fuzz: FUZZ_SECS is no longer supported: fuzzing is bounded by cases (FUZZ_EXAMPLES), not time" >&2
    exit 2
fi
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
# Every package pinned with its sha256 (wheels for CPython 3.11, x86_64 Linux).
venv="$(pinned_venv schemathesis scripts/api-fuzz-requirements.txt)"
# The suite runs Schemathesis's CLI and uses no pytest plugin: the ones the
# venv's packages register (schemathesis, hypothesis, anyio) would cost about
# 1.5 s of CPU at every start.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
pytest_suite api-fuzz "$venv/bin/python" tests/api_fuzz "$@"
