"""The scikit-learn side of the parity suite (tests/parity/test_parity.py):
what nbserve must reproduce and the helpers that explain a difference.

  append_stress(DATA.csv, STRESS.csv)
      rewrites DATA.csv (any column order, must have `text` and `label`) with the
      rows of STRESS.csv appended, so the tokenizer stress terms end up in the
      vocabulary.
  tie_free_limit(TRAIN.csv, NEAR, ...)
      the largest max_features <= NEAR whose cut falls between distinct term counts.
  fit(train, test, alpha, nb, binary, min_df, max_df, max_features, calibration)
      CountVectorizer(binary, min_df, max_df, max_features) + BernoulliNB /
      MultinomialNB / ComplementNB(alpha) fitted on TRAIN.csv (an integer df is a
      document count, a float a share, max_features 0 = None), scored on TEST.csv:
      the vocabulary, classes, log-probabilities (with a calibration,
      log_softmax(joint_log_likelihood / temperature); labels the arg-max as
      always), labels and headline metrics nbserve's artifact and `predict
      --json` output must equal.

With max_features, scikit-learn ranks terms with an unstable argsort, so which of
several terms tied at the cut it keeps depends on NumPy's sort kernel; nbserve keeps
the alphabetically first. `report_cut` says whether the cut falls inside a tie.

CSVs are read with the csv module (newline="", UTF-8, no field size limit) so texts are
exactly the strings nbserve reads.
"""
import csv
import sys
from dataclasses import dataclass

LOGP_TOL = 1e-9
METRIC_TOL = 1e-12  # the artifact stores the figures at full precision
SHOW = 10  # how many differences to list


def read_csv(path):
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    for col in ("text", "label"):
        if col not in header:
            raise ValueError(f"{path}: no `{col}` column in header {header}")
    ti, li = header.index("text"), header.index("label")
    bad = [i for i, r in enumerate(rows) if len(r) != len(header)]
    if bad:
        raise ValueError(f"{path}: rows {bad[:5]} have {len(rows[bad[0]])} fields, header has {len(header)}")
    return header, rows, [r[ti] for r in rows], [r[li] for r in rows]


def append_stress(data_path, stress_path):
    header, rows, _, _ = read_csv(data_path)
    _, _, s_texts, s_labels = read_csv(stress_path)
    ti, li = header.index("text"), header.index("label")
    for text, label in zip(s_texts, s_labels):
        row = [""] * len(header)
        row[ti], row[li] = text, label
        rows.append(row)
    with open(data_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return len(s_texts)


def short(text, n=70):
    t = text if len(text) <= n else text[:n] + "..."
    return repr(t)


def where(term, texts, analyzer=None, limit=3, scan=200):
    """First data rows (0-based) holding term: as a sklearn token when analyzer is given (terms
    sklearn found), else as a substring of the lowercased text (terms only nbserve found)."""
    hits = []
    for i, t in enumerate(texts):
        if term in t.lower():
            scan -= 1
            if analyzer is None or term in analyzer(t):
                hits.append(i)
                if len(hits) == limit:
                    break
            if scan == 0:
                break
    return hits


def context(term, text):
    """The lowercased text around term (what the tokenizer sees)."""
    low = text.lower()
    k = low.find(term)
    if k < 0:
        return ""
    a, b = max(0, k - 20), min(len(low), k + len(term) + 20)
    return repr(low[a:b])


def headline_metrics(y_true, y_pred):
    """scikit-learn's figures for the artifact's evaluation.{f1_macro,balanced_accuracy,accuracy}."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    return {
        "f1_macro": f1_score(y_true, y_pred, average="macro"),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        "accuracy": accuracy_score(y_true, y_pred),
    }


@dataclass
class Fitted:
    """scikit-learn's answer for one parity case."""

    description: str
    x_train: list
    x_test: list
    y_test: list
    vocabulary: list
    classes: list
    log_proba: object  # (documents, classes) array
    labels: list
    metrics: dict
    analyzer: object
    cut: str


def fit(train, test, alpha=1.0, nb="bernoulli", binary="true", min_df="1", max_df="1.0", max_features=0,
        temperature=None) -> Fitted:
    """Fits CountVectorizer + the naive Bayes `nb` on TRAIN.csv and scores TEST.csv
    (with `temperature`, as a calibrated artifact serves: log_softmax(jll / T))."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import BernoulliNB, ComplementNB, MultinomialNB

    _, _, x_train, y_train = read_csv(train)
    _, _, x_test, y_test = read_csv(test)
    binary = binary == "true"
    min_df, max_df = df_bound(min_df), df_bound(max_df)
    vec = CountVectorizer(binary=binary, min_df=min_df, max_df=max_df, max_features=max_features or None)
    model = {"bernoulli": BernoulliNB, "multinomial": MultinomialNB, "complement": ComplementNB}[nb]
    clf = model(alpha=alpha).fit(vec.fit_transform(x_train), y_train)
    classes = [str(c) for c in clf.classes_]
    xm_test = vec.transform(x_test)
    if temperature is not None:
        # A calibrated artifact serves log_softmax(jll / T); labels stay the arg-max of jll.
        from scipy.special import log_softmax

        jll = clf.predict_joint_log_proba(xm_test)
        pred_idx = jll.argmax(axis=1)
        log_proba = log_softmax(jll / float(temperature), axis=1)
    else:
        log_proba = clf.predict_log_proba(xm_test)
        pred_idx = log_proba.argmax(axis=1)
    labels = [classes[j] for j in pred_idx]
    description = (f"CountVectorizer(binary={binary}, min_df={min_df!r}, max_df={max_df!r}, "
                   f"max_features={max_features or None}) + {model.__name__}(alpha={alpha})"
                   + (f", log_softmax(jll / {float(temperature)!r})" if temperature is not None else ""))
    cut = report_cut(x_train, binary, min_df, max_df, max_features) if max_features else ""
    return Fitted(description, x_train, x_test, y_test, list(vec.get_feature_names_out()), classes, log_proba,
                  labels, headline_metrics(y_test, labels), vec.build_analyzer(), cut)

def df_bound(s):
    """scikit-learn's int-or-float min_df / max_df from its command-line spelling."""
    return float(s) if any(ch in s for ch in ".eE") else int(s)


def report_cut(x_train, binary, min_df, max_df, max_features) -> str:
    """Whether the max_features cut falls inside a run of equal counts."""
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    full = CountVectorizer(binary=binary, min_df=min_df, max_df=max_df)
    counts = np.sort(np.asarray(full.fit_transform(x_train).sum(axis=0)).ravel())[::-1]
    if len(counts) <= max_features:
        return f"max_features {max_features}: only {len(counts)} terms, no cut"
    last_in, first_out = counts[max_features - 1], counts[max_features]
    tie = "INSIDE a tie" if last_in == first_out else "between distinct counts"
    return f"max_features {max_features}: cut {tie} (count {last_in} kept, {first_out} dropped)"


def tie_free_limit(train, near, binary="true", min_df="1", max_df="1.0") -> int:
    """Largest max_features <= NEAR whose cut falls between distinct counts on TRAIN.csv."""
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    _, _, x_train, _ = read_csv(train)
    vec = CountVectorizer(binary=binary == "true", min_df=df_bound(min_df), max_df=df_bound(max_df))
    counts = np.sort(np.asarray(vec.fit_transform(x_train).sum(axis=0)).ravel())[::-1]
    limit = min(near, len(counts) - 1)
    while limit > 1 and counts[limit - 1] == counts[limit]:
        limit -= 1
    return limit
