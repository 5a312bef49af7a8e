//! Gated loading, shared by start-up and reload: an artifact becomes a
//! [`ServingModel`] only once it validates and passes the gate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::artifact::{Artifact, ArtifactError, LoadedModel, ModelMeta};
use crate::dataset::{Dataset, DatasetError};
use crate::gate::{gate, GateError, GatePass};
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
    /// The file it came from (reloads without a path re-read it).
    pub path: PathBuf,
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
}

impl LoadError {
    /// A client-safe explanation: no file paths or OS details.
    pub fn public_message(&self) -> String {
        match self {
            LoadError::Artifact(ArtifactError::Io { source, .. }) => {
                format!("model file cannot be read ({})", source.kind())
            }
            LoadError::Holdout(_) => "the configured holdout file cannot be used".to_owned(),
            other => other.to_string(),
        }
    }
}

/// [`load_gated`] on the blocking pool, so the async workers keep serving.
pub async fn load_gated_off_thread(
    path: PathBuf,
    settings: GateSettings,
) -> Result<ServingModel, LoadError> {
    tokio::task::spawn_blocking(move || load_gated(&path, &settings))
        .await
        .expect("model loading does not panic")
}

/// Loads, validates and gates the artifact at `path` (blocking: call from
/// `spawn_blocking` inside the runtime, e.g. [`load_gated_off_thread`]).
///
/// Loading the shipped 2.6 MB artifact frees ~4 MB of parsed data (110k term
/// strings, the counts) among the ~6 MB of scoring tables that stay. The
/// allocator would keep those freed pages resident in the loading thread's
/// arena, where serving never reuses them, so they are handed back to the OS
/// here, whether or not the model was accepted.
pub fn load_gated(path: &Path, settings: &GateSettings) -> Result<ServingModel, LoadError> {
    let result = load_gated_inner(path, settings);
    release_freed_memory();
    result
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

fn load_gated_inner(path: &Path, settings: &GateSettings) -> Result<ServingModel, LoadError> {
    let loaded = Artifact::load(path)?;
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
        path: path.to_owned(),
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
