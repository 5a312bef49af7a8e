use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::artifact::ArtifactError;
use crate::classifier::{DfBound, ModelKind, VectorizerOptions};
use crate::training::{train, train_counted};

fn sample() -> Dataset {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample.csv");
    Dataset::from_csv(Path::new(path), "text", "label").unwrap()
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn options(model: ModelKind, vectorizer: VectorizerOptions) -> TrainOptions {
    TrainOptions {
        model,
        vectorizer,
        calibrate_folds: None,
        alpha: 0.5,
        run: RunOptions {
            test_size: 0.25,
            seed: 7,
            name: "t".into(),
            version: Some("1".into()),
            created_at: at(),
        },
    }
}

/// Every model, binary features or term counts, with pruning by `min_df`, `max_df` and `max_features`: the
/// vocabulary after learning differs from the champion's.
fn settings() -> Vec<TrainOptions> {
    let v = VectorizerOptions::default();
    vec![
        options(
            ModelKind::Bernoulli,
            VectorizerOptions { binary: true, ..v },
        ),
        options(
            ModelKind::Multinomial,
            VectorizerOptions {
                min_df: DfBound::Count(2),
                max_features: 300,
                binary: false,
                ..v
            },
        ),
        options(
            ModelKind::Complement,
            VectorizerOptions {
                min_df: DfBound::Proportion(0.01),
                max_df: DfBound::Proportion(0.8),
                binary: false,
                ..v
            },
        ),
        // Binary features on a model of term counts.
        options(
            ModelKind::Multinomial,
            VectorizerOptions {
                max_features: 200,
                binary: true,
                ..v
            },
        ),
    ]
}

fn rows(data: &Dataset, idx: impl IntoIterator<Item = usize>) -> Dataset {
    let idx: Vec<usize> = idx.into_iter().collect();
    data.subset(&idx)
}

fn examples(data: &Dataset) -> Vec<Example> {
    data.texts
        .iter()
        .zip(&data.labels)
        .map(|(t, l)| Example::new(t.clone(), l.clone()))
        .collect()
}

fn union(a: &Dataset, b: &Dataset) -> Dataset {
    Dataset {
        texts: a.texts.iter().chain(&b.texts).cloned().collect(),
        labels: a.labels.iter().chain(&b.labels).cloned().collect(),
        sha256: "union".into(),
    }
}

/// The test rows, the champion's rows and the rest of the sample.
fn parts() -> (Dataset, Dataset, Dataset) {
    let data = sample();
    let n = data.len();
    let test = rows(&data, (0..n).filter(|i| i % 4 == 0));
    let base = rows(&data, (0..n).filter(|i| i % 4 == 1 || i % 4 == 2));
    let rest = rows(&data, (0..n).filter(|i| i % 4 == 3));
    (test, base, rest)
}

/// A schema-3 champion trained on `base` with every row fitted.
fn champion(base: &Dataset, test: &Dataset, o: &TrainOptions) -> Artifact {
    let (artifact, counts) = train_counted(base, Some(test), o, |_, _| {}).unwrap();
    artifact.with_statistics(&counts)
}

/// Same vocabulary, labels and fitted counts, and log-probabilities within
/// 1e-9 on every test text.
fn assert_same_model(got: &Artifact, want: &Artifact, test: &Dataset) {
    assert_eq!(got.classes, want.classes);
    assert_eq!(got.vocabulary, want.vocabulary);
    assert_eq!(got.parameters, want.parameters);
    assert!(got.predicts_like(want));
    let (g, w) = (
        got.clone().into_loaded().unwrap().classifier,
        want.clone().into_loaded().unwrap().classifier,
    );
    for text in &test.texts {
        let (a, b) = (g.predict(text), w.predict(text));
        for (x, y) in a.log_probabilities.iter().zip(&b.log_probabilities) {
            assert!((x - y).abs() <= 1e-9, "{x} vs {y}");
        }
    }
}

#[test]
fn learning_a_set_equals_training_on_the_union() {
    let (test, base, rest) = parts();
    for o in settings() {
        let champ = champion(&base, &test, &o);
        let mut learner = Learner::from_artifact(&champ, false).unwrap();
        learner.learn(&examples(&rest)).unwrap();
        let challenger = learner.artifact(&test, at()).unwrap();
        let expected = train(&union(&base, &rest), Some(&test), &o, |_, _| {}).unwrap();
        assert_same_model(&challenger, &expected, &test);
        assert_ne!(challenger.vocabulary, champ.vocabulary, "{:?}", o.model);
        // The challenger is an ordinary schema-3 artifact, learnable in turn.
        assert_eq!(
            challenger.schema_version,
            crate::artifact::STATISTICS_SCHEMA
        );
        let again = Artifact::load_bytes(&challenger.to_bytes()).unwrap();
        assert_eq!(again.statistics.as_deref(), Some(&learner.total().unwrap()));
    }
}

#[test]
fn learning_in_batches_or_at_once_is_the_same() {
    let (test, base, rest) = parts();
    let o = &settings()[1];
    let champ = champion(&base, &test, o);
    let mut at_once = Learner::from_artifact(&champ, false).unwrap();
    at_once.learn(&examples(&rest)).unwrap();
    let mut batches = Learner::from_artifact(&champ, false).unwrap();
    for chunk in examples(&rest).chunks(7) {
        batches.learn(chunk).unwrap();
    }
    assert_eq!(at_once.total().unwrap(), batches.total().unwrap());
    assert_eq!(batches.tally().learned, rest.len() as u64);
}

#[test]
fn learning_then_forgetting_gives_the_champion_back() {
    let (test, base, rest) = parts();
    for o in settings() {
        let champ = champion(&base, &test, &o);
        let mut learner = Learner::from_artifact(&champ, false).unwrap();
        let s = examples(&rest);
        learner.learn(&s).unwrap();
        learner.forget(&s).unwrap();
        assert_eq!(
            &learner.total().unwrap(),
            champ.decode_statistics().unwrap().as_ref().unwrap()
        );
        let back = learner.artifact(&test, at()).unwrap();
        assert_same_model(&back, &champ, &test);
        assert_eq!(
            learner.tally(),
            Tally {
                learned: s.len() as u64,
                forgotten: s.len() as u64
            }
        );
        assert_eq!(learner.net_examples(), 0);
    }
}

#[test]
fn forgetting_what_was_never_learned_is_refused_and_changes_nothing() {
    let (test, base, rest) = parts();
    let champ = champion(&base, &test, &settings()[0]);
    let mut learner = Learner::from_artifact(&champ, false).unwrap();
    let s = examples(&rest);
    learner.learn(&s[..3]).unwrap();
    let before = learner.total().unwrap();
    // Never learned (a row of the champion's own corpus included).
    let base_row = examples(&base).remove(0);
    let err = learner
        .forget(&[s[0].clone(), base_row.clone()])
        .unwrap_err();
    assert!(matches!(err, LearnError::NotLearned { index: 1 }), "{err}");
    // Learned once, forgotten twice in one batch.
    let err = learner.forget(&[s[1].clone(), s[1].clone()]).unwrap_err();
    assert!(matches!(err, LearnError::NotLearned { index: 1 }), "{err}");
    // The same text under another label was never learned.
    let other = champ.classes.iter().find(|c| **c != s[2].label).unwrap();
    let relabelled = Example::new(s[2].text.clone(), other.clone());
    assert!(matches!(
        learner.forget(&[relabelled]),
        Err(LearnError::NotLearned { index: 0 })
    ));
    assert_eq!(learner.total().unwrap(), before);
    assert_eq!(learner.tally().forgotten, 0);
    // Forgotten once, it is gone.
    learner.forget(&s[..1]).unwrap();
    assert!(matches!(
        learner.forget(&s[..1]),
        Err(LearnError::NotLearned { index: 0 })
    ));
}

#[test]
fn labels_outside_the_champions_classes_are_refused_unless_allowed() {
    let (test, base, rest) = parts();
    let champ = champion(&base, &test, &settings()[1]);
    let mut s = examples(&rest)[..4].to_vec();
    s[2].label = "phishing".into();
    let mut strict = Learner::from_artifact(&champ, false).unwrap();
    let before = strict.total().unwrap();
    assert!(matches!(
        strict.learn(&s),
        Err(LearnError::UnknownLabel { index: 2 })
    ));
    assert_eq!(strict.total().unwrap(), before);
    assert_eq!(strict.tally().learned, 0);
    let mut open = Learner::from_artifact(&champ, true).unwrap();
    open.learn(&s).unwrap();
    let classifier = open.classifier().unwrap();
    assert!(classifier.classes().iter().any(|c| c == "phishing"));
    let challenger = open.artifact(&test, at());
    // The test file has no such label: the challenger still evaluates.
    assert!(challenger.is_ok(), "{:?}", challenger.err());
}

#[test]
fn older_schemas_load_and_serve_but_cannot_learn() {
    let (test, base, _) = parts();
    let o = &settings()[0];
    let plain = train(&base, Some(&test), o, |_, _| {}).unwrap();
    assert_eq!(plain.schema_version, crate::artifact::SCHEMA_VERSION);
    assert!(plain.statistics.is_none());
    let loaded = Artifact::load_bytes(&plain.to_bytes()).unwrap();
    assert!(loaded.statistics.is_none());
    let err = Learner::from_artifact(&plain, false).unwrap_err();
    assert!(matches!(err, LearnError::NoStatistics), "{err}");
    assert!(err.to_string().contains("--statistics"), "{err}");
    // A schema-3 file scores exactly as the schema-2 file of the same fit.
    let with = champion(&base, &test, o);
    assert!(with.predicts_like(&plain));
    assert_eq!(with.clone().without_statistics(), plain);
}

#[test]
fn statistics_that_do_not_belong_to_the_model_are_refused_at_load() {
    let (test, base, rest) = parts();
    let o = &settings()[0];
    let champ = champion(&base, &test, o);
    // Schema 3 without statistics, and statistics under schema 2.
    let mut a = champ.clone();
    a.statistics = None;
    a.seal();
    assert!(matches!(a.into_loaded(), Err(ArtifactError::Statistics(_))));
    let mut a = champ.clone();
    a.schema_version = crate::artifact::SCHEMA_VERSION;
    a.seal();
    assert!(matches!(a.into_loaded(), Err(ArtifactError::Statistics(_))));
    // Another corpus's statistics: the class counts differ.
    let other = champion(&rest, &test, o);
    let mut a = champ.clone();
    a.statistics = other.statistics.clone();
    a.seal();
    assert!(matches!(a.into_loaded(), Err(ArtifactError::Statistics(_))));
    let mut a = champ;
    a.statistics = Some("not base64!".into());
    a.seal();
    assert!(matches!(a.into_loaded(), Err(ArtifactError::Statistics(_))));
}

#[test]
fn a_file_schema_3_is_read_back_byte_for_byte() {
    let (test, base, _) = parts();
    let champ = champion(&base, &test, &settings()[2]);
    let bytes = champ.to_bytes();
    let parsed: Artifact = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(parsed, champ);
    assert_eq!(parsed.compute_checksum(), champ.checksum);
    Artifact::load_bytes(&bytes).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Any rows learned, then any of them forgotten: the model `train`
    /// gives on the champion's rows and those still learned.
    #[test]
    fn learning_and_forgetting_any_rows_matches_training(
        picks in proptest::collection::vec((0usize..10_000, any::<bool>()), 1..40),
        setting in 0usize..4,
    ) {
        let (test, base, rest) = parts();
        let o = &settings()[setting];
        let champ = champion(&base, &test, o);
        let mut learner = Learner::from_artifact(&champ, false).unwrap();
        let all = examples(&rest);
        let learned: Vec<Example> = picks.iter().map(|(i, _)| all[i % all.len()].clone()).collect();
        let forgotten: Vec<Example> = picks
            .iter()
            .filter(|(_, f)| *f)
            .map(|(i, _)| all[i % all.len()].clone())
            .collect();
        let kept: Vec<usize> = picks.iter().filter(|(_, f)| !*f).map(|(i, _)| i % all.len()).collect();
        learner.learn(&learned).unwrap();
        learner.forget(&forgotten).unwrap();
        let expected = train(&union(&base, &rest.subset(&kept)), Some(&test), o, |_, _| {}).unwrap();
        let got = learner.artifact(&test, at()).unwrap();
        prop_assert_eq!(&got.vocabulary, &expected.vocabulary);
        prop_assert_eq!(&got.classes, &expected.classes);
        prop_assert_eq!(&got.parameters, &expected.parameters);
    }
}

/// Learn throughput and the learner's memory, printed (no assertion on
/// time): `cargo test --lib learning::tests::throughput -- --ignored
/// --nocapture`, on the shipped corpus when `NBSERVE_LEARN_CORPUS` names it.
#[test]
#[ignore = "a measurement, not a check"]
fn throughput() {
    let data = match std::env::var("NBSERVE_LEARN_CORPUS") {
        Ok(p) => Dataset::from_csv(Path::new(&p), "text", "label").unwrap(),
        Err(_) => sample(),
    };
    let n = data.len();
    let test = rows(&data, (0..n).filter(|i| i % 10 == 0));
    let base = rows(&data, (0..n).filter(|i| i % 10 != 0 && i % 10 != 1));
    let rest = examples(&rows(&data, (0..n).filter(|i| i % 10 == 1)));
    let champ = champion(&base, &test, &settings()[1]);
    let mut learner = Learner::from_artifact(&champ, false).unwrap();
    for batch in [1usize, 10, 100] {
        let mut l = learner.clone();
        let take = rest.len().min(batch * 50);
        let started = std::time::Instant::now();
        for chunk in rest[..take].chunks(batch) {
            l.learn(chunk).unwrap();
        }
        let learn = started.elapsed().as_secs_f64();
        let started = std::time::Instant::now();
        let fits = 5;
        for _ in 0..fits {
            l.classifier().unwrap();
        }
        let refit = started.elapsed().as_secs_f64() / f64::from(fits);
        println!(
            "batch {batch}: {take} examples learned at {:.0} examples/s (counts only); \
             a refit of the challenger takes {:.1} ms; learned part {} bytes",
            take as f64 / learn,
            refit * 1e3,
            l.learned_bytes()
        );
    }
    learner.learn(&rest).unwrap();
    let total = learner.total().unwrap();
    println!(
        "{} examples learned; champion statistics {} bytes on the heap, {} terms; \
         learned part {} bytes",
        rest.len(),
        champ.decode_statistics().unwrap().unwrap().heap_bytes(),
        total.terms().len(),
        learner.learned_bytes()
    );
}
