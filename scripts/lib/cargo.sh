# shellcheck shell=bash
# Sourced (not run): where cargo puts what it builds, so every script finds the
# binary whatever CARGO_TARGET_DIR, `.cargo/config.toml` or `--target-dir` say.
#
#   source scripts/lib/cargo.sh
#   bin="$(cargo_bin debug nbserve)"      # path only; build it first
#   ex="$(cargo_bin release examples/floor_server)"

# Prints cargo's target directory for the project in the current directory.
cargo_target_dir() {
    local meta
    meta="$(cargo metadata --format-version 1 --no-deps --locked)" || return 1
    python3 -c 'import json, sys; print(json.loads(sys.argv[1])["target_directory"])' "$meta"
}

# cargo_bin PROFILE NAME: the path of NAME built with PROFILE (debug|release).
cargo_bin() {
    local dir
    dir="$(cargo_target_dir)" || return 1
    printf '%s/%s/%s\n' "$dir" "$1" "$2"
}

# The release nbserve the suites that test what ships run: NBSERVE_BIN_RELEASE
# when the caller (scripts/test.sh) already built it, else built here; exported.
export_release_nbserve() {
    if [[ -z "${NBSERVE_BIN_RELEASE:-}" ]]; then
        cargo build --locked --release --quiet --bin nbserve
        NBSERVE_BIN_RELEASE="$(cargo_bin release nbserve)"
    fi
    export NBSERVE_BIN_RELEASE
}
