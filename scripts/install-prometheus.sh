#!/usr/bin/env bash
# Install Prometheus + promtool from Debian's `prometheus` package (unpacked,
# not installed: no service is started) into ${NBSERVE_CACHE:-$HOME/.cache/nbserve}/prometheus.
#
# Takes the archive's current build of a supported upstream version (2.37 or
# newer; the suite is tested with 2.42) — never a Debian build number, which
# the archive replaces (see scripts/lib/deb.sh). apt verifies the download
# against the archive's signed checksums. The version that was installed is
# printed on stderr and kept in .../prometheus/VERSION.
#
# Idempotent: a second run only re-checks the binaries. The last line on
# stdout is the directory holding `prometheus` and `promtool`:
#
#   PROM_BIN=$(scripts/install-prometheus.sh | tail -n1)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
DEST="$CACHE/prometheus"
BIN="$DEST/root/usr/bin"
SUPPORTED='^(2\.(3[7-9]|[4-9][0-9])|3\.[0-9]+)\.'

log() { echo "install-prometheus: $*" >&2; }

if [[ -f "$DEST/VERSION" && -x "$BIN/prometheus" && -x "$BIN/promtool" ]] \
   && "$BIN/promtool" --version >/dev/null 2>&1; then
  log "prometheus $(cat "$DEST/VERSION") already in $BIN"
  echo "$BIN"
  exit 0
fi

# shellcheck source=scripts/lib/deb.sh
source "$root/scripts/lib/deb.sh"
rm -f "$DEST/VERSION"
deb_unpack prometheus "$SUPPORTED" "$DEST"
"$BIN/prometheus" --version 2>&1 | head -n1 >&2
"$BIN/promtool" --version >/dev/null
log "installed prometheus $(cat "$DEST/VERSION") into $BIN"
echo "$BIN"
