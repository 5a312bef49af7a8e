#!/usr/bin/env bash
# Finds or installs valgrind (callgrind and callgrind_annotate) for the
# instruction counts of bench/instructions.sh and scripts/test-perf.sh: the one
# on PATH, else Debian's `valgrind` package (upstream 3.x) unpacked, not
# installed, into ${NBSERVE_CACHE:-$HOME/.cache/nbserve}/valgrind
# (scripts/lib/deb.sh; no Debian build number pinned, apt verifies the download
# against the archive's signed checksums). An unpacked valgrind finds its tools
# through VALGRIND_LIB, which the `bin/valgrind` shim made here sets.
#
# Idempotent. Progress goes to stderr; the last line on stdout is the folder to
# put first on PATH:
#
#   PATH="$(scripts/install-valgrind.sh | tail -n1):$PATH"
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}/valgrind"
log() { echo "install-valgrind: $*" >&2; }
works() { "$1/valgrind" --version >/dev/null 2>&1 && [[ -x "$1/callgrind_annotate" ]]; }

if command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null; then
    bin="$(dirname "$(command -v valgrind)")"
elif works "$cache/bin"; then
    bin="$cache/bin"
else
    # shellcheck source=scripts/lib/deb.sh
    source "$root/scripts/lib/deb.sh"
    deb_unpack valgrind '^3\.' "$cache" \
        || { log "no valgrind: neither on PATH nor installable from the Debian archive"; exit 1; }
    unpacked="$cache/root/usr"
    bin="$cache/bin"
    mkdir -p "$bin"
    # Debian's /usr/bin/valgrind is a wrapper that runs "$0.bin"; the tools
    # are looked up under VALGRIND_LIB, /usr/libexec/valgrind by default.
    cat >"$bin/valgrind" <<EOF
#!/bin/sh
VALGRIND_LIB="$unpacked/libexec/valgrind"
export VALGRIND_LIB
exec "$unpacked/bin/valgrind" "\$@"
EOF
    chmod +x "$bin/valgrind"
    ln -sf "$unpacked/bin/callgrind_annotate" "$bin/callgrind_annotate"
    works "$bin" || { log "the unpacked valgrind in $cache does not run"; exit 1; }
fi
log "$("$bin/valgrind" --version) ($bin)"
echo "$bin"
