//! Training pipeline: dataset → split → count → fit → evaluate → sealed
//! artifact; and the same from counts made elsewhere ([`counts`]).

pub mod counts;
mod tracked;
mod tune;

pub use tracked::{BlockingRun, ModelRun};
pub use tune::{tune, TuneError, TuneOptions};

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::artifact::{
    Artifact, Calibration, DatasetFingerprint, ModelId, TrainingParams, VectorizerSpec, FORMAT,
    SCHEMA_VERSION,
};
use crate::classifier::{
    best, calibration, evaluate, stratified_split, Classifier, CountSettings, Counter, Counts,
    Evaluation, EvaluationError, Grid, GridPoint, ModelError, ModelKind, NaiveBayes, NbParameters,
    ParamError, SplitError, TrainParams, TuningReport, VectorizerOptions, Vocabulary,
};
use crate::dataset::Dataset;
use crate::mlflow::{MlflowError, ModelVersion};
use crate::tuning::{fit_counts, CrossValidation, CvError, FoldRule};

/// Options for [`train`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Which naive Bayes.
    pub model: ModelKind,
    /// Vectorizer options (`binary` is forced on for Bernoulli NB).
    pub vectorizer: VectorizerOptions,
    /// Fit a calibration temperature on this many cross-validation folds.
    pub calibrate_folds: Option<u32>,
    /// Smoothing.
    pub alpha: f64,
    /// Split, naming and creation time.
    pub run: RunOptions,
}

/// What `train` and `tune` share: the held-out split and the model's name.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Held-out share for the stratified split (ignored with a test file).
    pub test_size: f64,
    /// Split seed (ignored with a test file); also seeds cross-validation folds.
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
    /// A parameter out of its range, or one this data cannot support.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// Model problem (classes, counts).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Every training document has the same label.
    #[error("every training document has the label {0:?}; at least 2 classes are needed")]
    OneClass(String),
    /// Vocabulary selection, fitting or cross-validation problem (a
    /// `min_df` / `max_df` that selects nothing, too many folds, ...).
    #[error("{0}")]
    Fit(String),
    /// A class label, the model name or its version is one no served
    /// model may have (see [`crate::artifact::name_problem`]).
    #[error("{what} {problem}")]
    Unservable {
        /// `a class label`, `the model name` or `the model version`.
        what: &'static str,
        /// What is wrong, without quoting it.
        problem: String,
    },
    /// A test label the training data never had.
    #[error("label {0:?} appears in the test data but not in the training data")]
    UnknownTestLabel(String),
    /// Evaluation problem.
    #[error(transparent)]
    Evaluation(#[from] EvaluationError),
}

impl From<CvError> for TrainError {
    fn from(e: CvError) -> Self {
        match e {
            CvError::Param(p) => TrainError::Param(p),
            CvError::Data(m) => TrainError::Fit(m),
        }
    }
}

impl TrainOptions {
    /// The ranged parameters of this fit; `split` when it evaluates on a
    /// random split rather than a test file.
    pub fn params(&self, split: bool) -> TrainParams {
        TrainParams {
            alpha: self.alpha,
            vectorizer: self.vectorizer,
            test_size: split.then_some(self.run.test_size),
            folds: self.calibrate_folds,
            temperature: None,
        }
    }
}

/// Scores `data` with `classifier` against its labels.
pub fn evaluate_on(classifier: &Classifier, data: &Dataset) -> Result<Evaluation, TrainError> {
    let truth = data
        .label_indices(classifier.classes())
        .map_err(TrainError::UnknownTestLabel)?;
    let predictions: Vec<_> = data.texts.iter().map(|t| classifier.predict(t)).collect();
    let predicted: Vec<usize> = predictions.iter().map(|p| p.label).collect();
    let mut evaluation = evaluate(&truth, &predicted, classifier.classes())?;
    let probabilities: Vec<Vec<f64>> = predictions.iter().map(|p| p.probabilities()).collect();
    evaluation.brier_score = Some(calibration::brier_score(&probabilities, &truth));
    evaluation.ece = Some(calibration::expected_calibration_error(
        &probabilities,
        &truth,
    ));
    if classifier.temperature().is_some() {
        let raw: Vec<Vec<f64>> = data
            .texts
            .iter()
            .map(|t| classifier.predict_uncalibrated(t).probabilities())
            .collect();
        evaluation.brier_score_uncalibrated = Some(calibration::brier_score(&raw, &truth));
        evaluation.ece_uncalibrated = Some(calibration::expected_calibration_error(&raw, &truth));
    }
    Ok(evaluation)
}

/// The training and evaluation parts of a run: `test` when given, else a
/// stratified split of `data`. Borrowed when given whole, so a large
/// training set is never held twice.
pub(crate) struct Parts<'a> {
    /// Training documents.
    pub train: Cow<'a, Dataset>,
    /// Held-out documents.
    pub test: Cow<'a, Dataset>,
    /// `stratified_split` or `test_file`.
    pub evaluated_on: &'static str,
    /// Held-out share, for a split.
    pub test_size: Option<f64>,
    /// Split seed, for a split.
    pub seed: Option<u64>,
    /// The rows of `data` trained on, for a split (`None`: all of them).
    pub train_rows: Option<Vec<usize>>,
}

/// Splits as `train` does; `classes` are `data`'s classes (at least two).
pub(crate) fn parts<'a>(
    data: &'a Dataset,
    test: Option<&'a Dataset>,
    classes: &[String],
    test_size: f64,
    seed: u64,
) -> Result<Parts<'a>, TrainError> {
    if let [only] = classes {
        return Err(TrainError::OneClass(only.clone()));
    }
    if classes.len() < 2 {
        return Err(ModelError::TooFewClasses(classes.len()).into());
    }
    Ok(match test {
        Some(t) => Parts {
            train: Cow::Borrowed(data),
            test: Cow::Borrowed(t),
            evaluated_on: "test_file",
            test_size: None,
            seed: None,
            train_rows: None,
        },
        None => {
            let labels = data
                .label_indices(classes)
                .expect("classes come from these labels");
            let split = stratified_split(&labels, classes, test_size, seed)?;
            Parts {
                train: Cow::Owned(data.subset(&split.train)),
                test: Cow::Owned(data.subset(&split.test)),
                evaluated_on: "stratified_split",
                test_size: Some(test_size),
                seed: Some(seed),
                train_rows: Some(split.train),
            }
        }
    })
}

/// What a fitted model adds to an artifact besides its counts.
pub(crate) struct Fitted {
    /// Model name, version and creation time.
    pub run: RunOptions,
    /// The parameters the model was fitted with.
    pub point: GridPoint,
    /// The vocabulary.
    pub vocabulary: Vocabulary,
    /// The counts.
    pub parameters: NbParameters,
    /// The calibration, if fitted.
    pub calibration: Option<Calibration>,
    /// The search that chose `point`, for `tune`.
    pub tuning: Option<TuningReport>,
}

impl Fitted {
    /// A model fitted at `point` without a search (`train`, `merge`).
    pub(crate) fn untuned(
        run: RunOptions,
        point: GridPoint,
        (vocabulary, parameters): (Vocabulary, NbParameters),
        calibration: Option<Calibration>,
    ) -> Self {
        Self {
            run,
            point,
            vocabulary,
            parameters,
            calibration,
            tuning: None,
        }
    }

    /// What a search with `options` chose: `results[best]`, refitted as
    /// `refit`, with its temperature and the search's report.
    pub(crate) fn chosen(
        options: &TuneOptions,
        results: Vec<crate::classifier::CvResult>,
        best: usize,
        refit: (Vocabulary, NbParameters),
        calibration: Calibration,
    ) -> Self {
        let (vocabulary, parameters) = refit;
        Self {
            run: options.run.clone(),
            point: results[best].params,
            vocabulary,
            parameters,
            calibration: Some(calibration),
            tuning: Some(TuningReport {
                folds: options.folds,
                seed: options.run.seed,
                scoring: "f1_macro".into(),
                results,
                best,
            }),
        }
    }
}

/// Refuses, before anything is fitted, a label or name no served model may
/// have: what trains can be served.
pub(crate) fn servable_names(classes: &[String], run: &RunOptions) -> Result<(), TrainError> {
    let names = [
        ("the model name", Some(&run.name)),
        ("the model version", run.version.as_ref()),
    ];
    let names = names
        .into_iter()
        .filter_map(|(what, name)| Some((what, name?)));
    for (what, name) in names.chain(classes.iter().map(|c| ("a class label", c))) {
        if let Some(problem) = crate::artifact::name_problem(name) {
            return Err(TrainError::Unservable { what, problem });
        }
    }
    Ok(())
}

/// What an artifact says its model was trained and evaluated on.
pub(crate) struct Provenance<'a> {
    /// The training data's fingerprint.
    pub dataset: DatasetFingerprint,
    /// The held-out documents the model is evaluated on.
    pub test: &'a Dataset,
    /// `stratified_split` or `test_file`.
    pub evaluated_on: &'static str,
    /// Held-out share, for a split.
    pub test_size: Option<f64>,
    /// Split seed, for a split.
    pub seed: Option<u64>,
}

impl<'a> Provenance<'a> {
    /// A run on `data` (all of it: a split's parts are described by
    /// `parts`), with `test` when given.
    fn of(data: &Dataset, test: Option<&Dataset>, parts: &'a Parts) -> Self {
        let mut class_counts = BTreeMap::new();
        for l in &data.labels {
            *class_counts.entry(l.clone()).or_insert(0u64) += 1;
        }
        Self {
            dataset: DatasetFingerprint {
                sha256: data.sha256.clone(),
                documents: data.len() as u64,
                class_counts,
                test_sha256: test.map(|t| t.sha256.clone()),
            },
            test: &parts.test,
            evaluated_on: parts.evaluated_on,
            test_size: parts.test_size,
            seed: parts.seed,
        }
    }
}

/// Evaluates `fitted` on the provenance's test documents and seals the artifact.
pub(crate) fn seal_artifact(
    provenance: Provenance,
    classes: Vec<String>,
    fitted: Fitted,
) -> Result<Artifact, TrainError> {
    let point = fitted.point;
    let classifier = Classifier::new(
        classes.clone(),
        fitted.vocabulary.clone(),
        NaiveBayes::with_kind(point.model, point.binary, &fitted.parameters)?,
    )?
    .with_temperature(fitted.calibration.as_ref().map(|c| c.temperature));
    let evaluation = evaluate_on(&classifier, provenance.test)?;
    let run = fitted.run;
    let version = run
        .version
        .unwrap_or_else(|| run.created_at.format("%Y.%m.%d-%H%M%S").to_string());
    let mut artifact = Artifact {
        format: FORMAT.to_owned(),
        schema_version: SCHEMA_VERSION,
        model: ModelId {
            name: run.name,
            version,
        },
        created_at: run.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        training: TrainingParams {
            alpha: point.alpha,
            test_size: provenance.test_size,
            seed: provenance.seed,
            evaluated_on: provenance.evaluated_on.to_owned(),
            vectorizer: VectorizerSpec::new(&point.vectorizer()),
            model: Some(point.model),
        },
        dataset: provenance.dataset,
        classes,
        evaluation: Some(evaluation),
        calibration: fitted.calibration,
        tuning: fitted.tuning,
        mlflow_run_id: None,
        statistics: None,
        vocabulary: fitted.vocabulary.iter().map(str::to_owned).collect(),
        parameters: fitted.parameters,
        checksum: String::new(),
    };
    artifact.seal();
    Ok(artifact)
}

/// Counts the documents of `data` as `train` does: occurrences too (so any
/// model can be fitted), no folds. `progress(done, total)` is called every
/// 1,000 documents and at the end.
pub fn count_dataset(data: &Dataset, mut progress: impl FnMut(usize, usize)) -> Counts {
    let mut counter = Counter::new(CountSettings::new(false, None));
    let total = data.len();
    for (i, (text, label)) in data.texts.iter().zip(&data.labels).enumerate() {
        counter
            .add(text, label, 0)
            .expect("fold 0 exists without folds");
        if (i + 1) % 1000 == 0 {
            progress(i + 1, total);
        }
    }
    progress(total, total);
    counter.finish(vec![data.sha256.clone()])
}

/// Trains on `data` and evaluates on `test` when given, else on a stratified
/// split of `data`; returns a sealed artifact.
pub fn train(
    data: &Dataset,
    test: Option<&Dataset>,
    options: &TrainOptions,
    progress: impl FnMut(usize, usize),
) -> Result<Artifact, TrainError> {
    Ok(train_counted(data, test, options, progress)?.0)
}

/// [`train`], also returning the counts of the documents fitted (all of
/// `data` with a test file, the training part of a split): what
/// [`Artifact::with_statistics`] stores for learning in place.
pub fn train_counted(
    data: &Dataset,
    test: Option<&Dataset>,
    options: &TrainOptions,
    progress: impl FnMut(usize, usize),
) -> Result<(Artifact, Counts), TrainError> {
    let params = options.params(test.is_none()).check()?;
    let params = params.get();
    let classes = data.classes();
    servable_names(&classes, &options.run)?;
    let parts = parts(
        data,
        test,
        &classes,
        options.run.test_size,
        options.run.seed,
    )?;
    let point = GridPoint {
        model: options.model,
        binary: params.vectorizer.binary || options.model == ModelKind::Bernoulli,
        alpha: params.alpha,
        min_df: params.vectorizer.min_df,
        max_df: params.vectorizer.max_df,
        max_features: params.vectorizer.max_features,
    };
    // Count, prune, fit: what `count` then `merge` do on shards.
    let counts = count_dataset(&parts.train, progress);
    debug_assert_eq!(counts.classes(), classes.as_slice());
    let (vocabulary, parameters) = fit_counts(&counts, &point)?;
    let calibration = match params.folds {
        Some(folds) => {
            let cv = CrossValidation::new(&parts.train, &classes, options.run.seed, |_, _| {});
            Some(cv.calibrate(&point, folds)?)
        }
        None => None,
    };
    let fitted = Fitted::untuned(
        options.run.clone(),
        point,
        (vocabulary, parameters),
        calibration,
    );
    let artifact = seal_artifact(Provenance::of(data, test, &parts), classes, fitted)?;
    Ok((artifact, counts))
}

/// What a fit reports to its tracking run besides the artifact itself.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingFacts<'a> {
    /// The command (`nbserve train`), for `mlflow.source.name`.
    pub command: &'a str,
    /// Size of the training inputs in bytes.
    pub dataset_bytes: u64,
    /// Wall time spent training and evaluating.
    pub training_seconds: f64,
}

impl<'a> TrainingFacts<'a> {
    /// The facts of `command`, trained from the files `data` since `started`.
    pub fn measured<'p>(
        command: &'a str,
        data: impl IntoIterator<Item = &'p Path>,
        started: Instant,
    ) -> Self {
        Self {
            command,
            dataset_bytes: data
                .into_iter()
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .sum(),
            training_seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// The experiment-tracking run a fit is recorded in (the command line's
/// MLflow run), as the library's use cases see it.
pub trait Tracking {
    /// The run's id (sealed into the artifact, named in reports).
    fn run_id(&self) -> &str;
    /// Logs params, metrics and tags describing `artifact`, and the
    /// artifact's file.
    fn log_model(&self, artifact: &Artifact, facts: &TrainingFacts) -> Result<(), MlflowError>;
    /// Registers a new version of `name` from the run's logged model.
    fn register(&self, name: &str) -> Result<ModelVersion, MlflowError>;
    /// Points `alias` of the registered model `name` at `version`.
    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), MlflowError>;
    /// Logs the metrics and tags of an outcome (a retrain's verdict).
    fn log_outcome(
        &self,
        metrics: &[(String, f64)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError>;
}
