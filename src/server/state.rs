//! Shared state: the model repository (each model behind its own
//! `ArcSwap`), settings, metrics.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::metrics::Metrics;
use super::repository::Repository;
use crate::mlflow::MlflowClient;
use crate::monitoring::FeedbackStore;
use crate::settings::Settings;

/// Cloneable handle to the shared state.
#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

/// The shared state itself.
pub struct StateInner {
    /// Every model, the default one first among equals.
    pub models: Repository,
    /// Settings in force.
    pub settings: Settings,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// False once shutdown has begun.
    pub ready: AtomicBool,
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
    /// Builds the state around a repository whose models are not loaded
    /// yet (see [`AppState::load_model`]).
    pub fn new(
        settings: Settings,
        models: Repository,
        metrics: Arc<Metrics>,
        feedback: FeedbackStore,
        registry: Option<MlflowClient>,
    ) -> Self {
        let names = models.names();
        metrics.set_model_names(&models.default_entry().name, &names);
        for name in &names {
            metrics.set_model_state(name, "unavailable");
        }
        metrics
            .models_max_total_bytes
            .set(i64::try_from(settings.models.max_total_bytes).unwrap_or(i64::MAX));
        let concurrency = Arc::new(Semaphore::new(settings.server.max_concurrency));
        metrics
            .max_concurrency
            .set(settings.server.max_concurrency as i64);
        let body_budget = Arc::new(Semaphore::new(
            settings.server.max_inflight_body_bytes / 1024,
        ));
        Self(Arc::new(StateInner {
            models,
            settings,
            metrics,
            ready: AtomicBool::new(true),
            concurrency,
            body_budget,
            batch_slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            )),
            feedback,
            registry,
        }))
    }

    /// The state of a one-model server around `model`, loaded already
    /// (the fuzz targets' way in): the repository `settings` describe
    /// without reading any directory, its default model serving `model`.
    pub fn with_model(
        settings: Settings,
        model: super::ServingModel,
        metrics: Arc<Metrics>,
        feedback: FeedbackStore,
    ) -> Result<Self, crate::settings::SettingsError> {
        let mut one = settings.clone();
        one.model.repository = None;
        let plan = one.model_specs()?;
        let state = Self::new(
            settings,
            Repository::new(&one, plan),
            metrics,
            feedback,
            None,
        );
        let entry = Arc::clone(state.models.default_entry());
        state.publish(&entry, model);
        Ok(state)
    }

    /// True while the server accepts traffic.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Marks the server as shutting down.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    /// The default model being served (it cannot be unloaded; 503 should
    /// it ever not be).
    pub fn default_model(&self) -> Result<Arc<super::ServingModel>, super::error::ApiError> {
        self.models.default_entry().ready()
    }

    /// The names the repository knows changed: the HTTP metrics' `model`
    /// label follows.
    pub fn models_changed(&self) {
        self.metrics
            .set_model_names(&self.models.default_entry().name, &self.models.names());
    }
}
