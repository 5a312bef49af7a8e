# shellcheck shell=bash
# Sourced (not run): install a tool from Debian's archive without installing the
# package: `apt-get download` the archive's current candidate, `dpkg -x` it
# into a private directory.
#
# No Debian build number is pinned: the archive rebuilds packages (2.42.0+ds-5+b6
# became 2.42.0+ds-5+deb12u1) and drops the old builds, so a pin breaks fresh
# machines. apt checks every download against the archive's signed checksums;
# what we pin is the *upstream* version range we have tested, and the version
# that ran is recorded in DEST/VERSION and printed.
#
#   source scripts/lib/deb.sh
#   deb_unpack PACKAGE UPSTREAM_REGEX DEST     # → DEST/root/..., DEST/VERSION
#
# Needs apt-get, apt-cache and dpkg (a Debian-family system); `apt-get update`
# (root) only runs when the local package lists cannot serve the package.

deb_log() { echo "deb: $*" >&2; }

# deb_candidate PACKAGE: the version apt would download now (empty if none).
deb_candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { if ($2 != "(none)") print $2 }'
}

deb_unpack() {
    local pkg="$1" upstream_re="$2" dest="$3"
    local tool
    for tool in apt-get apt-cache dpkg; do
        command -v "$tool" >/dev/null || {
            deb_log "'$tool' not found: installing $pkg needs a Debian-family system (apt-get, dpkg)"
            return 1
        }
    done
    local work version upstream rc=0
    work="$(mktemp -d "${TMPDIR:-/tmp}/nbserve-deb.XXXXXX")"
    # apt drops to the _apt user for downloads; let it write here.
    chmod 0777 "$work"
    version="$(deb_candidate "$pkg")"
    if [[ -z "$version" ]] || ! (cd "$work" && apt-get download -q "$pkg=$version" >&2 2>"$work/err"); then
        [[ -s "$work/err" ]] && cat "$work/err" >&2
        deb_log "$pkg ${version:-<no candidate>} not downloadable from the local lists; running apt-get update"
        if ! apt-get update -q >&2; then
            deb_log "apt-get update failed (it needs root); cannot fetch $pkg"
            rm -rf "$work"
            return 1
        fi
        version="$(deb_candidate "$pkg")"
        if [[ -z "$version" ]]; then
            deb_log "the archive has no package '$pkg' for this system"
            rm -rf "$work"
            return 1
        fi
        (cd "$work" && apt-get download -q "$pkg=$version" >&2) || rc=$?
    fi
    if [[ $rc -ne 0 ]]; then
        deb_log "apt-get download $pkg=$version failed"
        rm -rf "$work"
        return 1
    fi
    upstream="${version#*:}"
    upstream="${upstream%-*}"
    if [[ ! "$upstream" =~ $upstream_re ]]; then
        deb_log "$pkg $version: upstream version $upstream is not one this project supports ($upstream_re)"
        rm -rf "$work"
        return 1
    fi
    local debs=("$work"/*.deb)
    mkdir -p "$dest"
    rm -rf "$dest/root"
    dpkg -x "${debs[0]}" "$dest/root"
    printf '%s\n' "$version" >"$dest/VERSION"
    rm -rf "$work"
    deb_log "unpacked $pkg $version into $dest/root"
}
