#!/usr/bin/env bash
# Install (once) cargo-fuzz, pinned, from crates.io with its own Cargo.lock, and
# print the directory holding the `cargo-fuzz` executable.
#
#   FUZZ_BIN=$(scripts/install-cargo-fuzz.sh | tail -n1)
#
# It goes to $NBSERVE_CACHE/cargo-fuzz/<version>/bin (never ~/.cargo/bin), so a
# changed pin gives a new directory. The build runs under `nice`. Progress goes to
# stderr; only the last line of stdout is the bin directory.
set -euo pipefail

CARGO_FUZZ_VERSION="0.13.2"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
root="$cache/cargo-fuzz/$CARGO_FUZZ_VERSION"
bin="$root/bin"

log() { echo "install-cargo-fuzz: $*" >&2; }

installed_ok() {
    [[ -x "$bin/cargo-fuzz" ]] \
        && [[ "$("$bin/cargo-fuzz" --version 2>/dev/null)" == "cargo-fuzz $CARGO_FUZZ_VERSION" ]]
}

if installed_ok; then
    log "cargo-fuzz $CARGO_FUZZ_VERSION already in $bin"
else
    log "building cargo-fuzz $CARGO_FUZZ_VERSION into $root (a few minutes)"
    mkdir -p "$root"
    # --locked: the dependency versions cargo-fuzz itself was released with.
    nice cargo install cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked \
        --root "$root" --no-track >&2
    installed_ok || { log "installed, but $bin/cargo-fuzz does not report $CARGO_FUZZ_VERSION"; exit 1; }
fi
printf '%s\n' "$bin"
