#!/usr/bin/env bash
# scikit-learn parity suite: nbserve must train and predict exactly like
# CountVectorizer(binary=True) + BernoulliNB(alpha=1.0).
#
#   scripts/parity.sh            # uses the debug build (built if missing)
#   NBSERVE_BIN=path/to/nbserve scripts/parity.sh
#
# Case 1 "spamassassin": nbserve splits data/spamassassin.csv 80/20 (seed 42), the
#   tokenizer stress documents are appended to both halves, nbserve trains on the train
#   half (evaluating on the test half) and predicts the test half; tests/parity/parity.py
#   fits scikit-learn on the same train file and compares vocabulary, labels,
#   log-probabilities and the artifact's evaluation metrics.
# Case 2 "tokenizer-stress": the same on tests/data/tokenizer_stress.csv alone.
# Cases 3+ reuse case 1's train/test files with vectorizer options (min_df, max_df,
#   max_features, two settings each) and the other models (MultinomialNB, ComplementNB on
#   counts and on binary features): `nbserve train` gets the options, parity.py fits the
#   same CountVectorizer + model in scikit-learn. max_features values are the largest up
#   to 20,000 and 1,000 whose cut falls between distinct counts on this split
#   (parity.py tie-free-limit; the check reports where the cut falls): at a tie
#   scikit-learn's unstable argsort keeps whichever tied terms NumPy's sort kernel puts
#   first, nbserve the alphabetically first.
# Last case "shipped-model-http": tests/parity/http_parity.py serves models/spam-nb.json
#   with the real binary, reproduces the split the artifact records (its test size and
#   seed), and compares /predict and /predict/batch on the held-out part with
#   scikit-learn fitted with the artifact's alpha on the train part (probabilities at
#   1e-9, labels exactly), and the artifact's stored evaluation with scikit-learn's.
# Work files stay in $NBSERVE_CACHE/parity for inspection. Exit status 1 on any mismatch.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${NBSERVE_CACHE:-$HOME/.cache/nbserve}"
work="$cache/parity"
stress="tests/data/tokenizer_stress.csv"
parity="tests/parity/parity.py"

# shellcheck source=scripts/lib/cargo.sh
source scripts/lib/cargo.sh
bin="${NBSERVE_BIN:-$(cargo_bin debug nbserve)}"
if [[ ! -x "$bin" ]]; then
    if [[ -n "${NBSERVE_BIN:-}" ]]; then
        echo "parity: NBSERVE_BIN=$bin is not an executable" >&2
        exit 1
    fi
    echo "parity: $bin missing, running cargo build --bin nbserve"
    cargo build --quiet --bin nbserve
fi
echo "parity: nbserve = $bin ($(date -u -r "$bin" +%Y-%m-%dT%H:%M:%SZ))"
if [[ -z "${NBSERVE_BIN:-}" ]] && [[ -n "$(find src Cargo.toml Cargo.lock -newer "$bin" 2>/dev/null | head -n 1)" ]]; then
    echo "parity: WARNING: $bin is older than src/ or Cargo.*; run cargo build --bin nbserve first" >&2
fi

scripts/fetch-data.sh
PY="$(scripts/setup-python.sh)"

rm -rf "$work"
mkdir -p "$work"

# run NAME ARGS...: run nbserve ARGS with stdout in $work/NAME.out and stderr in
# $work/NAME.err; show both if it fails.
run() {
    local name="$1"; shift
    local rc=0
    "$bin" "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
    if [[ "$rc" -ne 0 ]]; then
        echo "parity: nbserve $1 failed (exit status $rc):" >&2
        tail -n 10 "$work/$name.out" "$work/$name.err" >&2
        return 1
    fi
}

# need FILE...: fail unless every FILE exists and is not empty (nbserve said ok but wrote nothing).
need() {
    local f
    for f in "$@"; do
        if [[ ! -s "$f" ]]; then
            echo "parity: nbserve did not write $f" >&2
            return 1
        fi
    done
}

passed=0
failed=0
record() {
    if [[ "$1" -eq 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

# Case 1: the real corpus (plus the stress documents on both sides)
echo "parity: case spamassassin"
status=0
{
    run split split --data data/spamassassin.csv \
        --train-out "$work/train.csv" --test-out "$work/test.csv" --test-size 0.2 --seed 42 &&
    need "$work/train.csv" "$work/test.csv" &&
    "$PY" "$parity" append-stress "$work/train.csv" "$stress" &&
    "$PY" "$parity" append-stress "$work/test.csv" "$stress" &&
    run train train --data "$work/train.csv" --test-data "$work/test.csv" \
        --out "$work/model.json" --alpha 1.0 &&
    need "$work/model.json" &&
    run predict predict --model "$work/model.json" --data "$work/test.csv" --json &&
    cp "$work/predict.out" "$work/pred.jsonl" &&
    "$PY" "$parity" check --name spamassassin --train "$work/train.csv" --test "$work/test.csv" \
        --model "$work/model.json" --pred "$work/pred.jsonl" --alpha 1.0
} || status=$?
record "$status"

# Case 2: the tokenizer stress set alone
echo "parity: case tokenizer-stress"
status=0
{
    run stress-train train --data "$stress" --test-data "$stress" \
        --out "$work/stress-model.json" --alpha 1.0 &&
    need "$work/stress-model.json" &&
    run stress-predict predict --model "$work/stress-model.json" --data "$stress" --json &&
    cp "$work/stress-predict.out" "$work/stress-pred.jsonl" &&
    "$PY" "$parity" check --name tokenizer-stress --train "$stress" --test "$stress" \
        --model "$work/stress-model.json" --pred "$work/stress-pred.jsonl" --alpha 1.0
} || status=$?
record "$status"

# option_case NAME -- NBSERVE_TRAIN_OPTIONS -- PARITY_OPTIONS: case 1's files, other options.
option_case() {
    local name="$1"; shift; shift
    local nb_opts=() py_opts=()
    while [[ "$1" != "--" ]]; do nb_opts+=("$1"); shift; done
    shift
    py_opts=("$@")
    echo "parity: case $name"
    local status=0
    {
        need "$work/train.csv" "$work/test.csv" &&
        run "$name-train" train --data "$work/train.csv" --test-data "$work/test.csv" \
            --out "$work/$name-model.json" "${nb_opts[@]}" &&
        need "$work/$name-model.json" &&
        run "$name-predict" predict --model "$work/$name-model.json" --data "$work/test.csv" --json &&
        "$PY" "$parity" check --name "$name" --train "$work/train.csv" --test "$work/test.csv" \
            --model "$work/$name-model.json" --pred "$work/$name-predict.out" "${py_opts[@]}"
    } || status=$?
    record "$status"
}

option_case min-df-2 -- --min-df 2 -- --min-df 2
option_case min-df-share -- --min-df 0.005 --alpha 0.1 -- --min-df 0.005 --alpha 0.1
option_case max-df-share -- --max-df 0.5 -- --max-df 0.5
option_case max-df-count -- --max-df 400 --min-df 3 -- --max-df 400 --min-df 3
# The largest limits up to 20,000 and 1,000 that do not cut through a tie.
mf_a=$("$PY" "$parity" tie-free-limit "$work/train.csv" 20000 2>/dev/null || echo 20000)
mf_b=$("$PY" "$parity" tie-free-limit "$work/train.csv" 1000 --min-df 2 2>/dev/null || echo 1000)
option_case max-features-a -- --max-features "$mf_a" -- --max-features "$mf_a"
option_case max-features-b -- --max-features "$mf_b" --min-df 2 -- --max-features "$mf_b" --min-df 2
option_case multinomial-counts -- --model multinomial -- --nb multinomial --binary false
option_case multinomial-binary -- --model multinomial --binary --alpha 0.5 -- \
    --nb multinomial --alpha 0.5
option_case complement-binary -- --model complement --binary --min-df 2 -- \
    --nb complement --min-df 2
option_case bernoulli-calibrated -- --min-df 5 --alpha 0.1 --calibrate -- --min-df 5 --alpha 0.1
option_case complement-counts -- --model complement --max-df 0.9 --alpha 0.3 -- \
    --nb complement --binary false --max-df 0.9 --alpha 0.3

# Last case: the shipped model, served over HTTP
echo "parity: case shipped-model-http"
status=0
# Its own directory: $work sits in the shared cache, which another parity run
# empties with rm -rf when it starts.
shipped_work="$(mktemp -d "${TMPDIR:-/tmp}/nbserve-http-parity.XXXXXX")"
"$PY" tests/parity/http_parity.py --bin "$bin" --model models/spam-nb.json \
    --data data/spamassassin.csv --work "$shipped_work" || status=$?
echo "parity: shipped-model-http work files in $shipped_work"
record "$status"

echo "parity: work files in $work"
echo "parity: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
