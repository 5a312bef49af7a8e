# shellcheck shell=bash
# Sourced (not run): runs a pytest suite under tests/<suite>/ with the shared
# fixtures of tests/conftest.py, and prints its `NAME: N passed, M failed` line
# computed from pytest's JUnit XML (skips are reported, not counted as passed).
#
#   source scripts/lib/pytest.sh
#   pytest_suite NAME PYTHON tests/<suite> [pytest args...]
#   run_pytest PYTHON tests/<suite> [pytest args...]     # NAME = the folder's name
#
# NAME names the JUnit XML: $NBSERVE_RESULTS/NAME.xml when NBSERVE_RESULTS is
# set (scripts/test.sh sets it to the suite's results folder and computes its
# closing count from those files, scripts/lib/results.py), else a temporary
# file. PYTHON is a venv's interpreter that has pytest (tests/requirements.txt,
# or a suite's own requirements that include it). `pytest_venv` makes the
# shared one. Measured figures a test records (tests/conftest.py `figures`)
# are printed in the run's closing "figures" section, with or without -s.

# shellcheck source=scripts/lib/venv.sh
source "${BASH_SOURCE[0]%/*}/venv.sh"
_pytest_lib="$(cd "${BASH_SOURCE[0]%/*}" && pwd)"

# Prints the interpreter of the shared pytest venv (made once, hash-pinned).
pytest_venv() {
    local venv
    venv="$(NBSERVE_PYTHON="${NBSERVE_PYTHON:-python3.11}" pinned_venv pytest tests/requirements.txt)" || return 1
    echo "$venv/bin/python"
}

pytest_suite() {
    local name="$1" py="$2" dir="$3" status=0 xml
    shift 3
    if [[ -n "${NBSERVE_RESULTS:-}" ]]; then
        mkdir -p "$NBSERVE_RESULTS"
        xml="$NBSERVE_RESULTS/$name.xml"
    else
        xml="$(mktemp --suffix .xml)"
    fi
    rm -f "$xml"
    "$py" -m pytest "$dir" -p no:cacheprovider -o junit_family=xunit2 \
        -o junit_suite_name="$name" --junitxml="$xml" -rfEs "$@" || status=$?
    "$py" "$_pytest_lib/results.py" junit --name="$name" "$xml" || status=1
    [[ -n "${NBSERVE_RESULTS:-}" ]] || rm -f "$xml"
    return "$status"
}

run_pytest() {
    pytest_suite "$(basename "$2")" "$@"
}
