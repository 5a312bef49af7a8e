//! Gated loading, shared by start-up and reload: an artifact becomes a
//! [`ServingModel`] only once it validates and passes the gate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::artifact::{Artifact, ArtifactError, LoadedModel, ModelMeta};
use crate::dataset::{Dataset, DatasetError};
use crate::gate::{gate, GateError, GatePass};
use crate::mlflow::{MlflowClient, MlflowError, ModelUri, ModelVersion};
use crate::monitoring::ModelProfile;
use crate::settings::GateSettings;

/// A model that passed validation and the gate.
pub struct ServingModel {
    /// Classifier and description.
    pub loaded: LoadedModel,
    /// The gate's verdict.
    pub gate: GatePass,
    /// When it was loaded.
    pub loaded_at: DateTime<Utc>,
    /// Its source: a file or a `models:/` URI (reloads without a path
    /// re-read it; polling watches it).
    pub path: PathBuf,
    /// What the source held when it was read: the file's sha256, or the
    /// registry version. A source whose fingerprint moves has changed.
    pub fingerprint: String,
    /// The registry version it was resolved to (`models:/` sources only).
    pub registry_version: Option<ModelVersion>,
    /// What remembered predictions need to know about this model.
    pub profile: Arc<ModelProfile>,
}

/// Why a model could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The artifact is invalid.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The gate rejected it.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// The configured holdout file is unusable.
    #[error(transparent)]
    Holdout(#[from] DatasetError),
    /// The model registry could not be asked or did not provide the model.
    #[error(transparent)]
    Registry(#[from] MlflowError),
}

impl LoadError {
    /// A client-safe explanation: no file paths or OS details.
    pub fn public_message(&self) -> String {
        match self {
            LoadError::Artifact(ArtifactError::Io { source, .. }) => {
                format!("model file cannot be read ({})", source.kind())
            }
            LoadError::Holdout(_) => "the configured holdout file cannot be used".to_owned(),
            LoadError::Registry(_) => "the model registry did not provide the model".to_owned(),
            other => other.to_string(),
        }
    }
}

/// The `models:/` URI `path` spells, if it is one.
pub fn model_uri(path: &Path) -> Option<Result<ModelUri, MlflowError>> {
    let s = path.to_str().filter(|s| ModelUri::is_model_uri(s))?;
    Some(ModelUri::parse(s))
}

/// Loads and gates the model at `source` — a file (read on the blocking
/// pool, so the async workers keep serving) or a `models:/` URI resolved
/// and downloaded through `registry`.
pub async fn load_source(
    source: PathBuf,
    settings: GateSettings,
    registry: Option<&MlflowClient>,
) -> Result<ServingModel, LoadError> {
    let (bytes, version) = match model_uri(&source) {
        None => (None, None),
        Some(uri) => {
            let uri = uri?;
            let client = registry.ok_or_else(|| MlflowError::NoTrackingUri(uri.to_string()))?;
            let version = client.resolve(&uri).await?;
            (
                Some(client.download_model_file(&version).await?),
                Some(version),
            )
        }
    };
    tokio::task::spawn_blocking(move || {
        let result = match bytes {
            None => load_file(&source, &settings),
            Some(bytes) => {
                let version = version.expect("downloaded with its version");
                let fingerprint = version.version.clone();
                let result = gate_bytes(bytes, &settings, source, fingerprint);
                result.map(|m| ServingModel {
                    registry_version: Some(version),
                    ..m
                })
            }
        };
        release_freed_memory();
        result
    })
    .await
    .expect("model loading does not panic")
}

/// The sha256 (hex) of file content: a file source's fingerprint.
pub fn content_fingerprint(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Loads, validates and gates the artifact at `path` (blocking: call from
/// `spawn_blocking` inside the runtime, e.g. [`load_source`]).
///
/// Loading the shipped 2.6 MB artifact frees ~4 MB of parsed data (110k term
/// strings, the counts) among the ~6 MB of scoring tables that stay. The
/// allocator would keep those freed pages resident in the loading thread's
/// arena, where serving never reuses them, so they are handed back to the OS
/// here, whether or not the model was accepted.
pub fn load_gated(path: &Path, settings: &GateSettings) -> Result<ServingModel, LoadError> {
    let result = load_file(path, settings);
    release_freed_memory();
    result
}

fn load_file(path: &Path, settings: &GateSettings) -> Result<ServingModel, LoadError> {
    std::fs::read(path)
        .map_err(|source| {
            LoadError::Artifact(ArtifactError::Io {
                path: path.to_owned(),
                source,
            })
        })
        .and_then(|bytes| {
            let fingerprint = content_fingerprint(&bytes);
            gate_bytes(bytes, settings, path.to_owned(), fingerprint)
        })
}

/// Returns free memory held by the allocator (all arenas) to the OS.
fn release_freed_memory() {
    // glibc's malloc returns freed pages only from the top of an arena, and
    // only past a threshold that freeing large blocks raises (to ~6 MB after
    // a load); `malloc_trim` releases every whole free page. Elsewhere this
    // does nothing.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers; it only walks glibc's own
    // allocator state, under the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn gate_bytes(
    bytes: Vec<u8>,
    settings: &GateSettings,
    source: PathBuf,
    fingerprint: String,
) -> Result<ServingModel, LoadError> {
    let loaded = Artifact::load_owned(bytes)?;
    let holdout = settings
        .holdout_path
        .as_deref()
        .map(Dataset::holdout)
        .transpose()?;
    let pass = gate(&loaded, settings.min_f1_macro, holdout.as_ref())?;
    let profile = Arc::new(profile(&loaded.meta));
    Ok(ServingModel {
        loaded,
        gate: pass,
        loaded_at: Utc::now(),
        path: source,
        fingerprint,
        registry_version: None,
        profile,
    })
}

/// Version, classes and their share of the training data.
fn profile(meta: &ModelMeta) -> ModelProfile {
    let counts = &meta.dataset.class_counts;
    let total: u64 = counts.values().sum();
    let prior = meta
        .classes
        .iter()
        .map(|c| {
            let n = counts.get(c).copied().unwrap_or(0);
            if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            }
        })
        .collect();
    ModelProfile {
        version: meta.model.version.clone(),
        classes: meta.classes.clone(),
        prior,
    }
}
