//! Fitting from counts made elsewhere: `merge` (the counts of shards,
//! pruned and fitted exactly as `train` prunes and fits its own) and `tune`
//! from counts and the held-out scores of their shards.
//!
//! Both need a test file: a random split needs every row at hand.

use crate::artifact::{Artifact, Calibration, DatasetFingerprint};
use crate::classifier::{best, Counts, GridPoint, ModelError, ModelKind, TrainParams};
use crate::dataset::{combined_sha256, Dataset};
use crate::tuning::counts::CvScores;
use crate::tuning::{check_points, fit_counts, CvError, FoldRule};

use super::{
    seal_artifact, servable_names, Fitted, Provenance, TrainError, TrainOptions, TuneError,
    TuneOptions,
};

/// The training-data fingerprint of `total`: what `train` would record
/// for the files counted into it, evaluated on `test`.
pub fn fingerprint(total: &Counts, test: &Dataset) -> DatasetFingerprint {
    DatasetFingerprint {
        sha256: combined_sha256(total.sources()),
        documents: total.documents(),
        class_counts: total
            .classes()
            .iter()
            .cloned()
            .zip(total.class_documents())
            .collect(),
        test_sha256: Some(test.sha256.clone()),
    }
}

/// The classes of `total`, checked as `train` checks a dataset's.
fn classes(total: &Counts, options_run: &super::RunOptions) -> Result<Vec<String>, TrainError> {
    let classes = total.classes().to_vec();
    servable_names(&classes, options_run)?;
    if let [only] = classes.as_slice() {
        return Err(TrainError::OneClass(only.clone()));
    }
    if classes.len() < 2 {
        return Err(ModelError::TooFewClasses(classes.len()).into());
    }
    Ok(classes)
}

fn provenance<'a>(total: &Counts, test: &'a Dataset) -> Provenance<'a> {
    Provenance {
        dataset: fingerprint(total, test),
        test,
        evaluated_on: "test_file",
        test_size: None,
        seed: None,
    }
}

/// The artifact `train` writes on the documents counted into `total`,
/// evaluated on `test`, with `options`: features are binary when the
/// counts are (or the model is Bernoulli NB), as `train --binary` makes
/// them. A calibration needs the documents themselves and is refused.
pub fn train_counts(
    total: &Counts,
    test: &Dataset,
    options: &TrainOptions,
) -> Result<Artifact, TrainError> {
    // `merge` has no --binary: the counts say whether features are binary.
    let mut options = options.clone();
    options.vectorizer.binary = options.model == ModelKind::Bernoulli;
    refit_counts(total, test, &options, None)
}

/// [`train_counts`] serving probabilities at `calibration`'s temperature
/// (one fitted before, on other counts: a refit keeps it), with binary
/// features also when `options` ask for them (a refit of a model in
/// service on term counts with binary features stays binary).
pub fn refit_counts(
    total: &Counts,
    test: &Dataset,
    options: &TrainOptions,
    calibration: Option<Calibration>,
) -> Result<Artifact, TrainError> {
    if options.calibrate_folds.is_some() {
        return Err(TrainError::Fit(
            "a calibration needs the documents: fit one with tune from counts and scores".into(),
        ));
    }
    let params = options.params(false).check()?;
    let params = params.get();
    let classes = classes(total, &options.run)?;
    let point = GridPoint {
        model: options.model,
        // Binary counts allow only binary features; term counts allow both,
        // as the options (a binary multinomial model in service) ask.
        binary: total.settings().binary
            || params.vectorizer.binary
            || options.model == ModelKind::Bernoulli,
        alpha: params.alpha,
        min_df: params.vectorizer.min_df,
        max_df: params.vectorizer.max_df,
        max_features: params.vectorizer.max_features,
    };
    let fit = fit_counts(total, &point)?;
    let fitted = Fitted::untuned(options.run.clone(), point, fit, calibration);
    seal_artifact(provenance(total, test), classes, fitted)
}

/// The artifact `tune` writes on the documents counted into `total` (kept
/// per fold as `options` assigns them) whose held-out scores are `scores`,
/// evaluated on `test`: the same search, figures, choice and temperature.
pub fn tune_counts(
    total: &Counts,
    scores: &CvScores,
    test: &Dataset,
    options: &TuneOptions,
) -> Result<Artifact, TuneError> {
    let points = options.grid.points();
    if points.is_empty() {
        return Err(TuneError::EmptyGrid);
    }
    TrainParams {
        folds: Some(options.folds),
        ..TrainParams::default()
    }
    .check()?;
    let classes = classes(total, &options.run)?;
    let spec = total.settings().folds.as_ref().ok_or_else(|| {
        CvError::Data("these counts are not kept per fold: count with --folds".into())
    })?;
    let same_rule = match (&spec.by, &options.fold_rule) {
        (crate::classifier::FoldBy::Hash { seed }, FoldRule::Hash) => *seed == options.run.seed,
        (crate::classifier::FoldBy::Column { .. }, FoldRule::Given(_)) => true,
        _ => false,
    };
    if spec.k != options.folds || !same_rule {
        return Err(CvError::Data(format!(
            "the counts are kept in {spec}, not as this search assigns folds ({} folds, seed {})",
            options.folds, options.run.seed
        ))
        .into());
    }
    if scores.points != points || scores.folds != options.folds || scores.classes != classes {
        return Err(CvError::Data(
            "the scores were computed for another grid, fold count or class set".into(),
        )
        .into());
    }
    check_points(&points, total.documents() as usize)?;
    let results = scores.results()?;
    let best = best(&results);
    let point = results[best].params;
    let refit = fit_counts(total, &point)?;
    let calibration = scores.calibration(best, options.run.seed);
    let fitted = Fitted::chosen(options, results, best, refit, calibration);
    Ok(seal_artifact(provenance(total, test), classes, fitted)?)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::classifier::{CountSettings, Counter, DfBound, VectorizerOptions};
    use crate::training::{train, RunOptions};

    fn run() -> RunOptions {
        RunOptions {
            test_size: 0.2,
            seed: 1,
            name: "m".into(),
            version: Some("1".into()),
            created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    fn dataset(rows: &[(String, String)], sha256: String) -> Dataset {
        Dataset {
            texts: rows.iter().map(|r| r.0.clone()).collect(),
            labels: rows.iter().map(|r| r.1.clone()).collect(),
            sha256,
        }
    }

    /// Rows of words from a small alphabet (terms repeat, so pruning bites)
    /// with both labels present.
    fn rows() -> impl Strategy<Value = Vec<(String, String)>> {
        let word = prop_oneof!["[a-e]{2}", "[a-c]{3}", Just("Ünï".to_owned())];
        let text = proptest::collection::vec(word, 0..8).prop_map(|w| w.join(" "));
        let label = prop_oneof![Just("ham"), Just("spam"), Just("eggs")].prop_map(str::to_owned);
        proptest::collection::vec((text, label), 2..30).prop_map(|mut rows| {
            rows[0].1 = "ham".into();
            rows[1].1 = "spam".into();
            rows
        })
    }

    fn options() -> impl Strategy<Value = TrainOptions> {
        (
            prop_oneof![
                Just(ModelKind::Bernoulli),
                Just(ModelKind::Multinomial),
                Just(ModelKind::Complement)
            ],
            any::<bool>(),
            prop_oneof![Just(0.1), Just(1.0)],
            0u64..4,
            prop_oneof![
                Just(DfBound::Proportion(1.0)),
                Just(DfBound::Proportion(0.9))
            ],
            0u64..6,
        )
            .prop_map(|(model, binary, alpha, min_df, max_df, max_features)| {
                TrainOptions {
                    model,
                    vectorizer: VectorizerOptions {
                        min_df: DfBound::Count(min_df),
                        max_df,
                        max_features,
                        binary: binary || model == ModelKind::Bernoulli,
                    },
                    calibrate_folds: None,
                    alpha,
                    run: run(),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn sharded_counts_merged_in_any_tree_train_the_same_bytes(
            rows in rows(),
            cuts in proptest::collection::vec(0usize..30, 0..4),
            order in any::<u64>(),
            options in options(),
            counts_binary in any::<bool>(),
        ) {
            let test = dataset(
                &[("aa bb".into(), "ham".into()), ("cc ünï".into(), "spam".into())],
                "t".repeat(64),
            );
            // The shards: contiguous runs of rows, some possibly empty,
            // each counted as `count` counts a file of its own.
            let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(rows.len())).collect();
            bounds.extend([0, rows.len()]);
            bounds.sort_unstable();
            // `count --binary` stands for `train --binary` (a no-op for
            // Bernoulli NB, whose features are always binary).
            let settings = CountSettings::new(counts_binary, None);
            let mut shas = Vec::new();
            let mut shards: Vec<Counts> = bounds
                .windows(2)
                .enumerate()
                .map(|(i, w)| {
                    let sha = crate::fsio::sha256_hex(&i.to_le_bytes());
                    shas.push(sha.clone());
                    let mut c = Counter::new(settings.clone());
                    for (t, l) in &rows[w[0]..w[1]] {
                        c.add(t, l, 0).unwrap();
                    }
                    c.finish(vec![sha])
                })
                .collect();
            let mut state = order;
            while shards.len() > 1 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let a = shards.swap_remove((state >> 33) as usize % shards.len());
                let b = shards.swap_remove((state >> 17) as usize % shards.len());
                shards.push(a.merge(&b).unwrap());
            }
            let total = shards.pop().unwrap();
            let mut train_options = options.clone();
            train_options.vectorizer.binary = counts_binary || options.model == ModelKind::Bernoulli;
            let data = dataset(&rows, combined_sha256(&shas));
            let trained = train(&data, Some(&test), &train_options, |_, _| {});
            let merged = train_counts(&total, &test, &options);
            match (trained, merged) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a.file_bytes(), b.file_bytes()),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => prop_assert!(false, "train {:?} but merge {:?}", a.err(), b.err()),
            }
        }
    }
}
