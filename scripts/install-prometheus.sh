#!/usr/bin/env bash
# Install Prometheus + promtool (Debian's package, no engine, no root needed for
# the unpack) into ${NBSERVE_CACHE:-$HOME/.cache/nbserve}/prometheus.
#
# Idempotent: a second run only re-checks the binaries. The .deb is pinned by
# version and sha256 so a test run never silently changes Prometheus under us.
# The last line on stdout is the directory holding `prometheus` and `promtool`.
#
#   PROM_BIN=$(scripts/install-prometheus.sh | tail -n1)
#
# Overrides (e.g. after Debian rebuilds the package, or on another arch):
#   NBSERVE_PROMETHEUS_DEB_VERSION, NBSERVE_PROMETHEUS_DEB_SHA256
set -euo pipefail

CACHE="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
DEST="$CACHE/prometheus"
BIN="$DEST/root/usr/bin"

arch="$(dpkg --print-architecture 2>/dev/null || echo unknown)"
case "$arch" in
  amd64)
    default_version="2.42.0+ds-5+b6"
    default_sha256="3b0e0255b059a7696bd4a139a4a4eb24d71df067936a61ece5093559cbc7991c"
    ;;
  *)
    default_version=""
    default_sha256=""
    ;;
esac
VERSION="${NBSERVE_PROMETHEUS_DEB_VERSION:-$default_version}"
SHA256="${NBSERVE_PROMETHEUS_DEB_SHA256:-$default_sha256}"

log() { echo "install-prometheus: $*" >&2; }

if [[ -z "$VERSION" || -z "$SHA256" ]]; then
  log "no pinned prometheus .deb for architecture '$arch';"
  log "set NBSERVE_PROMETHEUS_DEB_VERSION and NBSERVE_PROMETHEUS_DEB_SHA256"
  exit 1
fi

stamp="$DEST/.installed-$VERSION-$SHA256"
if [[ -f "$stamp" && -x "$BIN/prometheus" && -x "$BIN/promtool" ]] \
   && "$BIN/promtool" --version >/dev/null 2>&1; then
  log "prometheus $VERSION already in $BIN"
  echo "$BIN"
  exit 0
fi

for tool in apt-get dpkg sha256sum; do
  command -v "$tool" >/dev/null || { log "'$tool' not found (Debian/Ubuntu needed)"; exit 1; }
done

mkdir -p "$DEST"
work="$(mktemp -d "${TMPDIR:-/tmp}/nbserve-prometheus.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# apt drops to the _apt user for downloads; let it write here to avoid a warning.
chmod 0777 "$work"

deb_name="prometheus_${VERSION//:/%3a}_${arch}.deb"
cached_deb="$DEST/$deb_name"

have_good_deb() {
  [[ -f "$1" ]] && echo "$SHA256  $1" | sha256sum --check --status
}

if ! have_good_deb "$cached_deb"; then
  log "downloading prometheus=$VERSION ($arch) with apt-get"
  if ! (cd "$work" && apt-get download "prometheus=$VERSION" >&2); then
    log "download failed; running apt-get update and retrying"
    apt-get update >&2 || log "apt-get update failed (not root?)"
    (cd "$work" && apt-get download "prometheus=$VERSION" >&2) || {
      log "cannot download prometheus=$VERSION; if Debian replaced it, pin the new"
      log "version/sha256 (NBSERVE_PROMETHEUS_DEB_VERSION / _SHA256)"
      exit 1
    }
  fi
  shopt -s nullglob
  debs=("$work"/prometheus_*.deb)
  shopt -u nullglob
  [[ ${#debs[@]} -eq 1 ]] || { log "expected one .deb, got ${#debs[@]}"; exit 1; }
  got="$(sha256sum "${debs[0]}" | cut -d' ' -f1)"
  if [[ "$got" != "$SHA256" ]]; then
    log "sha256 mismatch for ${debs[0]##*/}: got $got, want $SHA256"
    exit 1
  fi
  mv "${debs[0]}" "$cached_deb"
fi

log "unpacking $deb_name"
rm -rf "$DEST/root"
dpkg -x "$cached_deb" "$work/root"
mv "$work/root" "$DEST/root"
"$BIN/prometheus" --version >&2
"$BIN/promtool" --version >/dev/null
rm -f "$DEST"/.installed-*
touch "$stamp"
echo "$BIN"
