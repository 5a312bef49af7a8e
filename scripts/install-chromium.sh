#!/usr/bin/env bash
# Debian's chromium for the browser suite (tests/browser/), installed with apt
# (its shared libraries come with it; a browser cannot be unpacked alone the way
# Prometheus is). No build number is pinned: the archive replaces old builds.
# Playwright drives this browser; it never downloads one of its own.
# Prints the browser's path. NBSERVE_CHROMIUM names another chromium.
set -euo pipefail
bin="${NBSERVE_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$bin" ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "install-chromium: $bin is missing and installing Debian's chromium needs root (apt-get install chromium), or set NBSERVE_CHROMIUM" >&2
        exit 1
    fi
    echo "install-chromium: apt-get install chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends chromium >&2; then
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends chromium >&2
    fi
fi
"$bin" --version >&2
echo "$bin"
