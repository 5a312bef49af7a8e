#!/usr/bin/env bash
# `nbserve tune` vs scikit-learn GridSearchCV (n_jobs=1) on the same grid and split.
#
#   bench/tune.sh            # builds the release nbserve first
#   NBSERVE_BIN=... bench/tune.sh
#
# Grid (18 points): alpha 0.01,0.1,1 x min_df 1,2,5 x max_features none,20000, Bernoulli
# NB on binary features, 5 stratified folds, seed 42, on data/spamassassin.csv split
# 80/20 (seed 42) exactly as `nbserve tune` and `nbserve split` split it. Prints both
# wall times, the speed ratio and both winners' held-out F1 macro. nbserve runs its
# folds on every core it may use; a second, single-core run (taskset -c 0) is shown
# when taskset exists, since GridSearchCV runs with n_jobs=1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib/cargo.sh
source "$root/scripts/lib/cargo.sh"
bin="${NBSERVE_BIN:-$(cargo_bin release nbserve)}"
if [[ -z "${NBSERVE_BIN:-}" ]]; then
    echo "tune-bench: cargo build --release --bin nbserve" >&2
    cargo build --quiet --release --locked --bin nbserve
fi
scripts/fetch-data.sh >&2
PY="$(scripts/setup-python.sh | tail -n 1)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$bin" split --data data/spamassassin.csv --train-out "$work/train.csv" \
    --test-out "$work/test.csv" --test-size 0.2 --seed 42 >&2

grid=(--alpha "0.01,0.1,1" --min-df "1,2,5" --max-features "0,20000" --folds 5 --seed 42 --test-size 0.2)

# time_tune PREFIX...: seconds for one `nbserve tune` run (tokenizing included).
time_tune() {
    local start end
    start=$(date +%s.%N)
    "$@" "$bin" tune --data data/spamassassin.csv --out "$work/tuned.json" "${grid[@]}" \
        >"$work/tune.out" 2>"$work/tune.err"
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

nb_all=$(time_tune)
nb_one=""
if command -v taskset >/dev/null 2>&1; then nb_one=$(time_tune taskset -c 0); fi
nb_f1=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["evaluation"]["f1_macro"])' "$work/tuned.json")
chosen=$(grep '^chosen:' "$work/tune.out")

echo "tune-bench: scikit-learn GridSearchCV (18 points x 5 folds, n_jobs=1) ..." >&2
sk=$("$PY" bench/tune_sklearn.py "$work/train.csv" "$work/test.csv" 5 42)

"$PY" - "$nb_all" "${nb_one:-nan}" "$nb_f1" "$sk" "$chosen" <<'PY'
import json, math, sys
nb_all, nb_one, nb_f1 = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
sk = json.loads(sys.argv[4])
print("| | wall time | held-out F1 macro | chosen |")
print("|---|---|---|---|")
print(f"| nbserve tune (all cores) | {nb_all:.2f} s | {nb_f1:.4f} | {sys.argv[5][8:]} |")
if not math.isnan(nb_one):
    print(f"| nbserve tune (taskset -c 0) | {nb_one:.2f} s | {nb_f1:.4f} | same |")
print(f"| scikit-learn GridSearchCV n_jobs=1 | {sk['seconds']:.2f} s | {sk['held_out_f1_macro']:.4f} | {sk['best_params']} |")
print()
print(f"speed ratio (GridSearchCV / nbserve tune): {sk['seconds'] / nb_all:.0f}x all cores"
      + ("" if math.isnan(nb_one) else f", {sk['seconds'] / nb_one:.0f}x one core"))
print(f"held-out F1 macro: nbserve {nb_f1:.4f}, GridSearchCV {sk['held_out_f1_macro']:.4f} "
      f"(difference {nb_f1 - sk['held_out_f1_macro']:+.4f})")
PY
