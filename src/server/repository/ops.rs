//! Loading, reloading and unloading one model: each through the one gated
//! path ([`Load`]), within the memory budget, under the model's own lock,
//! touching no other model.

use std::sync::Arc;

use axum::http::StatusCode;
use tracing::instrument::WithSubscriber as _;
use tracing::Instrument as _;

use super::budget::BudgetAdmission;
use super::{ModelEntry, ModelState};
use crate::gate::ServingRule;
use crate::server::error::ApiError;
use crate::server::loader::{release_freed_memory, Load, LoadError, ModelKey, ServingModel};
use crate::server::metrics::Metrics;
use crate::server::state::AppState;
use crate::settings::ModelSource;

/// Why a load is made: at start-up, a load or reload is not counted as a
/// reload in `nbserve_model_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Start-up.
    Start,
    /// A request, a signal or a poll.
    Reload,
}

impl AppState {
    /// Loads `entry` (or reloads it: from `path` in the models directory,
    /// else from the source it was loaded from, else its configured one),
    /// swapping only when the new model validates, fits the memory budget
    /// and passes its gate. Requests in flight keep the `Arc` of the model
    /// they started with; other models are not touched.
    ///
    /// The whole load (lock, read, swap, log) runs in its own task: if the
    /// caller is dropped (request timeout, client gone) it still completes
    /// under the lock, is logged, and is counted as abandoned.
    pub async fn load_model(
        &self,
        entry: Arc<ModelEntry>,
        path: Option<String>,
        why: Why,
    ) -> Result<Arc<ServingModel>, LoadError> {
        let state = self.clone();
        let abandoned = AbandonedReload(Some(Arc::clone(&self.metrics)));
        // In the caller's span and under the caller's subscriber (a request
        // left out by trace sampling logs through its own): a reload's
        // `model_load` is its child, its log lines name the request.
        let load = async move { state.load_locked(&entry, path, why).await };
        let result = tokio::spawn(load.in_current_span().with_current_subscriber())
            .await
            .expect("model loading does not panic");
        abandoned.disarm();
        result
    }

    async fn load_locked(
        &self,
        entry: &ModelEntry,
        path: Option<String>,
        why: Why,
    ) -> Result<Arc<ServingModel>, LoadError> {
        let _guard = entry.lock.lock().await;
        let current = entry.serving();
        let (source, confined_to) = match (path, &current) {
            (Some(name), _) => {
                let dir = self.settings.model.dir.clone();
                (ModelSource::File(dir.join(name)), Some(dir))
            }
            (None, Some(current)) => (current.source.clone(), current.confined_to.clone()),
            (None, None) => (entry.spec.source.clone(), None),
        };
        if current.is_none() {
            entry.set_status(ModelState::Loading, "loading");
            self.metrics.set_model_state(&entry.name, "loading");
        }
        let load = Load {
            source,
            confined_to,
            rule: ServingRule {
                gate: entry.spec.gate.clone(),
                max_bytes: self.settings.model.max_bytes,
            },
            key: ModelKey {
                name: entry.name.to_string(),
                slot: entry.slot,
            },
        };
        let admission = BudgetAdmission {
            budget: Arc::clone(&self.models.budget),
            slot: entry.slot,
            model: entry.name.to_string(),
        };
        let result = load.run(self.registry.as_ref(), admission).await;
        if why == Why::Reload {
            self.metrics.count_reload(&entry.name, result.is_ok());
        }
        match result {
            Ok((model, reservation)) => {
                reservation.commit();
                let model = self.publish(entry, model);
                // What the learning log holds for this champion is its
                // challenger from the start: shadow-scored and counted in
                // the budget before the next learn.
                entry
                    .challenger
                    .restore(&model, &self.settings.learning)
                    .await;
                // At start the "listening" line describes the default model.
                let is_default = std::ptr::eq(entry, Arc::as_ptr(self.models.default_entry()));
                if why == Why::Start && is_default {
                    return Ok(model);
                }
                tracing::info!(
                    model = %entry.name,
                    name = %model.loaded.meta.model.name,
                    version = %model.loaded.meta.model.version,
                    registry_version = model.registry_version.as_ref().map(|v| v.version.as_str()),
                    run_id = model.loaded.meta.mlflow_run_id.as_deref(),
                    f1_macro = model.gate.f1_macro,
                    resident_bytes = model.resident_bytes,
                    "model {}",
                    if why == Why::Start { "loaded" } else { "reloaded" }
                );
                Ok(model)
            }
            Err(e) => {
                let message = e.public_message();
                if current.is_some() {
                    entry.set_status(ModelState::Ready, format!("last load refused: {message}"));
                    tracing::warn!(model = %entry.name, error = %e.log_message(), "model reload rejected; still serving the previous model");
                } else {
                    entry.set_status(ModelState::Unavailable, message);
                    self.metrics.set_model_state(&entry.name, "unavailable");
                    // A required model refused at start fails the start,
                    // which reports why once.
                    if !(why == Why::Start && entry.spec.required) {
                        tracing::warn!(model = %entry.name, error = %e.log_message(), "model load rejected; not serving it");
                    }
                }
                Err(e)
            }
        }
    }

    /// Serves `model` as `entry` (its memory already held): its metric
    /// series resolved, swapped in, shown ready.
    pub(crate) fn publish(&self, entry: &ModelEntry, mut model: ServingModel) -> Arc<ServingModel> {
        model.series = self
            .metrics
            .series(&entry.name, model.loaded.classifier.classes());
        let model = Arc::new(model);
        entry.serving.store(Some(Arc::clone(&model)));
        entry.set_status(ModelState::Ready, "");
        self.metrics.set_model(&entry.name, &model);
        model
    }

    /// Reloads the default model (see [`AppState::load_model`]).
    #[tracing::instrument(level = "debug", name = "reload", skip_all)]
    pub async fn reload(&self, path: Option<String>) -> Result<Arc<ServingModel>, LoadError> {
        let entry = Arc::clone(self.models.default_entry());
        self.load_model(entry, path, Why::Reload).await
    }

    /// Reloads every model being served, one after another (SIGHUP).
    pub async fn reload_all(&self) {
        for entry in self.models.entries().iter() {
            if entry.serving().is_some() {
                let _ = self.load_model(Arc::clone(entry), None, Why::Reload).await;
            }
        }
    }

    /// Stops serving `entry`: refused for the default model and models
    /// marked `required` (409 `model_required`); a model not loaded is
    /// unloaded already. Requests in flight finish on the model they hold;
    /// its memory is freed once the last of them ends.
    pub async fn unload_model(&self, entry: Arc<ModelEntry>) -> Result<(), ApiError> {
        if entry.spec.required {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "model_required",
                format!(
                    "model {} is {} and cannot be unloaded",
                    entry.name,
                    if Arc::ptr_eq(&entry, self.models.default_entry()) {
                        "the default model"
                    } else {
                        "marked required"
                    }
                ),
            ));
        }
        let state = self.clone();
        tokio::spawn(async move {
            let _guard = entry.lock.lock().await;
            let old = entry.serving.swap(None);
            entry.set_status(ModelState::Unavailable, "unloaded");
            if old.is_none() {
                return;
            }
            state.models.budget.release(entry.slot);
            state.metrics.forget_model(&entry.name);
            tracing::info!(model = %entry.name, "model unloaded");
            drop(old);
            tokio::task::spawn_blocking(release_freed_memory);
        })
        .await
        .expect("unloading does not panic");
        Ok(())
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
