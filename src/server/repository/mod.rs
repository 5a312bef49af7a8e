//! The model repository: every model the server knows, by name, each with
//! its own source, gate, polling and state, served behind its own
//! `ArcSwap` (a request keeps the `Arc` of the model it started with, so
//! a load, reload or unload racing with it loses nothing).
//!
//! The set of names only grows (a `load` may find a new artifact in
//! `model.repository`), up to `models.max_count`; each name keeps its slot
//! for the life of the process (its live windows, its memory holding).
//! [`ops`] loads, reloads and unloads; [`budget`] is
//! `models.max_total_bytes`.

pub mod budget;
pub mod ops;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, ArcSwapOption};
use axum::http::StatusCode;

use super::challenger::Challenger;
use super::error::ApiError;
use super::loader::ServingModel;
use crate::settings::{list_names, valid_model_name, ModelSpec, RepositoryPlan, Settings};
pub use budget::Budget;
pub use ops::Why;

/// A model's state, as `GET /models` and the V2 repository index show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// Being served.
    Ready,
    /// Its first load (or a load after an unload) is in progress.
    Loading,
    /// Not served: never loaded, refused, broken or unloaded (see the reason).
    Unavailable,
}

impl ModelState {
    /// The native API's name (`ready`, `loading`, `unavailable`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Ready => "ready",
            ModelState::Loading => "loading",
            ModelState::Unavailable => "unavailable",
        }
    }

    /// The Open Inference Protocol repository extension's name.
    pub fn v2(self) -> &'static str {
        match self {
            ModelState::Ready => "READY",
            ModelState::Loading => "LOADING",
            ModelState::Unavailable => "UNAVAILABLE",
        }
    }
}

/// A model's state and why: a refusal's public message, `unloaded`, or
/// (while ready) why its last reload was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The state.
    pub state: ModelState,
    /// Why (empty when there is nothing to say).
    pub reason: String,
}

/// One model of the repository.
pub struct ModelEntry {
    /// The server's name for it.
    pub name: Arc<str>,
    /// Its slot (live windows, memory holding, below `models.max_count`).
    pub slot: usize,
    /// Its source, gate, polling.
    pub spec: ModelSpec,
    /// The model being served, if any.
    serving: ArcSwapOption<ServingModel>,
    status: Mutex<Status>,
    /// Serialises this model's loads, reloads and unloads (held by the
    /// operation's own task, so an abandoned one still completes alone).
    lock: tokio::sync::Mutex<()>,
    /// What `POST /learn` and `POST /forget` built beside this model.
    pub challenger: Challenger,
}

impl ModelEntry {
    fn new(slot: usize, spec: ModelSpec, budget: &Arc<Budget>) -> Self {
        Self {
            name: Arc::from(spec.name.as_str()),
            slot,
            challenger: Challenger::new(slot, Arc::clone(budget)),
            spec,
            serving: ArcSwapOption::empty(),
            status: Mutex::new(Status {
                state: ModelState::Unavailable,
                reason: "not loaded".into(),
            }),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The lock its loads, reloads and unloads take (tests hold it to make
    /// one wait).
    pub fn load_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.lock
    }

    /// The model being served (`None` while unloaded or never loaded).
    pub fn serving(&self) -> Option<Arc<ServingModel>> {
        self.serving.load_full()
    }

    /// Its state and why.
    pub fn status(&self) -> Status {
        self.lock_status().clone()
    }

    fn lock_status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_status(&self, state: ModelState, reason: impl Into<String>) {
        *self.lock_status() = Status {
            state,
            reason: reason.into(),
        };
    }

    /// The model being served, or the answer for a request to a model
    /// that is not: 503 `model_unavailable`, naming its state.
    pub fn ready(&self) -> Result<Arc<ServingModel>, ApiError> {
        self.serving().ok_or_else(|| {
            let status = self.status();
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "model_unavailable",
                format!(
                    "model {} is not being served ({}: {})",
                    self.name,
                    status.state.as_str(),
                    status.reason
                ),
            )
        })
    }
}

/// Every model the server knows.
pub struct Repository {
    entries: ArcSwap<Vec<Arc<ModelEntry>>>,
    default: Arc<ModelEntry>,
    /// `model.repository`, where a `load` may find a new artifact.
    dir: Option<PathBuf>,
    max_count: usize,
    /// The options a model found in `dir` later gets.
    template: ModelSpec,
    /// Serialises additions to `entries`.
    adding: Mutex<()>,
    /// `models.max_total_bytes`.
    pub budget: Arc<Budget>,
}

impl Repository {
    /// The repository `plan` describes, nothing loaded yet.
    pub fn new(settings: &Settings, plan: RepositoryPlan) -> Self {
        let max_count = settings.models.max_count;
        let budget = Budget::new(settings.models.max_total_bytes, max_count);
        let entries: Vec<Arc<ModelEntry>> = plan
            .models
            .into_iter()
            .enumerate()
            .map(|(slot, spec)| Arc::new(ModelEntry::new(slot, spec, &budget)))
            .collect();
        let default = entries
            .iter()
            .find(|e| *e.name == *plan.default)
            .cloned()
            .expect("the plan's default is one of its models");
        Self {
            entries: ArcSwap::from_pointee(entries),
            default,
            dir: settings.model.repository.clone(),
            max_count,
            template: ModelSpec {
                name: String::new(),
                source: settings.model.path.clone(),
                poll_interval_secs: settings.model.poll_interval_secs,
                gate: settings.gate.clone(),
                required: false,
            },
            adding: Mutex::new(()),
            budget,
        }
    }

    /// The default model (`/predict`, `/model`).
    pub fn default_entry(&self) -> &Arc<ModelEntry> {
        &self.default
    }

    /// The model in `slot`, if there is one.
    pub fn at(&self, slot: usize) -> Option<Arc<ModelEntry>> {
        self.entries
            .load()
            .get(slot)
            .filter(|e| e.slot == slot)
            .cloned()
    }

    /// Every model, in slot order.
    pub fn entries(&self) -> Arc<Vec<Arc<ModelEntry>>> {
        self.entries.load_full()
    }

    /// The names of every model.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.entries.load().iter().map(|e| e.name.clone()).collect()
    }

    /// The model named `name`. The default model also answers to its
    /// artifact's own name (what `/model` reports), as the one model of a
    /// server always has.
    pub fn get(&self, name: &str) -> Option<Arc<ModelEntry>> {
        let entries = self.entries.load();
        if let Some(e) = entries.iter().find(|e| *e.name == *name) {
            return Some(Arc::clone(e));
        }
        let default = self.default.serving()?;
        (default.loaded.meta.model.name == name).then(|| Arc::clone(&self.default))
    }

    /// [`Repository::get`], or 404 `model_not_found` naming the models
    /// there are (at most ten, then how many more).
    pub fn find(&self, name: &str) -> Result<Arc<ModelEntry>, ApiError> {
        self.get(name).ok_or_else(|| self.not_found())
    }

    /// 404 `model_not_found`, naming the models there are.
    pub fn not_found(&self) -> ApiError {
        let entries = self.entries.load();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "no model of that name; this server has {}",
                list_names(entries.iter().map(|e| &*e.name))
            ),
        )
    }

    /// The artifact a `load` of the unknown `name` would read: a regular
    /// file `name.json` directly in `model.repository`.
    fn artifact_for(&self, name: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        if !valid_model_name(name) {
            return None;
        }
        let path = dir.join(format!("{name}.json"));
        path.is_file().then_some(path)
    }

    /// The model `name`, added when it is new and its artifact is in
    /// `model.repository` (and `models.max_count` leaves room); `None`
    /// when there is no such model, `Some(Err)` when there is no room.
    pub fn get_or_discover(&self, name: &str) -> Option<Result<Arc<ModelEntry>, ApiError>> {
        if let Some(entry) = self.get(name) {
            return Some(Ok(entry));
        }
        let path = self.artifact_for(name)?;
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let entries = self.entries.load_full();
        if let Some(e) = entries.iter().find(|e| *e.name == *name) {
            return Some(Ok(Arc::clone(e)));
        }
        if entries.len() >= self.max_count {
            return Some(Err(ApiError::new(
                StatusCode::CONFLICT,
                "too_many_models",
                format!(
                    "the repository holds models.max_count ({}) models already",
                    self.max_count
                ),
            )));
        }
        let spec = ModelSpec {
            name: name.to_owned(),
            source: crate::settings::ModelSource::File(path),
            ..self.template.clone()
        };
        let entry = Arc::new(ModelEntry::new(entries.len(), spec, &self.budget));
        let mut grown = (*entries).clone();
        grown.push(Arc::clone(&entry));
        self.entries.store(Arc::new(grown));
        Some(Ok(entry))
    }

    /// Artifacts in `model.repository` no model is made of yet, by name
    /// (as many as `models.max_count` leaves room for).
    pub fn undiscovered(&self) -> Vec<String> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let entries = self.entries.load();
        let room = self.max_count.saturating_sub(entries.len());
        let Ok(listing) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = listing
            .filter_map(|e| {
                let path = e.ok()?.path();
                if path.extension()? != "json" || !path.is_file() {
                    return None;
                }
                let stem = path.file_stem()?.to_str()?;
                (valid_model_name(stem) && !entries.iter().any(|e| *e.name == *stem))
                    .then(|| stem.to_owned())
            })
            .collect();
        names.sort();
        names.truncate(room);
        names
    }

    /// True when the default model and every required one are served.
    pub fn required_ready(&self) -> bool {
        self.entries
            .load()
            .iter()
            .filter(|e| e.spec.required)
            .all(|e| e.serving.load().is_some())
    }
}
