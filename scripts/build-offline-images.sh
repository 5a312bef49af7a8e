#!/usr/bin/env bash
# Build the Prometheus and Alertmanager images docker-compose.offline.yml uses
# on hosts without a registry, from Debian's packages (no registry pull):
#
#   localhost/nbserve-offline/prometheus:debian     (Debian `prometheus`)
#   localhost/nbserve-offline/alertmanager:debian   (Debian `prometheus-alertmanager`)
#
# The packages are unpacked, not installed (scripts/install-prometheus.sh and
# install-alertmanager.sh, scripts/lib/deb.sh), with Debian's static busybox
# for the healthchecks' `wget`; scripts/lib/collect-libs.sh adds the libraries
# the binaries load, as this host resolves them (the packages are this host's
# release). deploy/offline/*.Containerfile turn each root into a `scratch`
# image running as nobody (65534), like the upstream images.
#
# Cached by content: an image whose io.github.nbserve.build-key label matches
# (package versions, Containerfile) is not rebuilt. Prints both references.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
# shellcheck source=scripts/lib/podman.sh
source scripts/lib/podman.sh
# shellcheck source=scripts/lib/deb.sh
source scripts/lib/deb.sh

log() { echo "build-offline-images: $*" >&2; }

engine="$(container_engine)"
if [[ "$engine" != podman ]]; then
    install_podman || { log "needs podman"; exit 1; }
    engine=podman
fi
podman_env

prom_bin="$(scripts/install-prometheus.sh | tail -n 1)"
am_bin="$(scripts/install-alertmanager.sh | tail -n 1)"
busybox_dir="$cache/busybox-static"
if [[ ! -x "$busybox_dir/root/bin/busybox" ]] || ! "$busybox_dir/root/bin/busybox" true 2>/dev/null; then
    deb_unpack busybox-static '^1\.' "$busybox_dir"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/nbserve-offline.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# build NAME CONTAINERFILE PACKAGE_ROOT VERSION_FILE BINARIES...: each binary
# "SRC:DEST" is copied from the unpacked package to DEST in the image.
build() {
    local name="$1" containerfile="$2" pkg_root="$3" version_file="$4"
    shift 4
    local tag="localhost/nbserve-offline/$name:debian"
    local key
    key="$({ cat "$version_file" "$busybox_dir/VERSION"; sha256sum "$containerfile" scripts/lib/collect-libs.sh; } | sha256sum | cut -c1-32)"
    if podman image exists "$tag" \
        && [[ "$(podman image inspect --format '{{ index .Config.Labels "io.github.nbserve.build-key" }}' "$tag")" == "$key" ]]; then
        log "$tag is up to date ($(cat "$version_file")): not rebuilt"
        echo "$tag"
        return
    fi
    local ctx="$work/$name" spec progs=()
    mkdir -p "$ctx/root/bin" "$ctx/root/etc" "$ctx/data"
    for spec in "$@"; do
        install -m 0755 "$pkg_root/${spec%%:*}" "$ctx/root${spec#*:}"
        progs+=("${spec#*:}")
    done
    install -m 0755 "$busybox_dir/root/bin/busybox" "$ctx/root/bin/busybox"
    ln -s busybox "$ctx/root/bin/sh"
    ln -s busybox "$ctx/root/bin/wget"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$ctx/root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/root/etc/group"
    sh scripts/lib/collect-libs.sh "$ctx/root" "${progs[@]}" >&2
    if [[ -d "$pkg_root/usr/share/prometheus/alertmanager" && "$name" == alertmanager ]]; then
        # Debian's build reads its notification templates from this fixed path.
        mkdir -p "$ctx/root/usr/share/prometheus"
        cp -R "$pkg_root/usr/share/prometheus/alertmanager" "$ctx/root/usr/share/prometheus/"
    fi
    chmod -R a+rX,go-w "$ctx/root"
    log "building $tag from Debian $(cat "$version_file")"
    podman build --format docker --layers=false -f "$containerfile" -t "$tag" \
        --label "io.github.nbserve.build-key=$key" \
        --label "io.github.nbserve.debian-version=$(cat "$version_file")" "$ctx" >&2
    echo "$tag"
}

build prometheus deploy/offline/prometheus.Containerfile "$prom_bin/../.." "$prom_bin/../../../VERSION" \
    usr/bin/prometheus:/bin/prometheus usr/bin/promtool:/bin/promtool
build alertmanager deploy/offline/alertmanager.Containerfile "$am_bin/../.." "$am_bin/../../../VERSION" \
    usr/bin/prometheus-alertmanager:/bin/alertmanager usr/bin/amtool:/bin/amtool
