#!/usr/bin/env bash
# The interactive API page's assets (served by nbserve at /docs): Swagger UI's
# prebuilt bundle from the npm registry, pinned by version and by the sha256 of
# the package tarball, vendored into assets/swagger-ui/ and compiled into the
# binary, so the page needs no CDN at run time (air-gapped users).
#
#   scripts/vendor-swagger-ui.sh           # fetch, verify, write assets/swagger-ui/
#   scripts/vendor-swagger-ui.sh --check   # fetch, verify, and compare with what is committed
#
# To move to another version: change VERSION and SHA256 (the tarball's, from
# `npm pack swagger-ui-dist@VERSION`), run it, review, commit.
set -euo pipefail
VERSION=5.36.0
SHA256=685a2b38b5d6eab2dbc096a8596db11cc7409cdb671d2e3bec8f9b017d0d566b
FILES=(swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/assets/swagger-ui"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null)
tarball="$work/swagger-ui-dist-$VERSION.tgz"
echo "$SHA256  $tarball" | sha256sum --check --quiet -
tar -xzf "$tarball" -C "$work"
if [[ "${1:-}" == --check ]]; then
    for f in "${FILES[@]}"; do
        cmp -s "$work/package/$f" "$dest/$f" || { echo "vendor-swagger-ui: $f differs from swagger-ui-dist@$VERSION" >&2; exit 1; }
    done
    echo "vendor-swagger-ui: assets/swagger-ui matches swagger-ui-dist@$VERSION"
    exit 0
fi
mkdir -p "$dest"
for f in "${FILES[@]}"; do cp "$work/package/$f" "$dest/$f"; done
echo "$VERSION" >"$dest/VERSION"
echo "vendor-swagger-ui: wrote swagger-ui-dist@$VERSION to assets/swagger-ui"
