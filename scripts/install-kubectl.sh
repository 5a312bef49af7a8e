#!/usr/bin/env bash
# Finds or installs a kubectl whose built-in kustomize is v5 (for
# tests/kubernetes/, scripts/check-kubernetes.sh): the one on PATH if it has
# kustomize v5, else Debian's `kubectl` package (upstream 1.26 or newer)
# unpacked, not installed, into ${NBSERVE_CACHE:-$HOME/.cache/nbserve}/kubectl
# (scripts/lib/deb.sh; no Debian build number pinned, apt verifies the download
# against the archive's signed checksums).
#
# Idempotent. Progress goes to stderr; the last line on stdout is the kubectl
# to run:
#
#   KUBECTL=$(scripts/install-kubectl.sh | tail -n1)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
cached="$cache/kubectl/root/usr/bin/kubectl"

log() { echo "install-kubectl: $*" >&2; }
kustomize_v5() { "$1" version --client 2>/dev/null | grep -q 'Kustomize Version: v5\.'; }

if command -v kubectl >/dev/null && kustomize_v5 kubectl; then
  kubectl="$(command -v kubectl)"
elif [[ -x "$cached" ]] && kustomize_v5 "$cached"; then
  kubectl="$cached"
else
  # shellcheck source=scripts/lib/deb.sh
  source "$root/scripts/lib/deb.sh"
  deb_unpack kubectl '^1\.(2[6-9]|[3-9][0-9])\.' "$cache/kubectl" \
    || { log "no kubectl with kustomize v5: neither on PATH nor installable from the Debian archive"; exit 1; }
  kubectl="$cached"
  kustomize_v5 "$kubectl" || { log "$kubectl has no kustomize v5"; exit 1; }
fi
log "$("$kubectl" version --client 2>/dev/null | tr '\n' ' ')($kubectl)"
echo "$kubectl"
