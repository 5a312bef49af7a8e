#!/usr/bin/env bash
# Build the nbserve image from the repository's Dockerfile as
# localhost/nbserve:<version> (<version> from Cargo.toml), without pulling
# anything from a registry. The last line on stdout is the image reference.
#
#   scripts/build-image.sh                    # podman, else buildah, else docker
#   NBSERVE_BIN_RELEASE=path/to/nbserve scripts/build-image.sh
#   scripts/build-image.sh --compile          # compile inside the build (docker build .'s way;
#                                             # needs the Rust builder image from a registry)
#
# The default (BINARY=prebuilt in the Dockerfile): the release binary of this
# host (NBSERVE_BIN_RELEASE, else `cargo build --release` here) without its
# debug info, and its SBOM from Cargo.lock (scripts/sbom.sh), go into a build
# context of their own with models/ and scripts/lib/collect-libs.sh. The build
# stages run on BUILDER: NBSERVE_IMAGE_BUILDER when set (e.g. debian:bookworm-slim
# where a registry is reachable), else a Debian rootfs of this host's release
# made by debootstrap and imported once as localhost/nbserve-builder:<codename>.
# Its glibc is the one the host binary was linked against; the Dockerfile copies
# the libraries the binary loads from it into the `scratch` image.
#
# Engines: podman (installed with apt-get when missing and root: runc, buildah,
# skopeo, CNI DNS), else buildah, else docker when its daemon answers. Images
# are built in the docker format (the OCI format has no HEALTHCHECK), with
# podman and buildah as one layer and without intermediate images left behind
# (--layers=false): the build key below is the cache.
#
# Cached by content: the image carries the label io.github.nbserve.build-key, a
# hash of everything that goes into it (Dockerfile, binary, models, Cargo.lock,
# collect-libs.sh, builder image, version, revision); an image with the same
# key is reused without a build.
#
# Environment: NBSERVE_IMAGE_TAG (default localhost/nbserve:<version>),
# NBSERVE_IMAGE_REVISION (default `git rev-parse HEAD`, "-dirty" when the
# work tree has changes), NBSERVE_IMAGE_SOURCE (the OCI source label).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib/podman.sh
source scripts/lib/podman.sh
# shellcheck source=scripts/lib/cargo.sh
source scripts/lib/cargo.sh

log() { echo "build-image: $*" >&2; }
die() { log "$*"; exit 1; }

mode=prebuilt
case "${1:-}" in
    --compile) mode=compile ;;
    "") ;;
    *) die "unknown argument $1 (usage: scripts/build-image.sh [--compile])" ;;
esac

version="$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["package"]["version"])')"
tag="${NBSERVE_IMAGE_TAG:-localhost/nbserve:$version}"
revision="${NBSERVE_IMAGE_REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
if [[ -z "${NBSERVE_IMAGE_REVISION:-}" ]] && [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    revision="$revision-dirty"
fi
source_url="${NBSERVE_IMAGE_SOURCE:-https://github.com/nbserve/nbserve}"

# ---------------------------------------------------------------- engine
engine="$(container_engine)"
if [[ -z "$engine" ]]; then
    install_podman || die "no container engine (podman, buildah or a docker daemon) and none could be installed"
    engine=podman
fi
[[ "$engine" == docker ]] || podman_env
log "engine: $engine ($("$engine" --version 2>/dev/null | head -n 1))"

image_exists() {
    case "$engine" in
        buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
        *) "$engine" image inspect "$1" >/dev/null 2>&1 ;;
    esac
}
image_field() {  # image_field REF GO_TEMPLATE
    case "$engine" in
        buildah) buildah inspect --type image --format "$2" "$1" ;;
        *) "$engine" image inspect --format "$2" "$1" ;;
    esac
}
image_label() {  # image_label REF NAME
    case "$engine" in
        buildah) image_field "$1" "{{ index .OCIv1.Config.Labels \"$2\" }}" ;;
        *) image_field "$1" "{{ index .Config.Labels \"$2\" }}" ;;
    esac
}

# builder_base: a Debian rootfs of this host's release, imported once.
builder_base() {
    # shellcheck disable=SC1091
    local id codename
    id="$(. /etc/os-release && echo "${ID:-}")"
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [[ "$id" == debian && -n "$codename" ]] \
        || die "the offline builder base is a Debian rootfs of the host's release, and this host is ${id:-unknown} ${codename}; set NBSERVE_IMAGE_BUILDER to an image with the host's glibc, a shell and ldd"
    local ref="localhost/nbserve-builder:$codename"
    if image_exists "$ref"; then
        echo "$ref"
        return
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
        [[ "$(id -u)" -eq 0 ]] || die "debootstrap is missing and installing it needs root"
        log "installing debootstrap (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2; }
    fi
    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/nbserve-builder.XXXXXX")"
    log "debootstrap --variant=minbase $codename (once; then reused as $ref)"
    # The archive apt uses on this host (debootstrap's default mirror).
    debootstrap --variant=minbase "$codename" "$dir/root" >"$dir/debootstrap.log" 2>&1 \
        || { tail -n 30 "$dir/debootstrap.log" >&2; rm -rf "$dir"; die "debootstrap failed"; }
    rm -rf "$dir/root/var/cache/apt/archives"/*.deb "$dir/root/var/lib/apt/lists"/*
    case "$engine" in
        buildah)
            local ctr
            ctr="$(buildah from scratch)"
            tar -C "$dir/root" -c . | buildah add "$ctr" - / >/dev/null
            buildah commit --quiet "$ctr" "$ref" >/dev/null
            buildah rm "$ctr" >/dev/null ;;
        *) tar -C "$dir/root" -c . | "$engine" import - "$ref" >/dev/null ;;
    esac
    rm -rf "$dir"
    echo "$ref"
}

# ---------------------------------------------------------------- inputs
started=$(date +%s)
args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url")
context="$root"
work="$(mktemp -d "${TMPDIR:-/tmp}/nbserve-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
{
    echo "mode=$mode version=$version revision=$revision source=$source_url"
    sha256sum Dockerfile scripts/lib/collect-libs.sh scripts/sbom.sh Cargo.lock models/*
} >"$work/key"

if [[ "$mode" == prebuilt ]]; then
    if [[ -z "${NBSERVE_BIN_RELEASE:-}" ]]; then
        log "building the release binary (cargo build --release)"
        cargo build --locked --release --quiet --bin nbserve
        NBSERVE_BIN_RELEASE="$(cargo_bin release nbserve)"
    fi
    [[ -x "$NBSERVE_BIN_RELEASE" ]] || die "no release binary at $NBSERVE_BIN_RELEASE"
    builder="${NBSERVE_IMAGE_BUILDER:-$(builder_base)}"
    builder_id="$(image_field "$builder" '{{.Id}}' 2>/dev/null || echo "$builder")"
    echo "builder=$builder@$builder_id binary=$(sha256sum <"$NBSERVE_BIN_RELEASE" | cut -d' ' -f1)" >>"$work/key"
    args+=(--build-arg "BINARY=prebuilt" --build-arg "BUILDER=$builder")
else
    # The sources git knows, and what changed in them since the last commit.
    { git ls-files -s; git diff HEAD; } >>"$work/key" 2>/dev/null || true
fi
key="$(sha256sum "$work/key" | cut -c1-32)"

if image_exists "$tag" && [[ "$(image_label "$tag" io.github.nbserve.build-key 2>/dev/null)" == "$key" ]]; then
    log "$tag is up to date (build key $key): not rebuilt"
    echo "$tag"
    exit 0
fi

if [[ "$mode" == prebuilt ]]; then
    context="$work/context"
    mkdir -p "$context/dist" "$context/scripts/lib"
    cp -R models "$context/models"
    install -m 0755 scripts/lib/collect-libs.sh "$context/scripts/lib/collect-libs.sh"
    install -m 0755 "$NBSERVE_BIN_RELEASE" "$context/dist/nbserve"
    # Like the compile stage: no debug info, symbols kept (backtraces name functions).
    strip --strip-debug "$context/dist/nbserve"
    scripts/sbom.sh "$context/dist/sbom.cdx.json" >&2
fi

# ---------------------------------------------------------------- build
build=("$engine" build)
case "$engine" in
    podman | buildah) build+=(--format docker --layers=false) ;;
esac
log "building $tag ($mode, context $context)"
"${build[@]}" "${args[@]}" --label "io.github.nbserve.build-key=$key" \
    -f "$root/Dockerfile" -t "$tag" "$context" >&2
# buildah's inspect has neither field: the log line then says so.
size="$(image_field "$tag" '{{.Size}}' 2>/dev/null || echo 0)"
log "built $tag in $(($(date +%s) - started)) s: $((size / 1024)) KiB, id $(image_field "$tag" '{{.Id}}' 2>/dev/null | cut -c1-19)"
echo "$tag"
