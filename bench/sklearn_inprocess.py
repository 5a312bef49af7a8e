"""In-process speed of scikit-learn on the documents benches/classifier.rs uses.

    python bench/sklearn_inprocess.py [DATA.csv] [N]     # prints one JSON object

Fits CountVectorizer(binary=True) + BernoulliNB(alpha=1.0) on the whole CSV,
then times, on N (default 1000) evenly spaced rows (row i*len/N, the same rows
as the Rust benchmark):
  * batch: one transform + predict_proba call on all N documents;
  * one:   N separate transform + predict_proba calls, one document each.
Best of several repeats, on one core (BLAS threads pinned to 1).
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import csv  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import sklearn  # noqa: E402
from sklearn.feature_extraction.text import CountVectorizer  # noqa: E402
from sklearn.naive_bayes import BernoulliNB  # noqa: E402

csv.field_size_limit(sys.maxsize)


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "data/spamassassin.csv"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in rows]
    labels = [r["label"].strip() for r in rows]
    n = min(n, len(texts))
    docs = [texts[i * len(texts) // n] for i in range(n)]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)

    vec = CountVectorizer(binary=True)
    nb = BernoulliNB(alpha=1.0).fit(vec.fit_transform(texts), labels)

    def batch():
        nb.predict_proba(vec.transform(docs))

    def one_at_a_time():
        for d in docs:
            nb.predict_proba(vec.transform([d]))

    batch()  # warm-up
    t_batch = best(batch, 7)
    t_one = best(one_at_a_time, 3)
    print(
        json.dumps(
            {
                "sklearn": sklearn.__version__,
                "data": path,
                "documents": n,
                "bytes": nbytes,
                "vocabulary": len(vec.vocabulary_),
                "batch_seconds": t_batch,
                "batch_mb_per_s": nbytes / t_batch / 1e6,
                "batch_docs_per_s": n / t_batch,
                "one_seconds": t_one,
                "one_mb_per_s": nbytes / t_one / 1e6,
                "one_docs_per_s": n / t_one,
            }
        )
    )


if __name__ == "__main__":
    main()
