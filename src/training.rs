//! Training pipeline: dataset → split → fit → evaluate → sealed artifact.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::artifact::{
    Artifact, DatasetFingerprint, ModelId, TrainingParams, VectorizerSpec, FORMAT, SCHEMA_VERSION,
};
use crate::classifier::{
    evaluate, fit, stratified_split, BernoulliNb, Classifier, Evaluation, EvaluationError,
    ModelError, SplitError,
};
use crate::dataset::Dataset;

/// Options for [`train`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Smoothing.
    pub alpha: f64,
    /// Held-out share for the stratified split (ignored with a test file).
    pub test_size: f64,
    /// Split seed (ignored with a test file).
    pub seed: u64,
    /// Model name.
    pub name: String,
    /// Model version; defaults to the creation time as `YYYY.MM.DD-HHMMSS`.
    pub version: Option<String>,
    /// Creation time recorded in the artifact (fixed in tests for reproducibility).
    pub created_at: DateTime<Utc>,
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Split problem.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// Model problem (alpha, classes).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Every training document has the same label.
    #[error("every training document has the label {0:?}; at least 2 classes are needed")]
    OneClass(String),
    /// A test label the training data never had.
    #[error("label {0:?} appears in the test data but not in the training data")]
    UnknownTestLabel(String),
    /// Evaluation problem.
    #[error(transparent)]
    Evaluation(#[from] EvaluationError),
}

/// Scores `data` with `classifier` against its labels.
pub fn evaluate_on(classifier: &Classifier, data: &Dataset) -> Result<Evaluation, TrainError> {
    let truth = data
        .label_indices(classifier.classes())
        .map_err(TrainError::UnknownTestLabel)?;
    let predicted: Vec<usize> = data
        .texts
        .iter()
        .map(|t| classifier.predict(t).label)
        .collect();
    Ok(evaluate(&truth, &predicted, classifier.classes())?)
}

/// Where the evaluation documents came from, as the artifact records it.
struct Holdout {
    train: Dataset,
    test: Dataset,
    evaluated_on: &'static str,
    test_size: Option<f64>,
    seed: Option<u64>,
}

/// `test` when given, else a stratified split of `data`.
fn hold_out(
    data: &Dataset,
    test: Option<&Dataset>,
    classes: &[String],
    options: &TrainOptions,
) -> Result<Holdout, TrainError> {
    Ok(match test {
        Some(t) => Holdout {
            train: data.clone(),
            test: t.clone(),
            evaluated_on: "test_file",
            test_size: None,
            seed: None,
        },
        None => {
            let labels = data
                .label_indices(classes)
                .expect("classes come from these labels");
            let split = stratified_split(&labels, classes, options.test_size, options.seed)?;
            Holdout {
                train: data.subset(&split.train),
                test: data.subset(&split.test),
                evaluated_on: "stratified_split",
                test_size: Some(options.test_size),
                seed: Some(options.seed),
            }
        }
    })
}

/// Trains on `data` and evaluates on `test` when given, else on a stratified
/// split of `data`; returns a sealed artifact.
pub fn train(
    data: &Dataset,
    test: Option<&Dataset>,
    options: &TrainOptions,
    progress: impl FnMut(usize, usize),
) -> Result<Artifact, TrainError> {
    crate::classifier::validate_alpha(options.alpha)?;
    let classes = data.classes();
    if let [only] = classes.as_slice() {
        return Err(TrainError::OneClass(only.clone()));
    }
    let sets = hold_out(data, test, &classes, options)?;
    let train_labels = sets
        .train
        .label_indices(&classes)
        .expect("subset of the same labels");
    let (vocabulary, parameters) = fit(
        &sets.train.texts,
        &train_labels,
        classes.len(),
        options.alpha,
        progress,
    )?;
    let classifier = Classifier::new(
        classes.clone(),
        vocabulary.clone(),
        BernoulliNb::new(&parameters)?,
    )?;
    let evaluation = evaluate_on(&classifier, &sets.test)?;
    let mut class_counts = BTreeMap::new();
    for l in &data.labels {
        *class_counts.entry(l.clone()).or_insert(0u64) += 1;
    }
    let version = options
        .version
        .clone()
        .unwrap_or_else(|| options.created_at.format("%Y.%m.%d-%H%M%S").to_string());
    let mut artifact = Artifact {
        format: FORMAT.to_owned(),
        schema_version: SCHEMA_VERSION,
        model: ModelId {
            name: options.name.clone(),
            version,
        },
        created_at: options
            .created_at
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        training: TrainingParams {
            alpha: options.alpha,
            test_size: sets.test_size,
            seed: sets.seed,
            evaluated_on: sets.evaluated_on.to_owned(),
            vectorizer: VectorizerSpec::default(),
        },
        dataset: DatasetFingerprint {
            sha256: data.sha256.clone(),
            documents: data.len() as u64,
            class_counts,
            test_sha256: test.map(|t| t.sha256.clone()),
        },
        classes,
        evaluation: Some(evaluation),
        vocabulary: vocabulary.iter().map(str::to_owned).collect(),
        parameters,
        checksum: String::new(),
    };
    artifact.seal();
    Ok(artifact)
}
