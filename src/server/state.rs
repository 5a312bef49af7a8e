//! Shared state: the live model behind an `ArcSwap`, settings, metrics.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use super::metrics::Metrics;
use crate::artifact::{Artifact, ArtifactError, LoadedModel};
use crate::dataset::{Dataset, DatasetError};
use crate::gate::{gate, GateError, GatePass};
use crate::monitoring::{FeedbackStore, ModelProfile};
use crate::settings::{GateSettings, Settings};

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

/// Loads, validates and gates the artifact at `path` (blocking: call from
/// `spawn_blocking` inside the runtime).
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
    let total: u64 = loaded.meta.dataset.class_counts.values().sum();
    let prior = loaded
        .meta
        .classes
        .iter()
        .map(|c| {
            let n = loaded
                .meta
                .dataset
                .class_counts
                .get(c)
                .copied()
                .unwrap_or(0);
            if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            }
        })
        .collect();
    let profile = Arc::new(ModelProfile {
        version: loaded.meta.model.version.clone(),
        classes: loaded.meta.classes.clone(),
        prior,
    });
    Ok(ServingModel {
        loaded,
        gate: pass,
        loaded_at: Utc::now(),
        path: path.to_owned(),
        profile,
    })
}

/// Cloneable handle to the shared state.
#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

/// The shared state itself.
pub struct StateInner {
    /// The model being served; swapped atomically on reload.
    pub model: ArcSwap<ServingModel>,
    /// Settings in force.
    pub settings: Settings,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// False once shutdown has begun.
    pub ready: AtomicBool,
    /// Serialises reloads so two cannot interleave.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// Admission control for the API routes.
    pub concurrency: Arc<Semaphore>,
    /// One slot per core for large batches scored on the blocking pool, so
    /// 64 concurrent batches queue here instead of spawning 64 threads (each
    /// with its own scratch buffers and allocator arena).
    pub batch_slots: Semaphore,
    /// Remembered predictions and live quality.
    pub feedback: FeedbackStore,
}

impl Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.0
    }
}

impl AppState {
    /// Builds the state around an already gated model.
    pub fn new(
        settings: Settings,
        model: ServingModel,
        metrics: Arc<Metrics>,
        feedback: FeedbackStore,
    ) -> Self {
        metrics.set_model(
            &model.loaded.meta,
            settings.gate.min_f1_macro,
            model.loaded_at.timestamp_millis() as f64 / 1000.0,
        );
        let concurrency = Arc::new(Semaphore::new(settings.server.max_concurrency));
        Self(Arc::new(StateInner {
            model: ArcSwap::from_pointee(model),
            settings,
            metrics,
            ready: AtomicBool::new(true),
            reload_lock: tokio::sync::Mutex::new(()),
            concurrency,
            batch_slots: Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
            feedback,
        }))
    }

    /// True while the server accepts traffic.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Marks the server as shutting down.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    /// Reloads from `path` (or the current model's file), swapping only when
    /// the new model validates and passes the gate. Requests in flight keep
    /// the `Arc` of the model they started with.
    pub async fn reload(&self, path: Option<PathBuf>) -> Result<Arc<ServingModel>, LoadError> {
        let _guard = self.reload_lock.lock().await;
        let path = path.unwrap_or_else(|| self.model.load().path.clone());
        let gate_settings = self.settings.gate.clone();
        let result = tokio::task::spawn_blocking(move || load_gated(&path, &gate_settings))
            .await
            .expect("model loading does not panic");
        match result {
            Ok(model) => {
                let model = Arc::new(model);
                self.metrics.set_model(
                    &model.loaded.meta,
                    self.settings.gate.min_f1_macro,
                    model.loaded_at.timestamp_millis() as f64 / 1000.0,
                );
                self.model.store(Arc::clone(&model));
                self.metrics
                    .model_reloads
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(
                    model = %model.loaded.meta.model.name,
                    version = %model.loaded.meta.model.version,
                    f1_macro = model.gate.f1_macro,
                    "model reloaded"
                );
                Ok(model)
            }
            Err(e) => {
                self.metrics
                    .model_reloads
                    .with_label_values(&["failure"])
                    .inc();
                tracing::warn!(error = %e, "model reload rejected; still serving the previous model");
                Err(e)
            }
        }
    }
}
