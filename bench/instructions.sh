#!/usr/bin/env bash
# Deterministic instruction counts (valgrind callgrind), for comparing builds on
# a noisy machine where wall-clock benchmarks move by ±30%.
#
#   bench/instructions.sh                      # the release builds
#   NBSERVE_BIN=/path/to/nbserve FLOOR_BIN=/path/to/floor_server bench/instructions.sh
#   REQUESTS=2000 TOP=25 bench/instructions.sh
#
# 1. Classifier: `nbserve predict --data <corpus>` under callgrind, counting
#    only inside `Classifier::predict`: instructions in total, per document and
#    per byte, and L1 data-read misses (a proxy for the vocabulary's cache misses).
# 2. Server against the floor (examples/floor_server.rs: axum, serde parses
#    `{"text"}`, a constant answer): each under callgrind twice, answering WARM
#    and WARM + REQUESTS `/predict` requests over one keep-alive connection
#    (bench/request_instructions.py); the difference divided by REQUESTS is the
#    cost of one request, start-up and warm-up cancelled out. Two request mixes
#    of real texts: `short` (the Subject line of 1,000 evenly spaced messages)
#    and `corpus` (the same messages whole). Prints nbserve, floor and their
#    ratio, and both per function (TOP rows).
#
# Needs valgrind (on PATH, else scripts/install-valgrind.sh unpacks Debian's)
# and python3 (standard library only). Uses data/spamassassin.csv
# (scripts/fetch-data.sh), else the committed tests/data/sample.csv with a warning. Output: stdout, and
# bench/results/instructions-<UTC time>.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
REQUESTS="${REQUESTS:-1000}"
WARM="${WARM:-100}"
TOP="${TOP:-20}"
log() { echo "instructions: $*" >&2; }

PATH="$(scripts/install-valgrind.sh | tail -n1):$PATH"
data="data/spamassassin.csv"
if [[ ! -f "$data" ]]; then
    log "$data is missing (scripts/fetch-data.sh); using tests/data/sample.csv (not representative)"
    data="tests/data/sample.csv"
fi
# shellcheck source=scripts/lib/cargo.sh
source "$root/scripts/lib/cargo.sh"
if [[ -z "${NBSERVE_BIN:-}" ]]; then
    log "building the release nbserve"
    cargo build --release --quiet --locked --bin nbserve
    NBSERVE_BIN="$(cargo_bin release nbserve)"
fi
if [[ -z "${FLOOR_BIN:-}" ]]; then
    log "building the release floor (examples/floor_server.rs)"
    cargo build --release --quiet --locked --example floor_server
    FLOOR_BIN="$(cargo_bin release examples/floor_server)"
fi
model="$root/models/spam-nb.json"
work="$(mktemp -d)"
# bench/request_instructions.py stops the servers it starts, also on failure.
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# --- 1. classifier -------------------------------------------------------------------------
log "callgrind: Classifier::predict over $data"
valgrind --tool=callgrind --cache-sim=yes \
    --toggle-collect='nbserve::classifier::Classifier::predict*' \
    --callgrind-out-file="$work/predict.out" \
    "$NBSERVE_BIN" predict --model "$model" --data "$data" >/dev/null 2>"$work/predict.err"

# --- 2. server and floor ----------------------------------------------------------------------
# bench/request_instructions.py: each server under callgrind twice (WARM, then WARM + REQUESTS
# /predict requests over one keep-alive connection), the difference per request and per
# function; for nbserve and the floor (examples/floor_server.rs), on two request mixes.
for mix in short corpus; do
    for kind in nbserve floor; do
        bin="$NBSERVE_BIN"
        [[ "$kind" == floor ]] && bin="$FLOOR_BIN"
        log "callgrind: $kind, mix $mix: $WARM then $((WARM + REQUESTS)) /predict requests"
        python3 bench/request_instructions.py --bin "$bin" --kind "$kind" --data "$data" \
            --mix "$mix" --warm "$WARM" --requests "$REQUESTS" >"$work/$kind-$mix.json"
    done
done

mkdir -p bench/results
out="bench/results/instructions-$(date -u +%Y%m%dT%H%M%SZ).md"
python3 - "$work" "$data" "$TOP" "$NBSERVE_BIN" "$FLOOR_BIN" >"$out" <<'PYEOF'
import csv, json, re, sys, time
work, data, top, binary, floor_bin = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
csv.field_size_limit(sys.maxsize)
with open(data, newline="", encoding="utf-8") as f:
    texts = [r["text"] for r in csv.DictReader(f)]
docs, size = len(texts), sum(len(t.encode()) for t in texts)

events = open(f"{work}/predict.out").read()
summary = re.search(r"^summary: (.*)$", events, re.M).group(1).split()
names = re.search(r"^events: (.*)$", events, re.M).group(1).split()
ev = dict(zip(names, map(int, summary)))
print(f"## Instruction counts ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
print(f"nbserve: `{binary}`. Floor: `{floor_bin}`. Corpus: {data}, {docs:,} documents, {size / 1e6:.1f} MB.\n")
print("| classifier (`Classifier::predict`, whole corpus) | value |")
print("|---|---:|")
print(f"| instructions | {ev['Ir']:,} |")
print(f"| instructions per document | {ev['Ir'] / docs:,.0f} |")
print(f"| instructions per byte | {ev['Ir'] / size:.1f} |")
print(f"| L1 data read misses (simulated) | {ev.get('D1mr', 0):,} |")

runs = {(k, m): json.load(open(f"{work}/{k}-{m}.json"))
        for k in ("nbserve", "floor") for m in ("short", "corpus")}
n = runs["nbserve", "short"]["requests"]
print(f"\n### One `/predict` request (difference of two runs, {n:,} requests apart)\n")
print("| request mix | mean text | nbserve | floor | nbserve / floor | goal ≤ 1.3 |")
print("|---|---:|---:|---:|---:|---|")
for m, what in (("short", "Subject lines"), ("corpus", "whole documents")):
    a, b = runs["nbserve", m], runs["floor", m]
    r = a["per_request"] / b["per_request"]
    print(f"| {m} ({what}) | {a['mean_text_bytes']:,.0f} B | {a['per_request']:,.0f} | "
          f"{b['per_request']:,.0f} | {r:.2f} | {'met' if r <= 1.3 else 'missed'} |")

for m in ("short", "corpus"):
    a, b = runs["nbserve", m]["functions"], runs["floor", m]["functions"]
    ta, tb = runs["nbserve", m]["per_request"], runs["floor", m]["per_request"]
    print(f"\n#### Per function, mix `{m}` (self cost per request; top {top} by nbserve − floor)\n")
    print("| nbserve | floor | nbserve − floor | function |")
    print("|---:|---:|---:|---|")
    rows = sorted(set(a) | set(b), key=lambda k: -(a.get(k, 0) - b.get(k, 0)))
    shown_a = shown_b = 0
    for name in rows[:top]:
        va, vb = a.get(name, 0), b.get(name, 0)
        shown_a, shown_b = shown_a + va, shown_b + vb
        print(f"| {va:,.0f} | {vb:,.0f} | {va - vb:+,.0f} | `{name[:110]}` |")
    print(f"| {ta - shown_a:,.0f} | {tb - shown_b:,.0f} | {(ta - shown_a) - (tb - shown_b):+,.0f} | (the rest) |")
    print(f"| **{ta:,.0f}** | **{tb:,.0f}** | **{ta - tb:+,.0f}** | total |")
PYEOF
cat "$out"
log "written to $out"
