//! Retraining: merge the base data and the feedback logs, fit with the
//! cross-validated tuning, judge the candidate on a fixed holdout against
//! the minimum and against the model in service, and promote it (or roll
//! back) without ever leaving `model.path` half-written.
//!
//! The pieces are small and separate so the command line can sequence them
//! (and track them in MLflow): [`merge`] (pure), [`judge`] (pure gates and
//! the report), [`store`] (kept versions, history, lock, atomic writes), and
//! here the loading of the model in service from any source `model.path`
//! accepts, with the server's limits.

pub mod judge;
pub mod merge;
pub mod store;

use std::path::Path;

use crate::artifact::{open_regular, read_capped, Artifact, ArtifactError, LoadedModel};
use crate::classifier::{evaluate, Evaluation};
use crate::dataset::{Dataset, DatasetError};
use crate::gate::{gate, GateError, GatePass};
use crate::mlflow::{fetch_model, MlflowClient, MlflowError, ModelUri, ModelVersion};
use crate::settings::GateSettings;
use crate::training::{evaluate_on, TrainError};

/// A model read from its source, not yet validated.
#[derive(Debug, Clone)]
pub struct SourceBytes {
    /// The artifact file's bytes.
    pub bytes: Vec<u8>,
    /// The registry version a `models:/` source resolved to.
    pub registry_version: Option<ModelVersion>,
}

/// Why a model source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file is missing, unreadable, not regular or too large.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The registry could not be asked or did not provide the model.
    #[error(transparent)]
    Registry(#[from] MlflowError),
}

/// Reads the model file at `path` as the server does: one open handle, a
/// regular file, at most `max_bytes` (`model.max_bytes`).
pub fn read_model_file(path: &Path, max_bytes: u64) -> Result<SourceBytes, SourceError> {
    let file = open_regular(path)?;
    Ok(SourceBytes {
        bytes: read_capped(file, path, max_bytes)?,
        registry_version: None,
    })
}

/// Resolves a `models:/` URI and downloads its model file, refusing one
/// over `max_bytes` (`model.max_bytes`) as the server does.
pub async fn read_registry_model(
    uri: &ModelUri,
    registry: Option<&MlflowClient>,
    max_bytes: u64,
) -> Result<SourceBytes, SourceError> {
    let (version, bytes) = fetch_model(registry, uri, max_bytes).await?;
    Ok(SourceBytes {
        bytes,
        registry_version: Some(version),
    })
}

/// Scores the model in service on `holdout` as it serves: every document
/// is predicted and counts. A holdout label the model lacks is a class it
/// can never predict — its documents count as errors — rather than a
/// reason to skip the comparison (a candidate much worse on the shared
/// classes would otherwise pass on the absolute gate alone). Returns the
/// evaluation and those labels, in order of first appearance.
pub fn score_in_service(
    model: &LoadedModel,
    holdout: &Dataset,
) -> Result<(Evaluation, Vec<String>), TrainError> {
    let classifier = &model.classifier;
    let mut classes: Vec<String> = classifier.classes().to_vec();
    let mut missing = Vec::new();
    for label in &holdout.labels {
        if !classes.contains(label) {
            classes.push(label.clone());
            missing.push(label.clone());
        }
    }
    if missing.is_empty() {
        return Ok((evaluate_on(classifier, holdout)?, missing));
    }
    let truth = holdout
        .label_indices(&classes)
        .map_err(TrainError::UnknownTestLabel)?;
    let predicted: Vec<usize> = holdout
        .texts
        .iter()
        .map(|t| classifier.predict(t).label)
        .collect();
    Ok((evaluate(&truth, &predicted, &classes)?, missing))
}

/// Why a model could not be scored on the holdout.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// Not a valid artifact.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The holdout cannot be scored by it (e.g. a label it lacks).
    #[error("cannot be scored on the holdout: {0}")]
    Holdout(#[from] TrainError),
}

/// Why a model may not be put in service.
#[derive(Debug, thiserror::Error)]
pub enum LoadRefusal {
    /// Not a valid artifact.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// `gate.holdout_path` cannot be read.
    #[error(transparent)]
    Holdout(#[from] DatasetError),
    /// The gate said no (or its threshold is invalid).
    #[error(transparent)]
    Gate(#[from] GateError),
}

/// Validates `bytes` and gates them exactly as a server load does: within
/// `gate.max_memory_bytes`, the minimum `gate.min_f1_macro`, re-evaluated on
/// `gate.holdout_path` when set, else the stored evaluation.
pub fn gate_like_load(
    bytes: &[u8],
    settings: &GateSettings,
) -> Result<(LoadedModel, GatePass), LoadRefusal> {
    let model = Artifact::load_bytes_within(bytes, settings.max_memory_bytes)?;
    let holdout = settings
        .holdout_path
        .as_deref()
        .map(Dataset::holdout)
        .transpose()?;
    let pass = gate(&model, settings.min_f1_macro, holdout.as_ref())?;
    Ok((model, pass))
}
