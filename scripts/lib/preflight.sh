# shellcheck shell=bash
# Sourced (not run): check up front for what a script will need, so a newcomer
# reads one message naming everything missing instead of a failure minutes in.
#
#   source scripts/lib/preflight.sh
#   preflight "test.sh" cargo python3.11 npm curl apt-get dpkg
#
# A name `python3.11` means "a python3 that is 3.11" (the pinned wheels are
# cp311; NBSERVE_PYTHON may name it). Exits 1 when anything is missing.
preflight() {
    local who="$1"; shift
    local missing=() need py
    for need in "$@"; do
        case "$need" in
            python3.11)
                py="${NBSERVE_PYTHON:-}"
                if [[ -z "$py" ]]; then
                    py="$(command -v python3.11 || command -v python3 || true)"
                fi
                if [[ -z "$py" ]] || [[ "$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" != "3.11" ]]; then
                    missing+=("CPython 3.11 with venv (python3.11, or NBSERVE_PYTHON=/path/to/python3.11)")
                elif ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
                    missing+=("the venv module of $py (Debian: python3-venv)")
                fi
                ;;
            apt-get | dpkg | apt-cache)
                command -v "$need" >/dev/null 2>&1 ||
                    missing+=("$need (a Debian-family system: Prometheus and Alertmanager come from Debian's archive)")
                ;;
            *)
                command -v "$need" >/dev/null 2>&1 || missing+=("$need")
                ;;
        esac
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "$who: cannot run on this machine; missing:" >&2
        printf '  - %s\n' "${missing[@]}" >&2
        echo "$who: see docs/getting-started.md, \"Prerequisites\"" >&2
        exit 1
    fi
}
