#!/usr/bin/env bash
# Install Alertmanager + amtool from Debian's `prometheus-alertmanager` package
# (unpacked, not installed: no service is started) into
# ${NBSERVE_CACHE:-$HOME/.cache/nbserve}/alertmanager.
#
# Takes the archive's current build of a supported upstream version (0.23 or
# newer; the suite is tested with 0.25), never a Debian build number (see
# scripts/lib/deb.sh). apt verifies the download against the archive's signed
# checksums. The version that was installed is printed on stderr and kept in
# .../alertmanager/VERSION.
#
# Debian's build has no built-in notification template: it reads
# /usr/share/prometheus/alertmanager/default.tmpl (a hard-coded path: listing
# the file under `templates:` does not help) and sends nothing without it. So
# the unpacked template is copied there when the file is missing, which needs
# root like `apt-get update` does (an installed prometheus-alertmanager
# package provides it too). The last line on stdout is the directory holding
# `prometheus-alertmanager` and `amtool`:
#
#   AM_BIN=$(scripts/install-alertmanager.sh | tail -n1)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
DEST="$CACHE/alertmanager"
BIN="$DEST/root/usr/bin"
TEMPLATES="$DEST/root/usr/share/prometheus/alertmanager"
SYSTEM_TEMPLATES=/usr/share/prometheus/alertmanager
SUPPORTED='^0\.(2[3-9]|[3-9][0-9])\.'

log() { echo "install-alertmanager: $*" >&2; }

installed() {
  [[ -f "$DEST/VERSION" && -x "$BIN/prometheus-alertmanager" && -x "$BIN/amtool" \
     && -f "$TEMPLATES/default.tmpl" ]] && "$BIN/amtool" --version >/dev/null 2>&1
}

if installed; then
  log "prometheus-alertmanager $(cat "$DEST/VERSION") already in $BIN"
else
  # shellcheck source=scripts/lib/deb.sh
  source "$root/scripts/lib/deb.sh"
  rm -f "$DEST/VERSION"
  deb_unpack prometheus-alertmanager "$SUPPORTED" "$DEST"
  "$BIN/prometheus-alertmanager" --version 2>&1 | head -n1 >&2
  installed || { log "the package has no amtool or no default.tmpl in $TEMPLATES"; exit 1; }
  log "installed prometheus-alertmanager $(cat "$DEST/VERSION") into $BIN"
fi
if ! cmp -s "$TEMPLATES/default.tmpl" "$SYSTEM_TEMPLATES/default.tmpl"; then
  if [[ -f "$SYSTEM_TEMPLATES/default.tmpl" ]]; then
    log "keeping the $SYSTEM_TEMPLATES/default.tmpl already there (another package's)"
  elif mkdir -p "$SYSTEM_TEMPLATES" 2>/dev/null && cp "$TEMPLATES"/*.tmpl "$SYSTEM_TEMPLATES/" 2>/dev/null; then
    log "copied the notification templates to $SYSTEM_TEMPLATES"
  else
    log "cannot write $SYSTEM_TEMPLATES/default.tmpl (not root?): Debian's Alertmanager sends"
    log "no notification without it; run this script once as root, or install the"
    log "prometheus-alertmanager package"
    exit 1
  fi
fi
echo "$BIN"
