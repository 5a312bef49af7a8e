#!/usr/bin/env bash
# Single-process `nbserve train` against the Prefect + Dask counting flow
# (orchestration/prefect/count_flow.py, LocalCluster) on the same shards:
# wall time, MB/s, peak RSS of train and of each count / merge process, and
# the sha256 of both artifacts (equal). Shards from bench/scale_corpus.py.
#
#   bench/scale.sh SHARD_DIR TEST.csv [WORKERS]      # NBSERVE_BIN: the binary (a release build for figures)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shards="$1" test="$2" workers="${3:-2}"
nb="${NBSERVE_BIN:?set NBSERVE_BIN to the nbserve binary}"
py="$("$root/scripts/install-prefect.sh" | tail -n 1)/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1795996800
flags=(--name scale --model-version 1 --alpha 0.01 --min-df 2)
mb=$(du -cb "$shards"/*.csv | tail -1 | awk '{printf "%.1f", $1/1e6}')

/usr/bin/time -f "%e %M" -o "$work/train.time" "$nb" train --data "$shards"/*.csv --out "$work/train.json" \
  --test-data "$test" "${flags[@]}" >/dev/null 2>&1
read -r t_wall t_rss <"$work/train.time"

# Every nbserve the flow runs, timed: its peak RSS is a worker's working set.
cat >"$work/nbserve" <<WRAP
#!/bin/sh
exec /usr/bin/time -a -o "$work/flow.times" -f "%C|%e|%M" "$nb" "\$@"
WRAP
chmod +x "$work/nbserve"
start=$(date +%s.%N)
NBSERVE_BIN="$work/nbserve" PREFECT_LOGGING_LEVEL=WARNING "$py" "$root/orchestration/prefect/count_flow.py" \
  --shard "$shards/*.csv" --work-dir "$work/counts" --out "$work/flow.json" --test-data "$test" \
  --workers "$workers" -- "${flags[@]}" >"$work/flow.log" 2>&1 || { tail -20 "$work/flow.log"; exit 1; }
f_wall=$(echo "$(date +%s.%N) - $start" | bc)
peak() { grep "^[^|]* $1 " "$work/flow.times" | awk -F'|' 'BEGIN{m=0}{if($3>m)m=$3}END{print m}'; }
summed() { grep "^[^|]* $1 " "$work/flow.times" | awk -F'|' '{s+=$2}END{printf "%.1f", s}'; }

echo "corpus: $mb MB in $(ls "$shards"/*.csv | wc -l) shards"
printf 'train (1 process): %.1f s, %.2f MB/s, peak RSS %d MiB\n' "$t_wall" "$(echo "$mb / $t_wall" | bc -l)" $((t_rss / 1024))
printf 'flow (%s Dask workers): %.1f s, %.2f MB/s; count: %s s summed, peak RSS %d MiB; merge: %s s summed, peak RSS %d MiB\n' \
  "$workers" "$f_wall" "$(echo "$mb / $f_wall" | bc -l)" "$(summed count)" $(($(peak count) / 1024)) \
  "$(summed merge)" $(($(peak merge) / 1024))
sha256sum "$work/train.json" "$work/flow.json" | sed "s|$work/||"
[[ "$(sha256sum <"$work/train.json")" == "$(sha256sum <"$work/flow.json")" ]] && echo "sha256 equal"
