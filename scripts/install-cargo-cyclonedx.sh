#!/usr/bin/env bash
# Install (once) cargo-cyclonedx, pinned, from crates.io with its own Cargo.lock,
# and print the directory holding the `cargo-cyclonedx` executable.
#
#   CDX_BIN=$(scripts/install-cargo-cyclonedx.sh | tail -n1)
#
# cargo-cyclonedx (the CycloneDX project's own tool) writes the image's SBOM
# from Cargo.lock: scripts/sbom.sh runs it. The Dockerfile's compile stage and
# the release workflow install the same version: keep CARGO_CYCLONEDX_VERSION
# equal in all three (tests/container/test_supply_chain.py checks it).
#
# It goes to $NBSERVE_CACHE/cargo-cyclonedx/<version>/bin (never ~/.cargo/bin),
# so a changed pin gives a new directory. The build runs under `nice`, in its own
# target directory (not the project's). Progress goes to stderr; only the last
# line of stdout is the bin directory.
set -euo pipefail

CARGO_CYCLONEDX_VERSION="0.5.9"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
root="$cache/cargo-cyclonedx/$CARGO_CYCLONEDX_VERSION"
bin="$root/bin"

log() { echo "install-cargo-cyclonedx: $*" >&2; }

installed_ok() {
    [[ -x "$bin/cargo-cyclonedx" ]] \
        && [[ "$("$bin/cargo-cyclonedx" cyclonedx --version 2>/dev/null)" == *" $CARGO_CYCLONEDX_VERSION" ]]
}

if installed_ok; then
    log "cargo-cyclonedx $CARGO_CYCLONEDX_VERSION already in $bin"
else
    log "building cargo-cyclonedx $CARGO_CYCLONEDX_VERSION into $root (a few minutes)"
    mkdir -p "$root"
    build="$(mktemp -d "${TMPDIR:-/tmp}/cargo-cyclonedx-build.XXXXXX")"
    trap 'rm -rf "$build"' EXIT
    # --locked: the dependency versions cargo-cyclonedx was released with.
    # A debug build: it runs once per image build, compiling it fast matters more.
    CARGO_TARGET_DIR="$build" nice cargo install cargo-cyclonedx --version "=$CARGO_CYCLONEDX_VERSION" \
        --locked --debug --root "$root" --no-track >&2
    installed_ok || { log "installed, but $bin/cargo-cyclonedx does not report $CARGO_CYCLONEDX_VERSION"; exit 1; }
fi
printf '%s\n' "$bin"
