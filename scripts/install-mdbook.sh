#!/usr/bin/env bash
# Install (once) mdBook, pinned, from crates.io into $NBSERVE_CACHE/mdbook
# and print the path of the `mdbook` binary. About 2.5 CPU-minutes the first
# time (a release build; no default features: the book needs no `serve` or
# `watch`); then a cached binary of the pinned version is reused.
#
#   MDBOOK="$(scripts/install-mdbook.sh)"
#   "$MDBOOK" build docs
set -euo pipefail

version="0.5.4"
root="${NBSERVE_CACHE:-$HOME/.cache/nbserve}/mdbook"
bin="$root/bin/mdbook"
if [[ -x "$bin" ]] && [[ "$("$bin" --version 2>/dev/null)" == "mdbook v$version" ]]; then
    echo "$bin"
    exit 0
fi
echo "install-mdbook: cargo install mdbook $version into $root" >&2
mkdir -p "$root"
# Its own target dir: the project's CARGO_TARGET_DIR holds other profiles.
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
nice -n 10 cargo install mdbook --locked --version "$version" --no-default-features \
    --root "$root" --target-dir "$build" --quiet >&2
echo "$bin"
