#!/usr/bin/env bash
# In-process classifier speed: nbserve (criterion, benches/classifier.rs) vs
# scikit-learn (bench/sklearn_inprocess.py) on the same documents, one core.
#
#   bench/inprocess.sh                  # full corpus, batches of 1000
#   NBSERVE_BENCH_DOCS=500 bench/inprocess.sh
#
# Needs data/spamassassin.csv (scripts/fetch-data.sh); falls back to
# tests/data/sample.csv with a warning. Prints a markdown table (MB/s, docs/s,
# ratio) and writes it to bench/results/inprocess-<UTC time>.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib/cargo.sh
source scripts/lib/cargo.sh
export NBSERVE_BENCH_DOCS="${NBSERVE_BENCH_DOCS:-1000}"

data="data/spamassassin.csv"
if [[ ! -f "$data" ]]; then
    echo "inprocess: $data is missing; run scripts/fetch-data.sh for the real corpus." >&2
    echo "inprocess: falling back to tests/data/sample.csv (300 rows: numbers are not comparable)" >&2
    data="tests/data/sample.csv"
fi

PY="$(scripts/setup-python.sh | tail -n 1)"

echo "inprocess: cargo bench --bench classifier (one thread)" >&2
# taskset keeps the benchmark on one core when it is available.
pin=()
if command -v taskset >/dev/null 2>&1; then pin=(taskset -c 0); fi
"${pin[@]}" cargo bench --quiet --bench classifier -- --noplot >&2

echo "inprocess: scikit-learn on the same documents" >&2
sk_json="$("${pin[@]}" "$PY" bench/sklearn_inprocess.py "$data" "$NBSERVE_BENCH_DOCS")"

mkdir -p bench/results
out="bench/results/inprocess-$(date -u +%Y%m%dT%H%M%SZ).md"
CRITERION_DIR="$(cargo_bin . criterion)" SK_JSON="$sk_json" DOCS="$NBSERVE_BENCH_DOCS" DATA="$data" "$PY" - >"$out" <<'PYEOF'
import csv, json, os, platform, sys, time

sk = json.loads(os.environ["SK_JSON"])
n = int(os.environ["DOCS"])
crit = os.environ["CRITERION_DIR"]


def median_ns(group, bench):
    with open(f"{crit}/{group}/{bench}/new/estimates.json") as f:
        return json.load(f)["median"]["point_estimate"]


def bytes_of(group, bench):
    with open(f"{crit}/{group}/{bench}/new/benchmark.json") as f:
        t = json.load(f)["throughput"]
    return t.get("Bytes") or t.get("Elements")


batch_bench = f"{sk['documents']}_documents"
b_ns = median_ns("predict_batch_bytes", batch_bench)
b_bytes = bytes_of("predict_batch_bytes", batch_bench)
o_ns = median_ns("predict_one_bytes", "median_document")
o_bytes = bytes_of("predict_one_bytes", "median_document")
l_ns = median_ns("artifact_load_bytes", "spam_nb_json")
l_bytes = bytes_of("artifact_load_bytes", "spam_nb_json")

rs_batch_mbs = b_bytes / b_ns * 1e3
rs_batch_dps = sk["documents"] / b_ns * 1e9
rs_one_dps = 1e9 / o_ns
rs_one_mbs = o_bytes / o_ns * 1e3
if b_bytes != sk["bytes"]:
    print(f"inprocess: WARNING: Rust batch is {b_bytes} bytes, Python's {sk['bytes']}", file=sys.stderr)

print(f"## In-process classifier speed ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
print()
print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; one core each.")
print(f"Documents: {sk['documents']} evenly spaced rows of {os.environ['DATA']} ({sk['bytes'] / 1e6:.2f} MB, mean {sk['bytes'] / sk['documents']:.0f} B); scikit-learn {sk['sklearn']}.")
print()
print("| workload | nbserve MB/s | nbserve docs/s | scikit-learn MB/s | scikit-learn docs/s | nbserve / scikit-learn |")
print("|---|---:|---:|---:|---:|---:|")
print(f"| batch: {sk['documents']} documents in one call | {rs_batch_mbs:,.1f} | {rs_batch_dps:,.0f} | {sk['batch_mb_per_s']:,.2f} | {sk['batch_docs_per_s']:,.0f} | {rs_batch_dps / sk['batch_docs_per_s']:,.0f}× |")
# predict_batch is a loop over predict, so nbserve's one-at-a-time rate is its batch rate.
print(f"| one at a time: the same documents, one call each | {rs_batch_mbs:,.1f} | {rs_batch_dps:,.0f} | {sk['one_mb_per_s']:,.2f} | {sk['one_docs_per_s']:,.0f} | {rs_batch_dps / sk['one_docs_per_s']:,.0f}× |")
print(f"| one median document ({o_bytes} B), `predict` | {rs_one_mbs:,.1f} | {rs_one_dps:,.0f} ({o_ns / 1e3:.1f} µs) | | | |")
print(f"| artifact load + validate ({l_bytes / 1e6:.1f} MB JSON) | {l_bytes / l_ns * 1e3:,.1f} | {1e9 / l_ns:,.1f} loads/s ({l_ns / 1e6:.1f} ms) | | | |")
print()
print(f"Targets: batch ≥ 300 MB/s on one core: {'met' if rs_batch_mbs >= 300 else 'missed'} ({rs_batch_mbs:,.0f} MB/s); "
      f"≥ 40× scikit-learn batch: {'met' if rs_batch_dps / sk['batch_docs_per_s'] >= 40 else 'missed'} ({rs_batch_dps / sk['batch_docs_per_s']:,.0f}×).")
PYEOF
cat "$out"
echo "inprocess: written to $out" >&2
