#!/usr/bin/env bash
# The main job: train the shipped model if it is missing, then serve both
# shipped models: models/ is the model repository, spam-nb the default model
# (/predict) and spam-cnb by name (/models/spam-cnb/predict). Setting
# NBSERVE__MODEL__PATH or NBSERVE__MODEL__REPOSITORY serves that instead.
# Settings come from NBSERVE__* variables (the book's settings reference), e.g.
#   NBSERVE__SERVER__PORT=9000 scripts/serve.sh
# NBSERVE_BIN=/path/to/nbserve serves that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/cargo.sh
source scripts/lib/cargo.sh

model="${NBSERVE__MODEL__PATH:-models/spam-nb.json}"
# shellcheck source=scripts/lib/preflight.sh
source scripts/lib/preflight.sh
if [[ -f "$model" ]]; then
  preflight serve.sh cargo python3
else
  preflight serve.sh cargo python3 npm
fi
if [[ -n "${NBSERVE_BIN:-}" ]]; then
  bin="$NBSERVE_BIN"    # a binary built already (the docs suite's, or your own)
else
  cargo build --release --locked --bin nbserve
  bin="$(cargo_bin release nbserve)"
fi
if [[ ! -f "$model" ]]; then
  echo "serve: $model is missing; fetching the SpamAssassin corpus and tuning it" >&2
  scripts/fetch-data.sh
  # The command that made models/spam-nb.json (docs/model.md):
  # with the same creation time and version, the same bytes.
  SOURCE_DATE_EPOCH=1795996800 "$bin" tune --data data/spamassassin.csv --out "$model" \
    --name spam-nb --model-version 2026.11.30 \
    --alpha 0.01,0.1,1 --min-df 1,2,5 --max-features 0,20000 \
    --folds 5 --test-size 0.2 --seed 42
fi
if [[ -z "${NBSERVE__MODEL__PATH:-}" && -z "${NBSERVE__MODEL__REPOSITORY:-}" ]]; then
  export NBSERVE__MODEL__REPOSITORY=models
fi
exec "$bin" serve "$@"
