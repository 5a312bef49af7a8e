#!/usr/bin/env bash
# Writes the artifacts bench/reliability.sh and bench/soak.sh reload, into DIR:
#   spam-nb.json      the shipped model (version 2026.11.30)
#   rel-a.json        retrained on data/spamassassin.csv with the shipped model's
#                     parameters (alpha 0.01, min_df 2), version rel-a
#   rel-b.json        the same, version rel-b
#   corrupt.json      rel-a with its version edited to bad-corrupt and the
#                     checksum left alone (a tampered file: checksum mismatch)
#   truncated.json    the first half of corrupt.json (not JSON)
#   below-gate.json   well-formed, version bad-gate, F1 macro far below 0.90
#                     (alpha 1000 smooths every class to the prior)
# Usage: bench/make_artifacts.sh NBSERVE_BINARY DIR
set -euo pipefail
bin="$1"; dir="$2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$dir"
cp "$root/models/spam-nb.json" "$dir/spam-nb.json"
for v in rel-a rel-b; do
    "$bin" train --data "$root/data/spamassassin.csv" --out "$dir/$v.json" \
        --name spam-nb --model-version "$v" --alpha 0.01 --min-df 2 >/dev/null
done
"$bin" train --data "$root/data/spamassassin.csv" --out "$dir/below-gate.json" \
    --name spam-nb --model-version bad-gate --alpha 1000 >/dev/null
python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
raw = open(f"{d}/rel-a.json", "rb").read()
bad = raw.replace(b'"version":"rel-a"', b'"version":"bad-corrupt"', 1)
assert bad != raw, "version field not found"
open(f"{d}/corrupt.json", "wb").write(bad)
open(f"{d}/truncated.json", "wb").write(bad[: len(bad) // 2])
PY
for f in rel-a rel-b below-gate; do
    "$bin" check --model "$dir/$f.json" --min-f1-macro 0.90 >/dev/null 2>&1 \
        && echo "artifacts: $f.json passes the gate" || echo "artifacts: $f.json is below the gate"
done
