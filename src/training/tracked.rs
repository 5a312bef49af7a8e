//! One MLflow run recording a fitted model, as every command that fits one
//! logs it (`train`, `tune`, `retrain`) and as the server logs a promoted
//! challenger: its params, metrics and tags, the artifact file and the
//! evaluation table, and a registered model version made from it.

use crate::artifact::Artifact;
use crate::mlflow::{
    MlflowClient, MlflowError, ModelVersion, RunInfo, RunStatus, MODEL_DIR, MODEL_FILE,
};

use super::{Tracking, TrainingFacts};

/// A started run on a tracking server.
#[derive(Debug, Clone)]
pub struct ModelRun {
    client: MlflowClient,
    run: RunInfo,
}

impl ModelRun {
    /// Starts a run named `run_name` in `experiment` (created when missing),
    /// with `tags`.
    pub async fn start(
        client: MlflowClient,
        experiment: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<Self, MlflowError> {
        let experiment = client.experiment_id(experiment).await?;
        let run = client.create_run(&experiment, run_name, tags).await?;
        Ok(Self { client, run })
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run.run_id
    }

    /// Logs params, metrics and tags describing `artifact`, then uploads the
    /// artifact's exact file bytes and its evaluation table.
    pub async fn log_model(
        &self,
        artifact: &Artifact,
        facts: &TrainingFacts<'_>,
    ) -> Result<(), MlflowError> {
        let (params, metrics, tags) = describe(artifact, facts);
        let evaluation = artifact
            .evaluation
            .as_ref()
            .map(|e| e.to_table())
            .unwrap_or_default();
        let id = &self.run.run_id;
        self.client.log_batch(id, &params, &metrics, &tags).await?;
        let file = format!("{MODEL_DIR}/{MODEL_FILE}");
        self.client
            .upload_artifact(&self.run, &file, artifact.file_bytes())
            .await?;
        self.client
            .upload_artifact(&self.run, "evaluation.txt", evaluation.into_bytes())
            .await
            .map(drop)
    }

    /// Registers a new version of `name` (created when missing) from this
    /// run's logged model.
    pub async fn register(&self, name: &str) -> Result<ModelVersion, MlflowError> {
        let source = format!(
            "{}/{MODEL_DIR}",
            self.run.artifact_uri.trim_end_matches('/')
        );
        self.client.ensure_registered_model(name).await?;
        self.client
            .create_model_version(name, &source, &self.run.run_id)
            .await
    }

    /// Logs extra metrics and tags (an outcome: a retrain's verdict, a
    /// promotion's origin).
    pub async fn log_outcome(
        &self,
        metrics: &[(String, f64)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        self.client
            .log_batch(&self.run.run_id, &[], metrics, tags)
            .await
    }

    /// Points `alias` of the registered model `name` at `version`.
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        self.client.set_alias(name, alias, version).await
    }

    /// Ends the run: FINISHED, or FAILED with `error` as the
    /// `nbserve.error` tag. Best effort: the caller's own outcome is what
    /// is reported.
    pub async fn finish(&self, error: Option<&str>) {
        let id = &self.run.run_id;
        let status = match error {
            None => RunStatus::Finished,
            Some(e) => {
                let _ = self.client.set_tag(id, "nbserve.error", e).await;
                RunStatus::Failed
            }
        };
        let _ = self.client.end_run(id, status).await;
    }
}

/// A [`ModelRun`] as the synchronous [`Tracking`] the use cases take: each
/// call runs to completion on `handle`, so it must be made from a thread
/// that is none of the runtime's async workers (the command line's main
/// thread, or a blocking task of the server).
#[derive(Debug, Clone)]
pub struct BlockingRun {
    handle: tokio::runtime::Handle,
    run: ModelRun,
}

impl BlockingRun {
    /// `run`, driven on `handle`.
    pub fn new(handle: tokio::runtime::Handle, run: ModelRun) -> Self {
        Self { handle, run }
    }

    /// The run.
    pub fn run(&self) -> &ModelRun {
        &self.run
    }
}

impl Tracking for BlockingRun {
    fn run_id(&self) -> &str {
        self.run.run_id()
    }

    fn log_model(&self, artifact: &Artifact, facts: &TrainingFacts) -> Result<(), MlflowError> {
        self.handle.block_on(self.run.log_model(artifact, facts))
    }

    fn register(&self, name: &str) -> Result<ModelVersion, MlflowError> {
        self.handle.block_on(self.run.register(name))
    }

    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), MlflowError> {
        self.handle
            .block_on(self.run.set_alias(name, alias, version))
    }

    fn log_outcome(
        &self,
        metrics: &[(String, f64)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        self.handle.block_on(self.run.log_outcome(metrics, tags))
    }
}

type Pairs = Vec<(String, String)>;

/// MLflow accepts letters, digits, `_ - . space /` in keys; anything else in
/// a class label becomes `_`.
fn metric_key(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || "_-. /".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Params, metrics and tags of a trained artifact.
/// Each grid axis's distinct values, e.g. `model=bernoulli alpha=0.01,0.1 min_df=1,2`
/// (MLflow params are capped at 6,000 characters; the full table is in the artifact).
fn grid_summary(t: &crate::classifier::TuningReport) -> String {
    fn distinct(values: impl Iterator<Item = String>) -> String {
        let mut seen: Vec<String> = Vec::new();
        for v in values {
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        seen.join(",")
    }
    let points = || t.results.iter().map(|r| &r.params);
    let summary = format!(
        "model={} binary={} alpha={} min_df={} max_df={} max_features={}",
        distinct(points().map(|p| p.model.to_string())),
        distinct(points().map(|p| p.binary.to_string())),
        distinct(points().map(|p| p.alpha.to_string())),
        distinct(points().map(|p| p.min_df.to_string())),
        distinct(points().map(|p| p.max_df.to_string())),
        distinct(points().map(|p| p.max_features.to_string())),
    );
    summary.chars().take(6000).collect()
}

fn describe(a: &Artifact, facts: &TrainingFacts) -> (Pairs, Vec<(String, f64)>, Pairs) {
    let t = &a.training;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "none".to_owned());
    let v = &t.vectorizer;
    let mut params: Pairs = [
        ("model", t.model_kind().to_string()),
        ("alpha", t.alpha.to_string()),
        ("vectorizer.min_df", opt(v.min_df.map(|d| d.to_string()))),
        ("vectorizer.max_df", opt(v.max_df.map(|d| d.to_string()))),
        (
            "vectorizer.max_features",
            opt(v.max_features.map(|m| m.to_string())),
        ),
        ("vectorizer.lowercase", t.vectorizer.lowercase.to_string()),
        (
            "vectorizer.token_pattern",
            t.vectorizer.token_pattern.clone(),
        ),
        ("vectorizer.binary", t.vectorizer.binary.to_string()),
        ("seed", opt(t.seed.map(|s| s.to_string()))),
        ("test_size", opt(t.test_size.map(|s| s.to_string()))),
        ("evaluated_on", t.evaluated_on.clone()),
        ("dataset.sha256", a.dataset.sha256.clone()),
        ("dataset.documents", a.dataset.documents.to_string()),
        ("dataset.bytes", facts.dataset_bytes.to_string()),
        ("dataset.test_sha256", opt(a.dataset.test_sha256.clone())),
        ("vocabulary_size", a.vocabulary.len().to_string()),
        ("nbserve_version", env!("CARGO_PKG_VERSION").to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(c) = &a.calibration {
        params.push(("calibration.method".into(), c.method.clone()));
        params.push(("calibration.folds".into(), c.folds.to_string()));
        params.push(("calibration.temperature".into(), c.temperature.to_string()));
    }
    let mut metrics = vec![("training_seconds".to_owned(), facts.training_seconds)];
    if let Some(tuning) = &a.tuning {
        params.push(("tune.folds".into(), tuning.folds.to_string()));
        params.push(("tune.scoring".into(), tuning.scoring.clone()));
        params.push(("tune.grid_points".into(), tuning.results.len().to_string()));
        params.push(("tune.grid".into(), grid_summary(tuning)));
        if let Some(best) = tuning.results.get(tuning.best) {
            for (name, ms) in [
                ("f1_macro", &best.f1_macro),
                ("balanced_accuracy", &best.balanced_accuracy),
                ("accuracy", &best.accuracy),
            ] {
                metrics.push((format!("cv.{name}.mean"), ms.mean));
                metrics.push((format!("cv.{name}.std"), ms.std));
            }
        }
    }
    if let Some(e) = &a.evaluation {
        metrics.extend([
            ("f1_macro".to_owned(), e.f1_macro),
            ("balanced_accuracy".to_owned(), e.balanced_accuracy),
            ("accuracy".to_owned(), e.accuracy),
        ]);
        let optional = [
            ("brier_score", e.brier_score),
            ("ece", e.ece),
            ("brier_score_uncalibrated", e.brier_score_uncalibrated),
            ("ece_uncalibrated", e.ece_uncalibrated),
        ];
        metrics.extend(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))),
        );
        for c in &e.per_class {
            let label = metric_key(&c.label);
            metrics.extend([
                (format!("precision.{label}"), c.precision),
                (format!("recall.{label}"), c.recall),
                (format!("f1.{label}"), c.f1),
            ]);
        }
    }
    let tags = vec![
        ("nbserve.model_name".to_owned(), a.model.name.clone()),
        ("nbserve.model_version".to_owned(), a.model.version.clone()),
        ("nbserve.checksum".to_owned(), a.checksum.clone()),
        ("nbserve.command".to_owned(), facts.command.to_owned()),
    ];
    (params, metrics, tags)
}
