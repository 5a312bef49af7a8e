#!/usr/bin/env bash
# scikit-learn parity suite (tests/parity/, pytest): nbserve must train and
# predict exactly like CountVectorizer + BernoulliNB / MultinomialNB /
# ComplementNB, case by case (tests/parity/test_parity_cli.py: the real corpus
# plus tokenizer stress documents, the stress set alone, vectorizer options and
# the other models), and the shipped models/spam-nb.json served by the real
# binary must answer /predict and /predict/batch on its held-out split as
# scikit-learn does, its stored evaluation equal to scikit-learn's
# (tests/parity/test_parity_http.py). A champion trained with --statistics
# on part of the corpus, taught the rest through the real server's POST
# /learn, must give the artifact scikit-learn fits on the union, and forgetting
# it the champion back (tests/parity/test_parity_learning.py).
#
#   scripts/parity.sh            # uses the debug build (built if missing)
#   NBSERVE_BIN=path/to/nbserve scripts/parity.sh
#
# Fetches the corpus (scripts/fetch-data.sh) and makes the pinned, hash-checked
# venv of tests/parity/requirements.txt (scripts/setup-python.sh). Each case's
# figures (vocabulary, labels agreeing, max |d log-proba|, F1 macro) are printed
# in the closing "figures"; prints `parity: N passed, M failed` (from pytest's
# JUnit XML); pytest arguments pass through.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/pytest.sh
source scripts/lib/pytest.sh
scripts/fetch-data.sh
PY="$(scripts/setup-python.sh)"
pytest_suite parity "$PY" tests/parity "$@"
