"""nbserve must train and predict exactly like scikit-learn's
CountVectorizer + naive Bayes (tests/parity/parity.py fits scikit-learn on the
same training file nbserve trained on):

- "spamassassin": nbserve splits data/spamassassin.csv 80/20 (seed 42), the
  tokenizer stress documents are appended to both halves, nbserve trains on
  the train half (evaluating on the test half) and predicts the test half;
- "tokenizer-stress": the same on tests/data/tokenizer_stress.csv alone;
- the option cases reuse the first case's files with vectorizer options
  (min_df, max_df, max_features, two settings each) and the other models
  (MultinomialNB, ComplementNB on counts and on binary features, a calibrated
  BernoulliNB). max_features values are the largest up to 20,000 and 1,000
  whose cut falls between distinct counts on this split (parity.py
  tie_free_limit; the figures say where the cut falls): at a tie
  scikit-learn's unstable argsort keeps whichever tied terms NumPy's sort
  kernel puts first, nbserve the alphabetically first.

Each case must meet: the artifact's classes, training parameters and
vocabulary (terms and order) equal scikit-learn's, every predicted label is
identical, log-probabilities and probabilities within 1e-9, the stored
evaluation metrics within 1e-12. Each case's figures (vocabulary, labels
agreeing, max |d log-proba|, F1 macro) are in the closing "figures".
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ROOT
from parity import LOGP_TOL, METRIC_TOL, SHOW, append_stress, context, df_bound, fit, short, tie_free_limit, where

DATA = ROOT / "data" / "spamassassin.csv"
STRESS = ROOT / "tests" / "data" / "tokenizer_stress.csv"


@dataclass
class Case:
    """nbserve train options and the same for scikit-learn (parity.fit's
    keywords, in their command-line spelling)."""

    train_options: list[str]
    sklearn: dict = field(default_factory=dict)
    stress_only: bool = False
    # (near, tie_free_limit keywords): max_features is the largest tie-free limit up to `near`
    max_features_near: tuple[int, dict] | None = None


CASES = {
    "spamassassin": Case(["--alpha", "1.0"]),
    "tokenizer-stress": Case(["--alpha", "1.0"], stress_only=True),
    "min-df-2": Case(["--min-df", "2"], {"min_df": "2"}),
    "min-df-share": Case(["--min-df", "0.005", "--alpha", "0.1"], {"min_df": "0.005", "alpha": 0.1}),
    "max-df-share": Case(["--max-df", "0.5"], {"max_df": "0.5"}),
    "max-df-count": Case(["--max-df", "400", "--min-df", "3"], {"max_df": "400", "min_df": "3"}),
    "max-features-a": Case([], max_features_near=(20000, {})),
    "max-features-b": Case(["--min-df", "2"], {"min_df": "2"}, max_features_near=(1000, {"min_df": "2"})),
    "multinomial-counts": Case(["--model", "multinomial"], {"nb": "multinomial", "binary": "false"}),
    "multinomial-binary": Case(["--model", "multinomial", "--binary", "--alpha", "0.5"],
                               {"nb": "multinomial", "alpha": 0.5}),
    "complement-binary": Case(["--model", "complement", "--binary", "--min-df", "2"],
                              {"nb": "complement", "min_df": "2"}),
    "bernoulli-calibrated": Case(["--min-df", "5", "--alpha", "0.1", "--calibrate"], {"min_df": "5", "alpha": 0.1}),
    "complement-counts": Case(["--model", "complement", "--max-df", "0.9", "--alpha", "0.3"],
                              {"nb": "complement", "binary": "false", "max_df": "0.9", "alpha": 0.3}),
}


def nbserve(binary: Path, *args) -> str:
    """Runs `nbserve ARGS`; fails the test with its output if it fails."""
    done = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, f"nbserve {args[0]} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def split(nbserve_bin, tmp_path_factory) -> tuple[Path, Path]:
    """nbserve's 80/20 split of the corpus (seed 42), the stress documents appended to both halves."""
    work = tmp_path_factory.mktemp("parity-split")
    train, test = work / "train.csv", work / "test.csv"
    nbserve(nbserve_bin, "split", "--data", DATA, "--train-out", train, "--test-out", test,
            "--test-size", "0.2", "--seed", "42")
    for path in (train, test):
        assert path.stat().st_size > 0, f"nbserve split wrote an empty {path.name}"
        append_stress(path, STRESS)
    return train, test


@dataclass
class Result:
    """One case: nbserve's artifact and predictions next to scikit-learn's."""

    name: str
    artifact: dict
    predictions: list[dict]
    want_training: dict
    sk: object  # parity.Fitted
    agree: int = 0
    wrong: list[int] = field(default_factory=list)
    max_dlp: float = 0.0
    max_dp: float = 0.0
    worst: tuple | None = None
    missing: list[str] = field(default_factory=list)


def compare(result: Result) -> None:
    """Labels agreeing and the largest log-probability and probability differences."""
    sk = result.sk
    for i, p in enumerate(result.predictions[:len(sk.x_test)]):
        if p.get("label") == sk.labels[i]:
            result.agree += 1
        else:
            result.wrong.append(i)
        lps, ps = p.get("log_probabilities") or {}, p.get("probabilities") or {}
        for j, c in enumerate(sk.classes):
            if c not in lps or c not in ps:
                result.missing.append(f"document {i} has no log_probabilities/probabilities for class {c!r}")
                continue
            d = abs(float(lps[c]) - float(sk.log_proba[i, j]))
            d = d if math.isfinite(d) else math.inf
            if result.worst is None or d > result.max_dlp:
                result.max_dlp = d
                result.worst = (i, c, float(lps[c]), float(sk.log_proba[i, j]))
            dp = abs(float(ps[c]) - math.exp(float(sk.log_proba[i, j])))
            result.max_dp = max(result.max_dp, dp if math.isfinite(dp) else math.inf)


@pytest.fixture(scope="module", params=list(CASES))
def case(request, nbserve_bin, split, tmp_path_factory, figures) -> Result:
    """nbserve trains the case on its training file and predicts its test
    file; scikit-learn fits the same and scores the same."""
    name, spec = request.param, CASES[request.param]
    train, test = (STRESS, STRESS) if spec.stress_only else split
    options, sk_options = list(spec.train_options), dict(spec.sklearn)
    if spec.max_features_near:
        near, keywords = spec.max_features_near
        try:
            limit = tie_free_limit(train, near, **keywords)
        except (ValueError, IndexError):
            limit = near
        options = ["--max-features", str(limit), *options]
        sk_options["max_features"] = limit
    work = tmp_path_factory.mktemp(f"parity-{name}")
    model = work / "model.json"
    nbserve(nbserve_bin, "train", "--data", train, "--test-data", test, "--out", model, *options)
    assert model.stat().st_size > 0, "nbserve train wrote an empty artifact"
    artifact = json.loads(model.read_text(encoding="utf-8"))
    predicted = nbserve(nbserve_bin, "predict", "--model", model, "--data", test, "--json")
    predictions = [json.loads(line) for line in predicted.splitlines() if line.strip()]
    temperature = (artifact.get("calibration") or {}).get("temperature")
    sk = fit(train, test, **sk_options, temperature=temperature)
    want = {"model": sk_options.get("nb", "bernoulli"), "alpha": float(sk_options.get("alpha", 1.0)),
            "binary": sk_options.get("binary", "true") == "true", "min_df": df_bound(sk_options.get("min_df", "1")),
            "max_df": df_bound(sk_options.get("max_df", "1.0")), "max_features": sk_options.get("max_features", 0)}
    result = Result(name, artifact, predictions, want, sk)
    compare(result)
    f1 = (artifact.get("evaluation") or {}).get("f1_macro")
    figures(f"parity {name}", f"{sk.description}: {len(sk.x_train)} train / {len(sk.x_test)} test documents, "
                              f"vocabulary {len(sk.vocabulary)}, labels agreeing {result.agree}/{len(sk.x_test)}, "
                              f"max |d log-proba| {result.max_dlp:.3g}, max |d proba| {result.max_dp:.3g}, "
                              f"F1 macro nbserve {f1 if f1 is None else f'{f1:.4f}'} / sklearn "
                              f"{sk.metrics['f1_macro']:.4f}" + (f"; {sk.cut}" if sk.cut else ""))
    return result


def test_classes_equal_scikit_learns(case):
    assert case.artifact.get("classes") == case.sk.classes


def test_training_parameters_are_recorded_in_the_artifact(case):
    training = case.artifact.get("training") or {}
    vz = training.get("vectorizer") or {}
    got = {"model": training.get("model", "bernoulli"), "alpha": training.get("alpha"),
           "binary": vz.get("binary"), "min_df": vz.get("min_df", 1), "max_df": vz.get("max_df", 1.0),
           "max_features": vz.get("max_features", 0)}
    # Equal and of the same type: 2 documents is not a share of 2.0.
    differ = {k: (got[k], v) for k, v in case.want_training.items() if got[k] != v or type(got[k]) is not type(v)}
    assert not differ, f"artifact training (got, want): {differ}"


def test_vocabulary_equals_scikit_learns_terms_and_order(case):
    nb_vocab, sk_vocab = case.artifact.get("vocabulary"), case.sk.vocabulary
    assert isinstance(nb_vocab, list), f"vocabulary is a {type(nb_vocab).__name__}, not a JSON array of terms"
    if nb_vocab == sk_vocab:
        return
    only_sk, only_nb = sorted(set(sk_vocab) - set(nb_vocab)), sorted(set(nb_vocab) - set(sk_vocab))
    lines = [f"nbserve {len(nb_vocab)} terms, sklearn {len(sk_vocab)}: {len(only_sk)} only in sklearn, "
             f"{len(only_nb)} only in nbserve"]
    for label, terms, analyzer in (("only in sklearn", only_sk, case.sk.analyzer), ("only in nbserve", only_nb, None)):
        for term in terms[:SHOW]:
            docs = where(term, case.sk.x_train, analyzer)
            cps = " ".join(f"U+{ord(c):04X}" for c in term[:12])
            ctx = context(term, case.sk.x_train[docs[0]]) if docs else "(not a substring of any lowercased train text)"
            lines.append(f"{label}: {term!r} [{cps}] train rows {docs} {ctx}")
    if not only_sk and not only_nb:
        diffs = [i for i, (a, b) in enumerate(zip(nb_vocab, sk_vocab)) if a != b]
        lines.append(f"same terms, different order (duplicates in nbserve: {len(nb_vocab) != len(set(nb_vocab))}): "
                     + ", ".join(f"[{i}] nbserve {nb_vocab[i]!r} sklearn {sk_vocab[i]!r}" for i in diffs[:3]))
    pytest.fail("\n".join(lines))


def test_every_predicted_label_equals_scikit_learns(case):
    assert len(case.predictions) == len(case.sk.x_test), \
        f"{len(case.predictions)} JSON lines for {len(case.sk.x_test)} test documents"
    shown = [f"doc {i}: nbserve {case.predictions[i].get('label')!r} {case.predictions[i].get('log_probabilities')} "
             f"sklearn {case.sk.labels[i]!r} text {short(case.sk.x_test[i])}" for i in case.wrong[:SHOW]]
    assert not case.wrong, f"labels differ on {len(case.wrong)} documents:\n" + "\n".join(shown)


def test_log_probabilities_within_1e_9(case):
    assert not case.missing, case.missing[:SHOW]
    if case.max_dlp >= LOGP_TOL:
        i, c, a, b = case.worst
        pytest.fail(f"log-probabilities differ by up to {case.max_dlp:.3g} (doc {i}, class {c!r}: nbserve {a!r} "
                    f"sklearn {b!r}, text {short(case.sk.x_test[i])})")


def test_probabilities_within_1e_9(case):
    assert not case.missing, case.missing[:SHOW]
    assert case.max_dp < LOGP_TOL, f"probabilities differ by up to {case.max_dp:.3g}"


@pytest.mark.parametrize("metric", ["f1_macro", "balanced_accuracy", "accuracy"])
def test_stored_evaluation_equals_scikit_learns(case, metric):
    # The artifact stores the figures at full precision.
    got, want = (case.artifact.get("evaluation") or {}).get(metric), case.sk.metrics[metric]
    assert isinstance(got, (int, float)), f"evaluation.{metric} missing from the artifact (got {got!r})"
    assert abs(got - want) <= METRIC_TOL, f"evaluation.{metric}: nbserve {got!r}, sklearn {want!r}"
