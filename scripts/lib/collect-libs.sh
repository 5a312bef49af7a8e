#!/bin/sh
# Copies into ROOT every shared library the given ELF executables load, as the
# dynamic loader of the system this runs on resolves them (ldd: the NEEDED
# entries, transitively, and the program interpreter), each at the path the
# loader found it, so ROOT/<program> runs in a root file system holding nothing
# else. A static executable needs nothing and gets nothing.
#
#   collect-libs.sh ROOT /path/in/ROOT/to/program...
#
# POSIX sh and coreutils only: it runs in the image builds (the Dockerfile's
# builder stage, any Debian-like base) and on a host assembling an image root
# (scripts/build-offline-images.sh). Fails when a library is not found or a
# symbol version is missing (a binary built against a newer glibc than this
# system's): copying anything else would give an image that cannot start.
# Prints each library it copied.
set -eu

root="$1"
shift
list="$(mktemp)"
out="$(mktemp)"
trap 'rm -f "$list" "$out"' EXIT
for prog in "$@"; do
    status=0
    ldd "$root$prog" >"$out" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        # glibc's ldd says "not a dynamic executable" (exit 1) for a static one.
        if grep -q 'not a dynamic executable' "$out"; then
            echo "collect-libs: $prog is static: no libraries needed"
            continue
        fi
        echo "collect-libs: ldd $prog failed:" >&2
        cat "$out" >&2
        exit 1
    fi
    if grep -q 'not found' "$out"; then
        echo "collect-libs: $prog needs what this system does not have:" >&2
        grep 'not found' "$out" >&2
        exit 1
    fi
    # "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)": the resolved path;
    # "/lib64/ld-linux-x86-64.so.2 (0x...)": the interpreter, named by its path.
    # linux-vdso.so.1 has neither (the kernel maps it).
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' "$out" >>"$list"
done
sort -u "$list" | while read -r lib; do
    dest="$root$lib"
    mkdir -p "$(dirname "$dest")"
    # -L: the file itself, under the name the loader asked for (a symlink's
    # target would be found by no one).
    cp -L "$lib" "$dest"
    chmod 0755 "$dest"
    echo "collect-libs: $lib"
done
