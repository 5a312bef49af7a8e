"""The shipped model over HTTP against scikit-learn. Everything is read from
the artifact, so a retrained or tuned model is checked the same way: its
alpha, model family, vectorizer settings, calibration, test size and seed.

1. `nbserve split` cuts the corpus with the artifact's `training.test_size`
   and `seed`; the artifact must say it was evaluated on that split
   (`evaluated_on` stratified_split, `dataset.sha256` = sha256 of the corpus,
   `dataset.documents` = its rows, `evaluation.documents` = the test rows).
2. scikit-learn fits CountVectorizer (settings from the artifact) + the
   artifact's naive Bayes on the train part: classes, vocabulary, class counts
   and feature counts must equal the artifact's exactly (so the artifact is
   the model of that split).
3. The real binary serves the artifact on a free loopback port; every test
   document goes through POST /predict and, in batches, POST /predict/batch:
   labels equal to scikit-learn's, probabilities within 1e-9 of its
   (calibrated: softmax(joint log-likelihood / T)), model_version the
   artifact's.
4. The artifact's stored evaluation equals scikit-learn's metrics on the test
   part: F1 macro, balanced accuracy, accuracy within 1e-12, per-class
   precision, recall, F1 within 1e-12 and support, confusion matrix exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.naive_bayes import BernoulliNB, ComplementNB, MultinomialNB

from conftest import ROOT, SHIPPED_MODEL, start_server
from parity import METRIC_TOL, headline_metrics, read_csv

DATA = ROOT / "data" / "spamassassin.csv"
PROBA_TOL = 1e-9
VECTORIZER_KEYS = {"lowercase", "token_pattern", "binary", "min_df", "max_df", "max_features"}
ARTIFACT = json.loads(SHIPPED_MODEL.read_text(encoding="utf-8"))
VERSION = ARTIFACT["model"]["version"]


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def split(nbserve_bin, tmp_path_factory):
    """The split the artifact records: (x_train, y_train, x_test, y_test)."""
    work = tmp_path_factory.mktemp("http-parity")
    training = ARTIFACT["training"]
    subprocess.run([str(nbserve_bin), "split", "--data", str(DATA), "--train-out", str(work / "train.csv"),
                    "--test-out", str(work / "test.csv"), "--test-size", repr(training["test_size"]),
                    "--seed", str(training["seed"])], check=True, stdout=subprocess.DEVNULL)
    _, _, x_train, y_train = read_csv(work / "train.csv")
    _, _, x_test, y_test = read_csv(work / "test.csv")
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="module")
def sklearn_model(split, figures):
    """scikit-learn fitted with the artifact's settings on the train part:
    (vectorizer, classifier)."""
    settings = ARTIFACT["training"]["vectorizer"]
    model = {"bernoulli": BernoulliNB, "multinomial": MultinomialNB,
             "complement": ComplementNB}[ARTIFACT["training"].get("model", "bernoulli")]
    # max_features 0 = no limit; min_df / max_df as stored (int: documents, float: share).
    vec = CountVectorizer(binary=settings["binary"], lowercase=settings["lowercase"],
                          token_pattern=settings["token_pattern"], min_df=settings.get("min_df", 1),
                          max_df=settings.get("max_df", 1.0), max_features=settings.get("max_features") or None)
    clf = model(alpha=ARTIFACT["parameters"]["alpha"]).fit(vec.fit_transform(split[0]), split[1])
    figures("parity shipped-model-http", f"{SHIPPED_MODEL.name}: {ARTIFACT['model']['name']} {VERSION}, "
                                         f"{vec!r} + {model.__name__}(alpha={ARTIFACT['parameters']['alpha']}), "
                                         f"test_size {ARTIFACT['training']['test_size']}, "
                                         f"seed {ARTIFACT['training']['seed']}")
    return vec, clf


@pytest.fixture(scope="module")
def expected(split, sklearn_model):
    """scikit-learn on the test part: (classes, probabilities, labels); a
    calibrated artifact serves softmax(jll / T), labels stay the arg-max of jll."""
    vec, clf = sklearn_model
    classes = [str(c) for c in clf.classes_]
    jll = clf.predict_joint_log_proba(vec.transform(split[2]))
    t = float((ARTIFACT.get("calibration") or {}).get("temperature", 1.0))
    return classes, softmax(jll / t, axis=1), [classes[j] for j in jll.argmax(axis=1)]


# ---------------------------------------------------------- 1. the split
def test_the_artifact_was_evaluated_on_a_stratified_split():
    # This check reproduces a stratified split only.
    assert ARTIFACT["training"].get("evaluated_on") == "stratified_split"


def test_the_artifacts_split_is_reproduced(split):
    x_train, _, x_test, _ = split
    dataset, ev = ARTIFACT["dataset"], ARTIFACT["evaluation"]
    assert sha256_file(DATA) == dataset["sha256"], f"{DATA.name} differs from the artifact's dataset.sha256"
    assert len(x_train) + len(x_test) == dataset["documents"], (len(x_train), len(x_test), dataset["documents"])
    assert len(x_test) == ev["documents"], (len(x_test), ev["documents"])


# --------------------------------------------- 2. the artifact is that model
def test_scikit_learn_on_the_train_part_is_the_artifacts_model(sklearn_model):
    vec, clf = sklearn_model
    unknown = set(ARTIFACT["training"]["vectorizer"]) - VECTORIZER_KEYS
    assert not unknown, f"vectorizer settings this check does not know: {sorted(unknown)}"
    assert ARTIFACT["classes"] == [str(c) for c in clf.classes_]
    assert ARTIFACT["vocabulary"] == list(vec.get_feature_names_out()), \
        f"vocabulary ({len(ARTIFACT['vocabulary'])} terms) != scikit-learn's ({len(vec.get_feature_names_out())})"
    params = ARTIFACT["parameters"]
    assert params["class_count"] == [int(v) for v in clf.class_count_]
    assert np.array_equal(np.asarray(params["feature_count"], dtype=float), clf.feature_count_), \
        "feature_count differs from scikit-learn's feature_count_"


# ------------------------------------------------ 3. the real binary serving it
@pytest.fixture(scope="module")
def server(nbserve_bin, tmp_path_factory):
    work = tmp_path_factory.mktemp("http-parity-server")
    (work / "models").mkdir()
    (work / "models" / "spam-nb.json").write_bytes(SHIPPED_MODEL.read_bytes())
    server = start_server(nbserve_bin, work)
    yield server
    server.stop()


def batches(texts: list[str], max_items: int = 1000, max_body: int = 1_500_000):
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


def same_as_scikit_learn(where: str, answers: list[dict], expected, figures) -> None:
    classes, proba, labels = expected
    problems, worst = [], 0.0
    for i, a in enumerate(answers):
        if a.get("label") != labels[i]:
            problems.append(f"doc {i}: label {a.get('label')!r}, scikit-learn {labels[i]!r}")
        if a.get("model_version") not in (None, VERSION):
            problems.append(f"doc {i}: model_version {a.get('model_version')!r} != {VERSION!r}")
        probs = a.get("probabilities") or {}
        if sorted(probs) != sorted(classes):
            problems.append(f"doc {i}: probability classes {sorted(probs)}")
            continue
        for j, c in enumerate(classes):
            d = abs(float(probs[c]) - float(proba[i, j]))
            d = d if math.isfinite(d) else math.inf
            worst = max(worst, d)
            if d >= PROBA_TOL:
                problems.append(f"doc {i} class {c!r}: {probs[c]!r} vs scikit-learn {float(proba[i, j])!r} (|d| {d:.3g})")
    figures(f"parity shipped-model-http {where}", f"{len(answers)} answers, max |d proba| {worst:.3g}")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:10])


def test_predict_answers_equal_scikit_learns(server, split, expected, figures):
    answers = []
    for i, text in enumerate(split[2]):
        answer = server.post_json("/predict", {"text": text}, timeout=120)
        assert answer.status == 200, f"/predict doc {i}: {answer}"
        answers.append(answer.json())
    same_as_scikit_learn("/predict", answers, expected, figures)


def test_predict_batch_answers_equal_scikit_learns(server, split, expected, figures):
    texts, answers = split[2], []
    for a, b in batches(texts):
        answer = server.post_json("/predict/batch", {"texts": texts[a:b]}, timeout=120)
        body = answer.json() if answer.status == 200 else {}
        assert len(body.get("predictions") or []) == b - a, f"/predict/batch docs {a}..{b}: {answer}"
        assert body.get("model_version") == VERSION, body.get("model_version")
        answers += body["predictions"]
    same_as_scikit_learn("/predict/batch", answers, expected, figures)


# ------------------------------------------------------ 4. the stored evaluation
@pytest.mark.parametrize("metric", ["f1_macro", "balanced_accuracy", "accuracy"])
def test_stored_headline_metric_equals_scikit_learns(split, expected, metric):
    got, want = ARTIFACT["evaluation"].get(metric), headline_metrics(split[3], expected[2])[metric]
    assert isinstance(got, (int, float)) and abs(got - want) <= METRIC_TOL, f"artifact {got!r}, scikit-learn {want!r}"


def test_stored_per_class_figures_equal_scikit_learns(split, expected):
    classes, _, labels = expected
    prec, rec, f1, support = precision_recall_fscore_support(split[3], labels, labels=classes, zero_division=0)
    per_class = {p["label"]: p for p in ARTIFACT["evaluation"].get("per_class", [])}
    problems = []
    for j, c in enumerate(classes):
        p = per_class.get(c, {})
        for key, want in (("precision", prec[j]), ("recall", rec[j]), ("f1", f1[j])):
            if not abs(p.get(key, math.nan) - want) <= METRIC_TOL:
                problems.append(f"per_class[{c}].{key} {p.get(key)!r} != scikit-learn {want!r}")
        if p.get("support") != int(support[j]):
            problems.append(f"per_class[{c}].support {p.get('support')!r} != {int(support[j])}")
    assert not problems, problems


def test_stored_confusion_matrix_equals_scikit_learns(split, expected):
    cm = confusion_matrix(split[3], expected[2], labels=expected[0]).tolist()
    assert ARTIFACT["evaluation"].get("confusion_matrix") == cm
