#!/usr/bin/env python3
"""scikit-learn GridSearchCV side of bench/tune.sh.

  tune_sklearn.py TRAIN.csv TEST.csv FOLDS SEED

Searches CountVectorizer(binary=True) + BernoulliNB over alpha {0.01, 0.1, 1} x
min_df {1, 2, 5} x max_features {None, 20000} with StratifiedKFold(FOLDS, shuffle,
SEED), scoring f1_macro, n_jobs=1, refits the winner on TRAIN.csv and prints one JSON
line: seconds (search + refit), best params, mean CV F1 of the winner, held-out F1 macro.
"""
import csv
import json
import sys
import time

from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.naive_bayes import BernoulliNB
from sklearn.pipeline import Pipeline


def read(path):
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def main():
    train, test, folds, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    x_train, y_train = read(train)
    x_test, y_test = read(test)
    pipe = Pipeline([("vec", CountVectorizer(binary=True)), ("nb", BernoulliNB())])
    grid = {
        "nb__alpha": [0.01, 0.1, 1.0],
        "vec__min_df": [1, 2, 5],
        "vec__max_features": [None, 20000],
    }
    search = GridSearchCV(
        pipe,
        grid,
        scoring="f1_macro",
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        n_jobs=1,
        refit=True,
    )
    start = time.perf_counter()
    search.fit(x_train, y_train)
    seconds = time.perf_counter() - start
    held_out = f1_score(y_test, search.predict(x_test), average="macro")
    print(json.dumps({
        "seconds": seconds,
        "points": len(search.cv_results_["params"]),
        "best_params": {k: v for k, v in search.best_params_.items()},
        "cv_f1_macro": search.best_score_,
        "held_out_f1_macro": held_out,
    }))


if __name__ == "__main__":
    main()
