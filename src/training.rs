//! Training pipeline: dataset → split → fit → evaluate → sealed artifact.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::artifact::{
    Artifact, DatasetFingerprint, ModelId, TrainingParams, VectorizerSpec, FORMAT, SCHEMA_VERSION,
};
use crate::classifier::{
    evaluate, stratified_split, tokenizer, BernoulliNb, Classifier, Evaluation, EvaluationError,
    ModelError, NbParameters, SplitError, Vocabulary,
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

/// Learns the vocabulary and counts from texts with label indices.
///
/// `progress(done, total)` is called every 1,000 documents and at the end.
pub fn fit<S: AsRef<str>>(
    texts: &[S],
    labels: &[usize],
    n_classes: usize,
    alpha: f64,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vocabulary, NbParameters), ModelError> {
    crate::classifier::validate_alpha(alpha)?;
    let total = texts.len();
    let mut buf = String::new();
    let docs_tokens: Vec<Vec<String>> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if (i + 1) % 1000 == 0 {
                progress(i + 1, total);
            }
            tokenizer::lowercase_into(t.as_ref(), &mut buf);
            let mut toks = Vec::new();
            tokenizer::for_each_token(&buf, |tok| toks.push(tok.to_owned()));
            toks.sort_unstable();
            toks.dedup();
            toks
        })
        .collect();
    progress(total, total);
    let vocabulary = Vocabulary::learn(docs_tokens.iter().flatten().map(String::as_str));
    let docs: Vec<Vec<u32>> = docs_tokens
        .iter()
        .map(|toks| {
            toks.iter()
                .map(|t| vocabulary.get(t).expect("learnt from these tokens"))
                .collect()
        })
        .collect();
    let params = NbParameters::fit(&docs, labels, n_classes, vocabulary.len(), alpha)?;
    Ok((vocabulary, params))
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
    let all_labels = data
        .label_indices(&classes)
        .expect("classes come from these labels");
    let (train_set, test_set, evaluated_on, test_size, seed) = match test {
        Some(t) => (data.clone(), t.clone(), "test_file", None, None),
        None => {
            let split = stratified_split(&all_labels, &classes, options.test_size, options.seed)?;
            (
                data.subset(&split.train),
                data.subset(&split.test),
                "stratified_split",
                Some(options.test_size),
                Some(options.seed),
            )
        }
    };
    let train_labels = train_set
        .label_indices(&classes)
        .expect("subset of the same labels");
    let (vocabulary, parameters) = fit(
        &train_set.texts,
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
    let evaluation = evaluate_on(&classifier, &test_set)?;
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
            test_size,
            seed,
            evaluated_on: evaluated_on.to_owned(),
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
