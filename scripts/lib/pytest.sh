# shellcheck shell=bash
# Sourced (not run): runs a pytest suite under tests/<suite>/ with the shared
# fixtures of tests/conftest.py, and prints its `N passed, M failed` line
# computed from pytest's JUnit XML (skips are reported, not counted as passed).
#
#   source scripts/lib/pytest.sh
#   run_pytest PYTHON tests/hardening [pytest args...]
#
# PYTHON is a venv's interpreter that has pytest (tests/requirements.txt, or a
# suite's own requirements that include it). `pytest_venv` makes the shared one.

# shellcheck source=scripts/lib/venv.sh
source "${BASH_SOURCE[0]%/*}/venv.sh"

# Prints the interpreter of the shared pytest venv (made once, hash-pinned).
pytest_venv() {
    local venv
    venv="$(NBSERVE_PYTHON="${NBSERVE_PYTHON:-python3.11}" pinned_venv pytest tests/requirements.txt)" || return 1
    echo "$venv/bin/python"
}

run_pytest() {
    local py="$1" dir="$2" status=0 xml
    shift 2
    xml="$(mktemp --suffix .xml)"
    "$py" -m pytest "$dir" -p no:cacheprovider -o junit_family=xunit2 \
        --junitxml="$xml" -rfEs "$@" || status=$?
    "$py" - "$xml" <<'PY' || status=1
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
if skipped:
    print(f"{skipped} skipped")
print(f"{tests - bad - skipped} passed, {bad} failed")
PY
    rm -f "$xml"
    return "$status"
}
