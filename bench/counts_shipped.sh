#!/usr/bin/env bash
# The acceptance check of counts on the shipped corpus (data/spamassassin.csv,
# scripts/fetch-data.sh): its training part (`nbserve split --seed 42`) cut in
# 7 shards, counted, merged in two different trees into the shipped model's
# parameters (alpha 0.01, min_df 2), against `nbserve train` on the shards;
# with --tune, the README's grid by `tune --counts` (folds by text hash)
# against `tune --fold-by hash` on the shards. Prints the sha256s; exit 1 if
# any pair differs.
#
#   NBSERVE_BIN="${CARGO_TARGET_DIR:-target}/release/nbserve" bench/counts_shipped.sh [--tune]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
nb="${NBSERVE_BIN:-nbserve}"
w="$(mktemp -d)"
trap 'rm -rf "$w"' EXIT
export SOURCE_DATE_EPOCH=1795996800
"$nb" split --data "$root/data/spamassassin.csv" --seed 42 --train-out "$w/A.csv" --test-out "$w/B.csv" >/dev/null 2>&1
python3 "$root/bench/shard_csv.py" --data "$w/A.csv" --shards 7 --out-dir "$w/sh" >/dev/null 2>&1
t=(--name spam-nb --model-version 2026.11.30 --test-data "$w/B.csv")
status=0
same() {
    local a b
    a=$(sha256sum <"$2" | cut -c1-64) b=$(sha256sum <"$3" | cut -c1-64)
    echo "$1: $a $b"
    [[ "$a" == "$b" ]] || { echo "$1: DIFFERENT" >&2; status=1; }
}
for f in "$w"/sh/*.csv; do "$nb" count --data "$f" --out "${f%.csv}.counts" >/dev/null 2>&1; done
s=("$w"/sh/shard-00{0,1,2,3,4,5,6}.counts)
"$nb" merge "${s[0]}" "${s[1]}" "${s[2]}" --out-counts "$w/a.counts" >/dev/null 2>&1
"$nb" merge "${s[3]}" "${s[4]}" "${s[5]}" "${s[6]}" --out-counts "$w/b.counts" >/dev/null 2>&1
"$nb" merge "$w/a.counts" "$w/b.counts" --out "$w/m1.json" "${t[@]}" --alpha 0.01 --min-df 2 >/dev/null 2>&1
"$nb" merge "${s[6]}" "${s[0]}" --out-counts "$w/c.counts" >/dev/null 2>&1
"$nb" merge "$w/c.counts" "${s[3]}" "${s[5]}" --out-counts "$w/d.counts" >/dev/null 2>&1
"$nb" merge "${s[4]}" "$w/d.counts" "${s[2]}" "${s[1]}" --out "$w/m2.json" "${t[@]}" --alpha 0.01 --min-df 2 >/dev/null 2>&1
"$nb" train --data "$w"/sh/*.csv --out "$w/t.json" "${t[@]}" --alpha 0.01 --min-df 2 >/dev/null 2>&1
same "merge tree 1 vs train" "$w/m1.json" "$w/t.json"
same "merge tree 2 vs train" "$w/m2.json" "$w/t.json"
if [[ "${1:-}" == "--tune" ]]; then
    # Each grid flag takes one comma-separated list (one array element).
    # shellcheck disable=SC2054
    g=(--alpha 0.01,0.1,1 --min-df 1,2,5 --max-features 0,20000 --folds 5)
    mkdir "$w/f"
    for f in "$w"/sh/*.csv; do "$nb" count --folds 5 --data "$f" --out "$w/f/$(basename "${f%.csv}").counts" >/dev/null 2>&1; done
    "$nb" merge "$w"/f/*.counts --out-counts "$w/total.counts" >/dev/null 2>&1
    "$nb" tune --counts "$w/total.counts" --data "$w"/sh/*.csv --out "$w/tc.json" "${t[@]}" "${g[@]}" >"$w/tc.txt" 2>&1
    "$nb" tune --fold-by hash --data "$w"/sh/*.csv --out "$w/tr.json" "${t[@]}" "${g[@]}" >"$w/tr.txt" 2>&1
    grep -h "^chosen:" "$w/tc.txt" "$w/tr.txt"
    same "tune --counts vs tune --fold-by hash" "$w/tc.json" "$w/tr.json"
fi
exit "$status"
