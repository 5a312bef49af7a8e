//! Shared state: the live model behind an `ArcSwap`, settings, metrics.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use super::loader::{load_source, LoadError, ServingModel};
use super::metrics::Metrics;
use crate::mlflow::MlflowClient;
use crate::monitoring::FeedbackStore;
use crate::settings::Settings;

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
    /// The MLflow registry `models:/` sources are resolved through.
    pub registry: Option<MlflowClient>,
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
        registry: Option<MlflowClient>,
    ) -> Self {
        metrics.set_model(&model, settings.gate.min_f1_macro);
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
            registry,
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
        let result = load_source(path, self.settings.gate.clone(), self.registry.as_ref()).await;
        self.metrics.count_reload(result.is_ok());
        match result {
            Ok(model) => {
                let model = Arc::new(model);
                self.metrics
                    .set_model(&model, self.settings.gate.min_f1_macro);
                self.model.store(Arc::clone(&model));
                tracing::info!(
                    model = %model.loaded.meta.model.name,
                    version = %model.loaded.meta.model.version,
                    registry_version = model.registry_version.as_ref().map(|v| v.version.as_str()),
                    run_id = model.loaded.meta.mlflow_run_id.as_deref(),
                    f1_macro = model.gate.f1_macro,
                    "model reloaded"
                );
                Ok(model)
            }
            Err(e) => {
                tracing::warn!(error = %e, "model reload rejected; still serving the previous model");
                Err(e)
            }
        }
    }
}
