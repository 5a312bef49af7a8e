//! Shared state: the live model behind an `ArcSwap`, settings, metrics.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use super::loader::{load_gated, LoadError, ModelSource, ServingModel};
use super::metrics::Metrics;
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
    /// Serialises reloads so two cannot interleave. A std mutex, held by the
    /// blocking load itself: a reload whose client gave up still holds it
    /// until its load ends, so abandoned reloads never run in parallel.
    pub reload_lock: Mutex<()>,
    /// Admission control for the API routes.
    pub concurrency: Arc<Semaphore>,
    /// Memory admission: one permit per KiB of request body being read or
    /// processed (`server.max_inflight_body_bytes`).
    pub body_budget: Arc<Semaphore>,
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
        let body_budget = Arc::new(Semaphore::new(
            settings.server.max_inflight_body_bytes / 1024,
        ));
        Self(Arc::new(StateInner {
            model: ArcSwap::from_pointee(model),
            settings,
            metrics,
            ready: AtomicBool::new(true),
            reload_lock: Mutex::new(()),
            concurrency,
            body_budget,
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

    /// Reloads `name` from the models directory (or the current model's
    /// source), swapping only when the new model validates and passes the
    /// gate. Requests in flight keep the `Arc` of the model they started with.
    ///
    /// The whole reload (lock, load, swap, log) runs on the blocking pool:
    /// if the caller is dropped (request timeout, client gone) it still
    /// completes, is logged, and is counted as abandoned.
    pub async fn reload(&self, name: Option<String>) -> Result<Arc<ServingModel>, LoadError> {
        let state = self.clone();
        let abandoned = AbandonedReload(Some(Arc::clone(&self.metrics)));
        let result = tokio::task::spawn_blocking(move || state.reload_blocking(name))
            .await
            .expect("model reloading does not panic");
        abandoned.disarm();
        result
    }

    fn reload_blocking(&self, name: Option<String>) -> Result<Arc<ServingModel>, LoadError> {
        let _guard = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let source = match name {
            Some(name) => ModelSource::InDir {
                dir: self.settings.model.dir.clone(),
                name,
            },
            None => self.model.load().source.clone(),
        };
        let result = load_gated(&source, self.settings.model.max_bytes, &self.settings.gate);
        self.metrics.count_reload(result.is_ok());
        match result {
            Ok(model) => {
                let model = Arc::new(model);
                self.metrics.set_model(
                    &model.loaded.meta,
                    self.settings.gate.min_f1_macro,
                    model.loaded_at.timestamp_millis() as f64 / 1000.0,
                );
                self.model.store(Arc::clone(&model));
                tracing::info!(
                    model = %model.loaded.meta.model.name,
                    version = %model.loaded.meta.model.version,
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
