//! Shared state: the live model behind an `ArcSwap`, settings, metrics.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use super::loader::{load_source, LoadError, ServingModel};
use super::metrics::Metrics;
use crate::gate::ServingRule;
use crate::mlflow::MlflowClient;
use crate::monitoring::FeedbackStore;
use crate::settings::{ModelSource, Settings};

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
    /// Serialises reloads so two cannot interleave. Held by the reload's own
    /// task: a reload whose client gave up still holds it until its load
    /// ends, so abandoned reloads never run in parallel.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// Admission control for the API routes.
    pub concurrency: Arc<Semaphore>,
    /// Memory admission: one permit per KiB of request body being read or
    /// processed (`server.max_inflight_body_bytes`).
    pub body_budget: Arc<Semaphore>,
    /// One slot per core for large batches scored on the blocking pool, so
    /// 64 concurrent batches queue here instead of spawning 64 threads (each
    /// with its own scratch buffers and allocator arena).
    pub batch_slots: Arc<Semaphore>,
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
        metrics
            .max_concurrency
            .set(settings.server.max_concurrency as i64);
        let body_budget = Arc::new(Semaphore::new(
            settings.server.max_inflight_body_bytes / 1024,
        ));
        Self(Arc::new(StateInner {
            model: ArcSwap::from_pointee(model),
            settings,
            metrics,
            ready: AtomicBool::new(true),
            reload_lock: tokio::sync::Mutex::new(()),
            concurrency,
            body_budget,
            batch_slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            )),
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

    /// Reloads `name` from the models directory (or the current model's
    /// source), swapping only when the new model validates and passes the
    /// gate. Requests in flight keep the `Arc` of the model they started with.
    ///
    /// The whole reload (lock, load, swap, log) runs in its own task: if the
    /// caller is dropped (request timeout, client gone) it still completes
    /// under the lock, is logged, and is counted as abandoned.
    pub async fn reload(&self, name: Option<String>) -> Result<Arc<ServingModel>, LoadError> {
        let state = self.clone();
        let abandoned = AbandonedReload(Some(Arc::clone(&self.metrics)));
        let result = tokio::spawn(async move { state.reload_locked(name).await })
            .await
            .expect("model reloading does not panic");
        abandoned.disarm();
        result
    }

    async fn reload_locked(&self, name: Option<String>) -> Result<Arc<ServingModel>, LoadError> {
        let _guard = self.reload_lock.lock().await;
        let (source, confined_to) = match name {
            Some(name) => {
                let dir = self.settings.model.dir.clone();
                (ModelSource::File(dir.join(name)), Some(dir))
            }
            None => {
                let current = self.model.load();
                (current.source.clone(), current.confined_to.clone())
            }
        };
        let result = load_source(
            source,
            confined_to,
            ServingRule::from(&self.settings),
            self.registry.as_ref(),
        )
        .await;
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
                tracing::warn!(error = %e.log_message(), "model reload rejected; still serving the previous model");
                Err(e)
            }
        }
    }
}

/// Counts a reload whose caller went away before it finished.
struct AbandonedReload(Option<Arc<Metrics>>);

impl AbandonedReload {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbandonedReload {
    fn drop(&mut self) {
        if let Some(metrics) = self.0.take() {
            metrics.count_abandoned_reload();
            tracing::warn!("reload abandoned by its caller; it completes in the background");
        }
    }
}
