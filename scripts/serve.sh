#!/usr/bin/env bash
# The main job: train the shipped model if it is missing, then serve it.
# Settings come from NBSERVE__* variables (see README), e.g.
#   NBSERVE__SERVER__PORT=9000 scripts/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."

model="${NBSERVE__MODEL__PATH:-models/spam-nb.json}"
cargo build --release --locked --bin nbserve
if [[ ! -f "$model" ]]; then
  echo "serve: $model is missing; fetching the SpamAssassin corpus and training it" >&2
  scripts/fetch-data.sh
  target/release/nbserve train --data data/spamassassin.csv --out "$model" \
    --name spam-nb --alpha 1.0 --test-size 0.2 --seed 42
fi
exec target/release/nbserve serve "$@"
