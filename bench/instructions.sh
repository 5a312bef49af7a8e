#!/usr/bin/env bash
# Deterministic instruction counts (valgrind callgrind), for comparing builds on
# a noisy machine where wall-clock benchmarks move by ±30%.
#
#   bench/instructions.sh                      # the release build
#   NBSERVE_BIN=/path/to/nbserve bench/instructions.sh
#   REQUESTS=2000 TOP=25 bench/instructions.sh
#
# 1. Classifier: `nbserve predict --data <corpus>` under callgrind, counting
#    only inside `Classifier::predict`: instructions in total, per document and
#    per byte, and L1 data-read misses (a proxy for the vocabulary's cache misses).
# 2. Server: `nbserve serve` under callgrind twice, once answering WARM and once
#    WARM + REQUESTS `/predict` requests (real documents, one keep-alive
#    connection); the difference divided by REQUESTS is the cost of one request,
#    printed per function (TOP rows), start-up and warm-up cancelled out.
#
# Needs valgrind (`apt-get install valgrind`) and python3 (standard library
# only). Uses data/spamassassin.csv (scripts/fetch-data.sh), else the committed
# tests/data/sample.csv with a warning. Output: stdout, and
# bench/results/instructions-<UTC time>.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
REQUESTS="${REQUESTS:-1000}"
WARM="${WARM:-100}"
TOP="${TOP:-20}"
PORT_BASE="${PORT_BASE:-28190}"
log() { echo "instructions: $*" >&2; }

command -v valgrind >/dev/null || { log "valgrind is not installed (apt-get install valgrind)"; exit 2; }
data="data/spamassassin.csv"
if [[ ! -f "$data" ]]; then
    log "$data is missing (scripts/fetch-data.sh); using tests/data/sample.csv (not representative)"
    data="tests/data/sample.csv"
fi
if [[ -z "${NBSERVE_BIN:-}" ]]; then
    log "building the release nbserve"
    cargo build --release --quiet
    # shellcheck source=scripts/lib/cargo.sh
    source "$root/scripts/lib/cargo.sh"
    NBSERVE_BIN="$(cargo_bin release nbserve)"
fi
model="$root/models/spam-nb.json"
work="$(mktemp -d)"
pids=()
cleanup() {
    local p
    for p in "${pids[@]:-}"; do
        if [[ -n "$p" ]]; then kill "$p" 2>/dev/null || true; fi
    done
    for p in "${pids[@]:-}"; do
        if [[ -n "$p" ]]; then wait "$p" 2>/dev/null || true; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. classifier -------------------------------------------------------------------------
log "callgrind: Classifier::predict over $data"
valgrind --tool=callgrind --cache-sim=yes \
    --toggle-collect='nbserve::classifier::Classifier::predict*' \
    --callgrind-out-file="$work/predict.out" \
    "$NBSERVE_BIN" predict --model "$model" --data "$data" >/dev/null 2>"$work/predict.err"

# --- 2. server -------------------------------------------------------------------------------
# serve_under_callgrind PORT N OUT: start-up, WARM + N requests, graceful stop.
serve_under_callgrind() {
    local port="$1" n="$2" out="$3" pid
    NBSERVE__SERVER__HOST=127.0.0.1 NBSERVE__SERVER__PORT="$port" NBSERVE__MODEL__PATH="$model" \
        NBSERVE__MODEL__DIR="$(dirname "$model")" \
        valgrind --tool=callgrind --callgrind-out-file="$out" "$NBSERVE_BIN" serve \
        >"$out.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    python3 - "$data" "$port" "$n" <<'PYEOF'
import csv, http.client, json, sys, time
csv.field_size_limit(sys.maxsize)
data, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(data, newline="", encoding="utf-8") as f:
    texts = [r["text"] for r in csv.DictReader(f)]
k = min(1000, len(texts))
bodies = [json.dumps({"text": texts[i * len(texts) // k]}) for i in range(k)]
bodies = [b for b in bodies if json.loads(b)["text"].strip()]
deadline = time.time() + 120
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/ready")
        if c.getresponse().status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("server under valgrind not ready after 120 s")
    time.sleep(0.2)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for i in range(n):
    c.request("POST", "/predict", body=bodies[i % len(bodies)],
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"request {i}: HTTP {r.status}")
PYEOF
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}
log "callgrind: nbserve serve, $WARM then $((WARM + REQUESTS)) /predict requests"
# One after the other, in this shell, so `cleanup` knows every server started.
serve_under_callgrind "$PORT_BASE" "$WARM" "$work/serve-a.out"
serve_under_callgrind "$((PORT_BASE + 1))" "$((WARM + REQUESTS))" "$work/serve-b.out"

mkdir -p bench/results
out="bench/results/instructions-$(date -u +%Y%m%dT%H%M%SZ).md"
python3 - "$work" "$data" "$REQUESTS" "$TOP" "$NBSERVE_BIN" >"$out" <<'PYEOF'
import csv, re, subprocess, sys, time
work, data, n, top, binary = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
csv.field_size_limit(sys.maxsize)
with open(data, newline="", encoding="utf-8") as f:
    texts = [r["text"] for r in csv.DictReader(f)]
docs, size = len(texts), sum(len(t.encode()) for t in texts)


def functions(path):
    """Self cost per function (inlined code counts toward its caller)."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no",
                           "--threshold=100", path], capture_output=True, text=True,
                          check=True).stdout
    totals, cost = {}, None
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)$", line)
        if not m:
            continue
        value, name = int(m.group(1).replace(",", "")), m.group(2).strip()
        if "PROGRAM TOTALS" in name:
            cost = value
            continue
        name = re.sub(r" \[[^]]*\]$", "", name)       # drop "[binary]"
        name = name.split(":", 1)[1] if ":" in name and not name.startswith("<") else name
        totals[name] = totals.get(name, 0) + value
    return cost, totals


events = open(f"{work}/predict.out").read()
summary = re.search(r"^summary: (.*)$", events, re.M).group(1).split()
names = re.search(r"^events: (.*)$", events, re.M).group(1).split()
ev = dict(zip(names, map(int, summary)))
print(f"## Instruction counts ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
print(f"Binary: `{binary}`. Corpus: {data}, {docs:,} documents, {size / 1e6:.1f} MB.\n")
print("| classifier (`Classifier::predict`, whole corpus) | value |")
print("|---|---:|")
print(f"| instructions | {ev['Ir']:,} |")
print(f"| instructions per document | {ev['Ir'] / docs:,.0f} |")
print(f"| instructions per byte | {ev['Ir'] / size:.1f} |")
print(f"| L1 data read misses (simulated) | {ev.get('D1mr', 0):,} |")

a_total, a = functions(f"{work}/serve-a.out")
b_total, b = functions(f"{work}/serve-b.out")
diff = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
per_request = (b_total - a_total) / n
print(f"\n### One `/predict` request: {per_request:,.0f} instructions "
      f"(difference of two runs, {n:,} requests apart)\n")
print("| instructions | share | function |")
print("|---:|---:|---|")
for name, v in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
    print(f"| {v / n:,.0f} | {100 * v / (b_total - a_total):.1f}% | `{name[:110]}` |")
PYEOF
cat "$out"
log "written to $out"
