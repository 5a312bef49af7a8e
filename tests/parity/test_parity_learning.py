"""Learning in place against scikit-learn on the real corpus, end to end.

nbserve splits data/spamassassin.csv 80/20 (seed 42); every fifth row of the
training part is set aside as S, the rest is the base. A champion is trained
on the base with `--statistics --test-data` (so every base row is fitted) and
served; S goes through the real server's POST /learn in batches; GET
/challenger/artifact is the challenger. scikit-learn fits CountVectorizer +
BernoulliNB with the same settings on base ∪ S: the challenger must have its
classes, its vocabulary (terms and order), its class and feature counts
exactly, and predict the test part as it does (labels identical,
log-probabilities within 1e-9). Forgetting S through POST /forget must give
the champion back exactly: the same vocabulary, parameters and statistics.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, start_server
from parity import LOGP_TOL, fit, read_csv

DATA = ROOT / "data" / "spamassassin.csv"
OPTIONS = {"alpha": 0.01, "min_df": "2"}
BATCH_BYTES = 1_500_000  # under server.body_limit_bytes (2 MiB) with the JSON around the texts
BATCH_ROWS = 500  # under server.max_batch_size


def nbserve(binary: Path, *args) -> str:
    done = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, f"nbserve {args[0]} exited {done.returncode}:\n{done.stderr[-2000:]}"
    return done.stdout


def write_csv(path: Path, texts: list[str], labels: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(zip(texts, labels))
    return path


def batches(examples: list[dict]):
    """`examples` in batches that fit the server's body and batch limits."""
    batch, size = [], 0
    for e in examples:
        n = len(e["text"].encode()) * 2 + 64  # JSON escaping at worst doubles a text
        if batch and (size + n > BATCH_BYTES or len(batch) == BATCH_ROWS):
            yield batch
            batch, size = [], 0
        batch.append(e)
        size += n
    if batch:
        yield batch


@pytest.fixture(scope="module")
def story(nbserve_bin, tmp_path_factory, figures):
    work = tmp_path_factory.mktemp("parity-learning")
    train, test = work / "train.csv", work / "test.csv"
    nbserve(nbserve_bin, "split", "--data", DATA, "--train-out", train, "--test-out", test,
            "--test-size", "0.2", "--seed", "42")
    _, _, texts, labels = read_csv(train)
    base_rows = [i for i in range(len(texts)) if i % 5]
    s_rows = [i for i in range(len(texts)) if i % 5 == 0]
    base = write_csv(work / "base.csv", [texts[i] for i in base_rows], [labels[i] for i in base_rows])
    union = write_csv(work / "union.csv", [texts[i] for i in base_rows + s_rows],
                      [labels[i] for i in base_rows + s_rows])
    learned = [{"text": texts[i], "label": labels[i]} for i in s_rows]
    champion = work / "models" / "champion.json"
    champion.parent.mkdir()
    nbserve(nbserve_bin, "train", "--data", base, "--test-data", test, "--statistics", "--out", champion,
            "--alpha", str(OPTIONS["alpha"]), "--min-df", OPTIONS["min_df"], "--name", "spam",
            "--model-version", "1")
    server = start_server(nbserve_bin, work, {"LEARNING__ENABLED": "true",
                                              "GATE__HOLDOUT_PATH": str(test),
                                              "SERVER__REQUEST_TIMEOUT_MS": "300000"}, model=champion)
    try:
        for batch in batches(learned):
            answer = server.post_json("/learn", {"examples": batch}, timeout=300)
            assert answer.status == 200, answer.body[:500]
        status = server.get("/challenger").json()
        answer = server.get("/challenger/artifact", timeout=300)
        assert answer.status == 200, answer.body[:500]
        challenger = work / "challenger.json"
        challenger.write_bytes(answer.body)
        for batch in batches(learned):
            answer = server.post_json("/forget", {"examples": batch}, timeout=300)
            assert answer.status == 200, answer.body[:500]
        answer = server.get("/challenger/artifact", timeout=300)
        assert answer.status == 200, answer.body[:500]
        forgotten = json.loads(answer.body)
    finally:
        server.stop()
    predicted = nbserve(nbserve_bin, "predict", "--model", challenger, "--data", test, "--json")
    sk = fit(union, test, alpha=OPTIONS["alpha"], min_df=OPTIONS["min_df"])
    story = {
        "union": union,
        "status": status,
        "learned": learned,
        "champion": json.loads(champion.read_text(encoding="utf-8")),
        "challenger": json.loads(challenger.read_text(encoding="utf-8")),
        "forgotten": forgotten,
        "predictions": [json.loads(line) for line in predicted.splitlines() if line.strip()],
        "sk": sk,
    }
    figures("parity learning", f"champion on {len(base_rows)} base rows, {len(s_rows)} learned through /learn; "
                               f"{sk.description} on base ∪ S: vocabulary {len(sk.vocabulary)} "
                               f"(champion {len(story['champion']['vocabulary'])})")
    return story


def test_every_learned_example_was_counted(story):
    assert story["status"]["learned"] == len(story["learned"]), story["status"]


def test_the_challengers_vocabulary_and_classes_equal_scikit_learns_on_base_and_s(story):
    assert story["challenger"]["classes"] == story["sk"].classes
    assert story["challenger"]["vocabulary"] == story["sk"].vocabulary


def test_the_challengers_counts_equal_scikit_learns_on_base_and_s(story):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import BernoulliNB

    _, _, texts, labels = read_csv(story["union"])
    vec = CountVectorizer(binary=True, min_df=int(OPTIONS["min_df"]))
    clf = BernoulliNB(alpha=OPTIONS["alpha"]).fit(vec.fit_transform(texts), labels)
    params = story["challenger"]["parameters"]
    assert params["class_count"] == [int(v) for v in clf.class_count_]
    assert np.array_equal(np.asarray(params["feature_count"], dtype=float), clf.feature_count_), \
        "feature_count differs from scikit-learn's feature_count_ on base ∪ S"


def test_the_challenger_predicts_as_scikit_learn_on_base_and_s(story, figures):
    sk, predictions = story["sk"], story["predictions"]
    assert len(predictions) == len(sk.x_test)
    wrong = [i for i, p in enumerate(predictions) if p["label"] != sk.labels[i]]
    assert not wrong, f"labels differ on {len(wrong)} documents"
    got = np.array([[p["log_probabilities"][c] for c in sk.classes] for p in predictions])
    worst = float(np.max(np.abs(got - sk.log_proba)))
    figures("parity learning predictions", f"{len(predictions)} test documents, labels agreeing "
                                           f"{len(predictions) - len(wrong)}/{len(predictions)}, "
                                           f"max |d log-proba| {worst:.3g}")
    assert worst <= LOGP_TOL, f"log-probabilities differ by up to {worst:.3g}"


def test_forgetting_s_gives_the_champion_back_exactly(story):
    champion, forgotten = story["champion"], story["forgotten"]
    for key in ("classes", "vocabulary", "parameters", "statistics"):
        assert forgotten[key] == champion[key], key
