# shellcheck shell=bash
# Sourced (not run): a Python venv with hash-pinned packages, made once.
#
#   source scripts/lib/venv.sh
#   venv="$(pinned_venv NAME REQUIREMENTS)"    # $NBSERVE_CACHE/venv-NAME-<hash of the file>
#
# Every package of REQUIREMENTS is pinned with its sha256 (pip install
# --no-deps --require-hashes), so a changed pin gives a new venv and an
# unchanged one is reused. Progress goes to stderr; NBSERVE_PYTHON picks the
# interpreter (default python3).
pinned_venv() {
    local name="$1" req="$2"
    local venv
    venv="${NBSERVE_CACHE:-$HOME/.cache/nbserve}/venv-$name-$(sha256sum "$req" | cut -c1-16)"
    if [[ ! -x "$venv/bin/python" || ! -f "$venv/.complete" ]]; then
        echo "venv: installing $name into $venv (hash-checked pins from $req)" >&2
        # Explicit returns: callers run this inside $(...), where bash drops
        # errexit, and a failed install must never be stamped complete.
        rm -rf "$venv"
        "${NBSERVE_PYTHON:-python3}" -m venv "$venv" >&2 || return 1
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$req" >&2 || return 1
        touch "$venv/.complete"
    fi
    echo "$venv"
}
