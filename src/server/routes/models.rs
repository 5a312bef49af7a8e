//! `GET /models`: every model of the repository with its state, version
//! and gate result; and [`Named`], how a route's `{name}` becomes a model.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::request::Parts;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::server::error::ApiError;
use crate::server::repository::ModelEntry;
use crate::server::state::AppState;

/// The model a route's `{name}` names; 404 `model_not_found` (naming the
/// models there are) for any other name. Read from the path before the
/// body, so an unknown model is the answer whatever the body holds.
pub struct Named(pub Arc<ModelEntry>);

impl FromRequestParts<AppState> for Named {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| state.models.not_found())?;
        let name = params
            .iter()
            .find_map(|(key, value)| (key == "name").then_some(value))
            .unwrap_or("");
        state.models.find(name).map(Named)
    }
}

/// The gate's verdict on a served model.
#[derive(Debug, Serialize, ToSchema)]
pub struct GateResult {
    /// F1 macro the gate judged.
    pub f1_macro: f64,
    /// The minimum it had to reach (the model's own `min_f1_macro`, else
    /// `gate.min_f1_macro`).
    pub min_f1_macro: f64,
    /// Where that F1 came from (stored evaluation, or a holdout).
    pub source: String,
}

/// One model of the repository.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    /// The server's name for it (`/models/{name}/...`, `/v2/models/{name}/...`).
    pub name: String,
    /// `ready`, `loading` or `unavailable`.
    pub state: String,
    /// Why it is not ready (a refusal, `unloaded`), or why its last reload
    /// was refused while it is; `null` when there is nothing to say.
    pub reason: Option<String>,
    /// Whether `/predict` serves it.
    pub default: bool,
    /// Whether the server is ready only while it is served.
    pub required: bool,
    /// The served artifact's name (`null` when not served).
    pub artifact_name: Option<String>,
    /// The served version (`null` when not served).
    pub version: Option<String>,
    /// The gate's verdict on the served version (`null` when not served).
    pub gate: Option<GateResult>,
    /// Estimated bytes it keeps, counted against `models.max_total_bytes`
    /// (`null` when not served).
    pub resident_bytes: Option<u64>,
    /// When the served version was loaded (RFC 3339; `null` when not served).
    pub loaded_at: Option<String>,
}

/// Every model, and the bounds across them.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelsResponse {
    /// The default model's name.
    pub default: String,
    /// `models.max_count`.
    pub max_count: usize,
    /// `models.max_total_bytes`.
    pub max_total_bytes: u64,
    /// Estimated bytes the served models keep, in all.
    pub resident_bytes: u64,
    /// Every model, by name.
    pub models: Vec<ModelSummary>,
}

/// One model's summary.
pub(crate) fn summary(entry: &ModelEntry, default: bool) -> ModelSummary {
    let status = entry.status();
    let served = entry.serving();
    let served = served.as_deref();
    ModelSummary {
        name: entry.name.to_string(),
        state: status.state.as_str().into(),
        reason: (!status.reason.is_empty()).then_some(status.reason),
        default,
        required: entry.spec.required,
        artifact_name: served.map(|m| m.loaded.meta.model.name.clone()),
        version: served.map(|m| m.loaded.meta.model.version.clone()),
        gate: served.map(|m| GateResult {
            f1_macro: m.gate.f1_macro,
            min_f1_macro: m.gate.threshold,
            source: m.gate.gate_source.to_string(),
        }),
        resident_bytes: served.map(|m| m.resident_bytes),
        loaded_at: served.map(|m| m.loaded_at.to_rfc3339()),
    }
}

/// Every model of the repository: state, version, gate result.
#[utoipa::path(get, path = "/models", responses((status = 200, body = ModelsResponse)))]
pub async fn list(State(state): State<AppState>) -> Json<ModelsResponse> {
    let default = state.models.default_entry();
    let mut models: Vec<ModelSummary> = state
        .models
        .entries()
        .iter()
        .map(|e| summary(e, Arc::ptr_eq(e, default)))
        .collect();
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Json(ModelsResponse {
        default: default.name.to_string(),
        max_count: state.settings.models.max_count,
        max_total_bytes: state.models.budget.max_total_bytes(),
        resident_bytes: state.models.budget.serving_bytes(),
        models,
    })
}
