#!/usr/bin/env python3
"""scikit-learn parity checks for nbserve (driven by scripts/parity.sh).

  parity.py append-stress DATA.csv STRESS.csv
      Rewrite DATA.csv (any column order, must have `text` and `label`) with the rows
      of STRESS.csv appended, so the tokenizer stress terms end up in the vocabulary.

  parity.py tie-free-limit TRAIN.csv NEAR [--binary true|false] [--min-df N|F] [--max-df N|F]
      Print the largest max_features <= NEAR whose cut falls between distinct term counts.

  parity.py check --name NAME --train TRAIN.csv --test TEST.csv --model MODEL.json
                  --pred PRED.jsonl [--alpha 1.0] [--nb bernoulli|multinomial|complement]
                  [--binary true|false] [--min-df N|F] [--max-df N|F] [--max-features N]
      Fit CountVectorizer(binary, min_df, max_df, max_features) + BernoulliNB / MultinomialNB /
      ComplementNB(alpha) on TRAIN.csv (an integer df is a document count, a float a share,
      max_features 0 = None) and compare with
      nbserve's artifact (trained on the same file) and its `predict --json` output on
      TEST.csv. Exit status 0 only if everything matches:
        * artifact `classes` == classes_
        * artifact `vocabulary` (array, index = feature index) == get_feature_names_out()
        * predicted label identical for every test document
        * max |log-probability difference| per class < 1e-9 (probabilities too)
        * artifact evaluation.{f1_macro,balanced_accuracy,accuracy} equal to sklearn's
          on TEST.csv within 1e-12 (stored at full precision)
        * artifact training.model / training.vectorizer agree with the options given
        * with a `calibration` block, probabilities are compared with
          log_softmax(joint_log_likelihood / temperature) (labels: arg-max as always)
      Only `vocabulary`, `classes`, `evaluation` and `training` of the artifact are relied on.
      With max_features, scikit-learn ranks terms with an unstable argsort, so which of
      several terms tied at the cut it keeps depends on NumPy's sort kernel; nbserve keeps the
      alphabetically first. The check reports whether the cut falls inside a tie.

CSVs are read with the csv module (newline="", UTF-8, no field size limit) so texts are
exactly the strings nbserve reads.
"""
import argparse
import csv
import json
import math
import sys

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
            sys.exit(f"{path}: no `{col}` column in header {header}")
    ti, li = header.index("text"), header.index("label")
    bad = [i for i, r in enumerate(rows) if len(r) != len(header)]
    if bad:
        sys.exit(f"{path}: rows {bad[:5]} have {len(rows[bad[0]])} fields, header has {len(header)}")
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
    print(f"parity: appended {len(s_texts)} stress documents to {data_path} ({len(rows)} rows)")


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


def check(args):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import BernoulliNB, ComplementNB, MultinomialNB

    name = args.name
    failures = []

    def fail(msg):
        failures.append(msg)
        print(f"  FAIL {msg}")

    _, _, x_train, y_train = read_csv(args.train)
    _, _, x_test, y_test = read_csv(args.test)
    with open(args.model, encoding="utf-8") as f:
        model = json.load(f)
    preds = []
    with open(args.pred, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                preds.append(json.loads(line))

    binary = args.binary == "true"
    min_df, max_df = df_bound(args.min_df), df_bound(args.max_df)
    max_features = args.max_features or None
    vec = CountVectorizer(binary=binary, min_df=min_df, max_df=max_df, max_features=max_features)
    xm_train = vec.fit_transform(x_train)
    nb = {"bernoulli": BernoulliNB, "multinomial": MultinomialNB, "complement": ComplementNB}[args.nb]
    clf = nb(alpha=args.alpha).fit(xm_train, y_train)
    print(f"[{name}] CountVectorizer(binary={binary}, min_df={min_df!r}, max_df={max_df!r}, "
          f"max_features={max_features}) + {nb.__name__}(alpha={args.alpha})")
    if max_features:
        report_cut(x_train, binary, min_df, max_df, max_features)
    sk_vocab = list(vec.get_feature_names_out())
    sk_classes = [str(c) for c in clf.classes_]
    xm_test = vec.transform(x_test)
    sk_logp = clf.predict_log_proba(xm_test)
    calibration = model.get("calibration")
    if calibration:
        # A calibrated artifact serves log_softmax(jll / T); labels stay the arg-max of jll.
        from scipy.special import log_softmax
        t = float(calibration["temperature"])
        jll = clf.predict_joint_log_proba(xm_test)
        sk_pred_idx = jll.argmax(axis=1)
        sk_logp = log_softmax(jll / t, axis=1)
        print(f"[{name}] calibrated artifact: comparing with log_softmax(jll / {t!r})")
    sk_pred = [sk_classes[j] for j in (sk_pred_idx if calibration else sk_logp.argmax(axis=1))]
    analyzer = vec.build_analyzer()

    print(f"[{name}] train {len(x_train)} docs, test {len(x_test)} docs, "
          f"sklearn vocabulary {len(sk_vocab)}, classes {sk_classes}")

    # classes
    nb_classes = model.get("classes")
    if nb_classes != sk_classes:
        fail(f"classes: nbserve {nb_classes!r} != sklearn {sk_classes!r}")

    # training parameters recorded in the artifact
    training = model.get("training") or {}
    vz = training.get("vectorizer") or {}
    want = {"model": args.nb, "alpha": args.alpha, "binary": binary, "min_df": min_df,
            "max_df": max_df, "max_features": args.max_features}
    got = {"model": training.get("model", "bernoulli"), "alpha": training.get("alpha"),
           "binary": vz.get("binary"), "min_df": vz.get("min_df", 1), "max_df": vz.get("max_df", 1.0),
           "max_features": vz.get("max_features", 0)}
    for key in want:
        if got[key] != want[key] or type(got[key]) is not type(want[key]):
            fail(f"artifact training {key}: {got[key]!r} != {want[key]!r}")

    # vocabulary
    nb_vocab = model.get("vocabulary")
    if not isinstance(nb_vocab, list):
        fail(f"vocabulary: expected a JSON array of terms, got {type(nb_vocab).__name__}")
        nb_vocab = []
    print(f"  vocabulary: nbserve {len(nb_vocab)}, sklearn {len(sk_vocab)}")
    if nb_vocab != sk_vocab:
        nb_set, sk_set = set(nb_vocab), set(sk_vocab)
        only_sk = sorted(sk_set - nb_set)
        only_nb = sorted(nb_set - sk_set)
        fail(f"vocabulary differs: {len(only_sk)} terms only in sklearn, {len(only_nb)} only in nbserve")
        for label, terms, an in (("only in sklearn", only_sk, analyzer), ("only in nbserve", only_nb, None)):
            for term in terms[:SHOW]:
                docs = where(term, x_train, an)
                cps = " ".join(f"U+{ord(c):04X}" for c in term[:12])
                ctx = context(term, x_train[docs[0]]) if docs else "(not a substring of any lowercased train text)"
                print(f"    {label}: {term!r} [{cps}] train rows {docs} {ctx}")
            if len(terms) > SHOW:
                print(f"    ... {len(terms) - SHOW} more {label}")
        if not only_sk and not only_nb:
            if len(nb_vocab) != len(nb_set):
                fail("vocabulary: nbserve has duplicate terms")
            diffs = [i for i, (a, b) in enumerate(zip(nb_vocab, sk_vocab)) if a != b]
            print(f"    same terms, different order: first at index {diffs[:SHOW]}")
            for i in diffs[:3]:
                print(f"      [{i}] nbserve {nb_vocab[i]!r} sklearn {sk_vocab[i]!r}")

    # predictions
    if len(preds) != len(x_test):
        fail(f"predict: {len(preds)} JSON lines for {len(x_test)} test documents")
    n = min(len(preds), len(x_test))
    agree = 0
    wrong = []
    max_dlp = 0.0
    max_dp = 0.0
    worst = None
    for i in range(n):
        p = preds[i]
        if p.get("label") == sk_pred[i]:
            agree += 1
        else:
            wrong.append(i)
        lps = p.get("log_probabilities") or {}
        ps = p.get("probabilities") or {}
        for j, c in enumerate(sk_classes):
            if c not in lps or c not in ps:
                fail(f"predict: document {i} has no log_probabilities/probabilities for class {c!r}")
                return failures
            d = abs(float(lps[c]) - float(sk_logp[i, j]))
            if not math.isfinite(d):
                d = math.inf
            if worst is None or d > max_dlp:
                max_dlp = d
                worst = (i, c, float(lps[c]), float(sk_logp[i, j]))
            dp = abs(float(ps[c]) - math.exp(float(sk_logp[i, j])))
            max_dp = max(max_dp, dp if math.isfinite(dp) else math.inf)
    print(f"  labels agreeing: {agree}/{len(x_test)}")
    print(f"  max |d log-proba|: {max_dlp:.3g}   max |d proba|: {max_dp:.3g}")
    if wrong:
        fail(f"predicted labels differ on {len(wrong)} of {n} documents: {wrong[:SHOW]}")
        for i in wrong[:SHOW]:
            p = preds[i]
            skl = {c: round(float(sk_logp[i, j]), 6) for j, c in enumerate(sk_classes)}
            print(f"    doc {i}: nbserve {p.get('label')!r} {p.get('log_probabilities')} "
                  f"sklearn {sk_pred[i]!r} {skl} text {short(x_test[i])}")
    if max_dlp >= LOGP_TOL:
        i, c, a, b = worst
        fail(f"log-probabilities differ by up to {max_dlp:.3g} (doc {i}, class {c!r}: "
             f"nbserve {a!r} sklearn {b!r}, text {short(x_test[i])})")
    if max_dp >= LOGP_TOL:
        fail(f"probabilities differ by up to {max_dp:.3g}")

    # evaluation metrics stored in the artifact
    ev = model.get("evaluation") or {}
    sk_metrics = headline_metrics(y_test, sk_pred)
    for key, want in sk_metrics.items():
        got = ev.get(key)
        if not isinstance(got, (int, float)):
            fail(f"evaluation.{key} missing from artifact (got {got!r})")
            continue
        mark = "ok" if abs(got - want) <= METRIC_TOL else "MISMATCH"
        print(f"  {key}: nbserve {got!r}  sklearn {want!r}  {mark}")
        if mark != "ok":
            fail(f"evaluation.{key}: nbserve {got!r} != sklearn {want!r}")

    nb_f1 = ev.get("f1_macro")
    nb_f1 = f"{nb_f1:.4f}" if isinstance(nb_f1, (int, float)) else "missing"
    print(f"[{name}] {'PASS' if not failures else 'FAIL'}: {len(x_train)} train / {len(x_test)} test "
          f"documents, vocabulary {len(sk_vocab)}, labels agreeing {agree}/{len(x_test)}, "
          f"max |d log-proba| {max_dlp:.3g}, F1 macro nbserve {nb_f1} / sklearn "
          f"{sk_metrics['f1_macro']:.4f}")
    return failures


def df_bound(s):
    """scikit-learn's int-or-float min_df / max_df from its command-line spelling."""
    return float(s) if any(ch in s for ch in ".eE") else int(s)


def report_cut(x_train, binary, min_df, max_df, max_features):
    """Say whether the max_features cut falls inside a run of equal counts."""
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    full = CountVectorizer(binary=binary, min_df=min_df, max_df=max_df)
    counts = np.sort(np.asarray(full.fit_transform(x_train).sum(axis=0)).ravel())[::-1]
    if len(counts) <= max_features:
        print(f"  max_features {max_features}: only {len(counts)} terms, no cut")
        return
    last_in, first_out = counts[max_features - 1], counts[max_features]
    tie = "INSIDE a tie" if last_in == first_out else "between distinct counts"
    print(f"  max_features {max_features}: cut {tie} (count {last_in} kept, {first_out} dropped)")


def tie_free_limit(args):
    """Largest max_features <= NEAR whose cut falls between distinct counts on TRAIN.csv."""
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    _, _, x_train, _ = read_csv(args.train)
    vec = CountVectorizer(binary=args.binary == "true", min_df=df_bound(args.min_df),
                          max_df=df_bound(args.max_df))
    counts = np.sort(np.asarray(vec.fit_transform(x_train).sum(axis=0)).ravel())[::-1]
    limit = min(args.near, len(counts) - 1)
    while limit > 1 and counts[limit - 1] == counts[limit]:
        limit -= 1
    print(limit)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("append-stress")
    a.add_argument("data")
    a.add_argument("stress")
    c = sub.add_parser("check")
    c.add_argument("--name", required=True)
    c.add_argument("--train", required=True)
    c.add_argument("--test", required=True)
    c.add_argument("--model", required=True)
    c.add_argument("--pred", required=True)
    c.add_argument("--alpha", type=float, default=1.0)
    c.add_argument("--nb", choices=["bernoulli", "multinomial", "complement"], default="bernoulli")
    c.add_argument("--binary", choices=["true", "false"], default="true")
    c.add_argument("--min-df", default="1")
    c.add_argument("--max-df", default="1.0")
    c.add_argument("--max-features", type=int, default=0)
    t = sub.add_parser("tie-free-limit")
    t.add_argument("train")
    t.add_argument("near", type=int)
    t.add_argument("--binary", choices=["true", "false"], default="true")
    t.add_argument("--min-df", default="1")
    t.add_argument("--max-df", default="1.0")
    args = ap.parse_args()
    if args.cmd == "tie-free-limit":
        tie_free_limit(args)
        return 0
    if args.cmd == "append-stress":
        append_stress(args.data, args.stress)
        return 0
    return 1 if check(args) else 0


if __name__ == "__main__":
    sys.exit(main())
