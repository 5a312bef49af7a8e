#!/usr/bin/env python3
"""The shipped model over HTTP against scikit-learn (driven by scripts/parity.sh).

  http_parity.py --bin NBSERVE --model models/spam-nb.json --data data/spamassassin.csv --work DIR

Everything is read from the artifact, so a retrained or tuned model is checked the
same way: its alpha, vectorizer settings, test size and seed.

 1. `nbserve split` cuts DATA with the artifact's `training.test_size` and `seed`; the
    artifact must say it was evaluated on that split (`evaluated_on` stratified_split,
    `dataset.sha256` = sha256 of DATA, `dataset.documents` = its rows,
    `evaluation.documents` = the test rows).
 2. scikit-learn fits CountVectorizer(binary=True, lowercase, token_pattern from the
    artifact) + BernoulliNB(alpha from the artifact) on the train part: classes,
    vocabulary, class counts and feature counts must equal the artifact's exactly (so
    the artifact is the model of that split).
 3. The real binary serves the artifact on a free loopback port; every test document
    goes through POST /predict and, in batches, POST /predict/batch: labels equal to
    scikit-learn's, probabilities within 1e-9 of predict_proba, model_version the
    artifact's.
 4. The artifact's stored evaluation equals scikit-learn's metrics on the test part:
    F1 macro, balanced accuracy, accuracy within 1e-12, per-class precision, recall,
    F1 within 1e-12 and support, confusion matrix exactly.

The model family (BernoulliNB, MultinomialNB, ComplementNB), the vectorizer options
(binary, min_df, max_df, max_features) and a temperature calibration (probabilities
softmax(joint log-likelihood / T), labels the arg-max) are taken from the artifact.

Prints `http-parity: N passed, M failed` (one check per numbered step); exit status 1
on any mismatch.
"""
import argparse
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity import headline_metrics, read_csv  # noqa: E402  (shared with the CLI parity)

PROBA_TOL = 1e-9
METRIC_TOL = 1e-12
VECTORIZER_KEYS = {"lowercase", "token_pattern", "binary", "min_df", "max_df", "max_features"}

checks = {"passed": 0, "failed": 0}


def outcome(name: str, problems: list[str]) -> None:
    if problems:
        checks["failed"] += 1
        print(f"  FAIL {name}")
        for p in problems[:10]:
            print(f"       {p}")
        if len(problems) > 10:
            print(f"       ... {len(problems) - 10} more")
    else:
        checks["passed"] += 1
        print(f"  PASS {name}")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"http-parity: nbserve exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    sys.exit(f"http-parity: {base}/ready not 200 within {timeout}s")


def batches(texts: list[str], max_items: int, max_body: int):
    """Index ranges of texts in batches under the server's batch and body limits."""
    start, size = 0, 0
    for i, t in enumerate(texts):
        n = len(json.dumps(t).encode()) + 2
        if i > start and (i - start >= max_items or size + n > max_body):
            yield start, i
            start, size = i, 0
        size += n
    if start < len(texts):
        yield start, len(texts)


def compare(where: str, answers: list[dict], sk_classes, sk_proba, sk_pred, version) -> list[str]:
    problems = []
    worst = 0.0
    for i, a in enumerate(answers):
        if a.get("label") != sk_pred[i]:
            problems.append(f"{where} doc {i}: label {a.get('label')!r}, scikit-learn {sk_pred[i]!r}")
        if a.get("model_version") not in (None, version):
            problems.append(f"{where} doc {i}: model_version {a.get('model_version')!r} != {version!r}")
        probs = a.get("probabilities") or {}
        if sorted(probs) != sorted(sk_classes):
            problems.append(f"{where} doc {i}: probability classes {sorted(probs)}")
            continue
        for j, c in enumerate(sk_classes):
            d = abs(float(probs[c]) - float(sk_proba[i, j]))
            d = d if math.isfinite(d) else math.inf
            worst = max(worst, d)
            if d >= PROBA_TOL:
                problems.append(f"{where} doc {i} class {c!r}: {probs[c]!r} vs scikit-learn "
                                f"{float(sk_proba[i, j])!r} (|d| {d:.3g})")
    print(f"  {where}: {len(answers)} answers, max |d proba| {worst:.3g}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()

    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    from scipy.special import softmax
    from sklearn.naive_bayes import BernoulliNB, ComplementNB, MultinomialNB

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    artifact = json.loads(Path(args.model).read_text(encoding="utf-8"))
    training, dataset, ev = artifact["training"], artifact["dataset"], artifact["evaluation"]
    params = artifact["parameters"]
    version = artifact["model"]["version"]
    print(f"[shipped-model-http] {args.model}: {artifact['model']['name']} {version}, "
          f"alpha {params['alpha']}, test_size {training['test_size']}, seed {training['seed']}")

    # 1. The split the artifact was evaluated on.
    problems = []
    if training.get("evaluated_on") != "stratified_split":
        problems.append(f"training.evaluated_on {training.get('evaluated_on')!r}: this check "
                        "reproduces a stratified split only")
    train_csv, test_csv = work / "train.csv", work / "test.csv"
    subprocess.run([args.bin, "split", "--data", args.data, "--train-out", str(train_csv),
                    "--test-out", str(test_csv), "--test-size", repr(training["test_size"]),
                    "--seed", str(training["seed"])], check=True, stdout=subprocess.DEVNULL)
    _, _, x_train, y_train = read_csv(str(train_csv))
    _, _, x_test, y_test = read_csv(str(test_csv))
    if sha256_file(args.data) != dataset["sha256"]:
        problems.append(f"{args.data} sha256 differs from the artifact's dataset.sha256")
    if len(x_train) + len(x_test) != dataset["documents"]:
        problems.append(f"{len(x_train)} + {len(x_test)} rows, artifact dataset.documents {dataset['documents']}")
    if len(x_test) != ev["documents"]:
        problems.append(f"{len(x_test)} test rows, artifact evaluation.documents {ev['documents']}")
    outcome("the artifact's split is reproduced", problems)

    # 2. scikit-learn on the train part is the artifact's model.
    vec_settings = training["vectorizer"]
    unknown = set(vec_settings) - VECTORIZER_KEYS
    problems = [f"vectorizer settings this check does not know: {sorted(unknown)}"] if unknown else []
    family = training.get("model", "bernoulli")
    nb = {"bernoulli": BernoulliNB, "multinomial": MultinomialNB, "complement": ComplementNB}[family]
    # max_features 0 = no limit; min_df / max_df as stored (int: documents, float: share).
    vec = CountVectorizer(binary=vec_settings["binary"], lowercase=vec_settings["lowercase"],
                          token_pattern=vec_settings["token_pattern"],
                          min_df=vec_settings.get("min_df", 1), max_df=vec_settings.get("max_df", 1.0),
                          max_features=vec_settings.get("max_features") or None)
    clf = nb(alpha=params["alpha"]).fit(vec.fit_transform(x_train), y_train)
    print(f"  {vec!r} + {nb.__name__}(alpha={params['alpha']})")
    sk_classes = [str(c) for c in clf.classes_]
    if artifact["classes"] != sk_classes:
        problems.append(f"classes {artifact['classes']} != scikit-learn {sk_classes}")
    if artifact["vocabulary"] != list(vec.get_feature_names_out()):
        problems.append(f"vocabulary ({len(artifact['vocabulary'])} terms) != scikit-learn's "
                        f"({len(vec.get_feature_names_out())} terms)")
    if params["class_count"] != [int(v) for v in clf.class_count_]:
        problems.append(f"class_count {params['class_count']} != scikit-learn {clf.class_count_.tolist()}")
    elif not np.array_equal(np.asarray(params["feature_count"], dtype=float), clf.feature_count_):
        problems.append("feature_count differs from scikit-learn's feature_count_")
    outcome(f"scikit-learn ({nb.__name__}, alpha {params['alpha']}) on the train part is the artifact's model",
            problems)
    if problems:
        print(f"http-parity: {checks['passed']} passed, {checks['failed'] + 2} failed (the rest not run)")
        return 1

    jll = clf.predict_joint_log_proba(vec.transform(x_test))
    sk_pred = [sk_classes[j] for j in jll.argmax(axis=1)]
    calibration = artifact.get("calibration")
    # A calibrated artifact serves softmax(jll / T); labels stay the arg-max of jll.
    t = float(calibration["temperature"]) if calibration else 1.0
    sk_proba = softmax(jll / t, axis=1)
    print(f"  probabilities: softmax(joint log-likelihood / {t!r})")

    # 3. The real binary serving the artifact.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, NBSERVE__SERVER__HOST="127.0.0.1", NBSERVE__SERVER__PORT=str(port),
               NBSERVE__MODEL__PATH=str(Path(args.model).resolve()),
               NBSERVE__MODEL__DIR=str(Path(args.model).resolve().parent),
               NBSERVE__LOG__LEVEL="warn")
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen([args.bin, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(base, proc)
        problems = []
        singles = []
        for i, t in enumerate(x_test):
            st, body = post(f"{base}/predict", {"text": t})
            if st != 200:
                problems.append(f"/predict doc {i}: {st} {str(body)[:200]}")
                body = {}
            singles.append(body)
        problems += compare("/predict", singles, sk_classes, sk_proba, sk_pred, version)
        batched = []
        for a, b in batches(x_test, 1000, 1_500_000):
            st, body = post(f"{base}/predict/batch", {"texts": x_test[a:b]})
            preds = body.get("predictions") or [] if st == 200 else []
            if st != 200 or len(preds) != b - a:
                problems.append(f"/predict/batch docs {a}..{b}: {st} {str(body)[:200]}")
                preds = [{}] * (b - a)
            if st == 200 and body.get("model_version") != version:
                problems.append(f"/predict/batch model_version {body.get('model_version')!r} != {version!r}")
            batched += preds
        problems += compare("/predict/batch", batched, sk_classes, sk_proba, sk_pred, version)
        outcome(f"{len(x_test)} held-out documents through /predict and /predict/batch = scikit-learn", problems)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    # 4. The stored evaluation.
    problems = []
    for key, want in headline_metrics(y_test, sk_pred).items():
        got = ev.get(key)
        ok = isinstance(got, (int, float)) and abs(got - want) <= METRIC_TOL
        print(f"  {key}: artifact {got!r}  scikit-learn {want!r}  {'ok' if ok else 'MISMATCH'}")
        if not ok:
            problems.append(f"evaluation.{key} {got!r} != scikit-learn {want!r}")
    prec, rec, f1, support = precision_recall_fscore_support(y_test, sk_pred, labels=sk_classes,
                                                             zero_division=0)
    per_class = {p["label"]: p for p in ev.get("per_class", [])}
    for j, c in enumerate(sk_classes):
        p = per_class.get(c, {})
        for key, want in (("precision", prec[j]), ("recall", rec[j]), ("f1", f1[j])):
            if not abs(p.get(key, math.nan) - want) <= METRIC_TOL:
                problems.append(f"evaluation.per_class[{c}].{key} {p.get(key)!r} != scikit-learn {want!r}")
        if p.get("support") != int(support[j]):
            problems.append(f"evaluation.per_class[{c}].support {p.get('support')!r} != {int(support[j])}")
    cm = confusion_matrix(y_test, sk_pred, labels=sk_classes).tolist()
    if ev.get("confusion_matrix") != cm:
        problems.append(f"evaluation.confusion_matrix {ev.get('confusion_matrix')} != scikit-learn {cm}")
    outcome("the stored evaluation = scikit-learn's metrics on the test part", problems)

    print(f"http-parity: {checks['passed']} passed, {checks['failed']} failed")
    return 1 if checks["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
