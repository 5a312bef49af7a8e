//! The model in service: read from `model.path` (a file or the registry)
//! with the servers' limits, scored on a retrain's holdout, and kept so a
//! promotion never destroys the only copy of a loadable model.

use std::future::Future;
use std::path::Path;

use crate::artifact::{open_regular, read_capped, Artifact, ArtifactError, LoadedModel};
use crate::classifier::{evaluate, Evaluation};
use crate::dataset::Dataset;
use crate::mlflow::{fetch_model, MlflowClient, MlflowError, ModelVersion};
use crate::settings::{ModelSource, Settings};
use crate::training::{evaluate_on, TrainError};

use super::judge::{CurrentReport, Scores};
use super::store::Keep;

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
    /// No runtime to ask the registry from.
    #[error("cannot start the registry client: {0}")]
    Runtime(std::io::Error),
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

/// Runs `future` to completion on a runtime of its own: the use cases are
/// called from synchronous code (the command line), and only their
/// registry calls need one.
pub(super) fn block_on<F: Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}

/// `model.path` with the client it is read through, built once.
pub(super) struct InService<'a> {
    settings: &'a Settings,
    registry: Option<MlflowClient>,
}

impl<'a> InService<'a> {
    /// The source `settings` configure (their registry client built here).
    pub(super) fn new(settings: &'a Settings) -> Result<Self, MlflowError> {
        Ok(Self {
            registry: settings.model.registry()?,
            settings,
        })
    }

    /// What `model.path` holds now, read with `model.max_bytes`.
    pub(super) fn read(&self) -> Result<SourceBytes, SourceError> {
        let max_bytes = self.settings.model.max_bytes;
        match &self.settings.model.path {
            ModelSource::File(path) => read_model_file(path, max_bytes),
            ModelSource::Registry(uri) => {
                let fetched = block_on(fetch_model(self.registry.as_ref(), uri, max_bytes))
                    .map_err(SourceError::Runtime)?;
                let (version, bytes) = fetched?;
                Ok(SourceBytes {
                    bytes,
                    registry_version: Some(version),
                })
            }
        }
    }
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

/// A valid model in service, kept for rollback when it is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptModel {
    /// Its artifact file's bytes.
    pub bytes: Vec<u8>,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
}

impl KeptModel {
    /// As the store keeps it.
    pub fn as_keep(&self) -> Keep<'_> {
        Keep {
            bytes: &self.bytes,
            name: &self.name,
            version: &self.version,
        }
    }
}

/// The model in service as a retrain sees it: its scores on the holdout
/// (or why there are none) and what is kept of it.
#[derive(Debug)]
pub(super) struct Current {
    /// Its description and scores, when it loaded and could be scored.
    pub report: Option<CurrentReport>,
    /// Why `report` is `None`.
    pub error: Option<String>,
    /// The model, when it is a valid artifact.
    pub kept: Option<KeptModel>,
    /// It is a valid artifact that scores every text as the candidate does.
    pub identical: bool,
}

impl Current {
    /// Reads the model `source` holds and scores it on `holdout`.
    pub(super) fn read(source: &InService, holdout: &Dataset, candidate: &Artifact) -> Self {
        let path = &source.settings.model.path;
        let failed = |e: String, kept, identical| Current {
            report: None,
            error: Some(format!("{path}: {e}")),
            kept,
            identical,
        };
        let src = match source.read() {
            Ok(src) => src,
            Err(e) => return failed(e.to_string(), None, false),
        };
        let model = match Artifact::load_bytes(&src.bytes) {
            Ok(model) => model,
            Err(e) => return failed(e.to_string(), None, false),
        };
        // `load_bytes` validated these bytes, so they parse as an artifact.
        let identical = serde_json::from_slice::<Artifact>(&src.bytes)
            .is_ok_and(|current| candidate.predicts_like(&current));
        let id = &model.meta.model;
        // A valid model in service is kept for rollback even when it cannot
        // be scored on this holdout (e.g. it lacks one of its labels):
        // promoting must never destroy the only copy of a loadable model.
        let kept = Some(KeptModel {
            bytes: src.bytes,
            name: id.name.clone(),
            version: id.version.clone(),
        });
        match score_in_service(&model, holdout) {
            Err(e) => failed(
                format!("cannot be scored on the holdout: {e}"),
                kept,
                identical,
            ),
            Ok((evaluation, missing_labels)) => Current {
                report: Some(CurrentReport {
                    source: path.to_string(),
                    name: id.name.clone(),
                    version: id.version.clone(),
                    registry_version: src.registry_version.map(|v| v.version),
                    missing_labels,
                    holdout: Scores::from(&evaluation),
                }),
                error: None,
                kept,
                identical,
            },
        }
    }
}
