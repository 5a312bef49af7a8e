//! `GET /model` and `GET /model/quality` (the default model), and
//! `GET /models/{name}` and `GET /models/{name}/quality` (any model).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::server::error::ApiError;
use crate::server::repository::ModelEntry;
use crate::server::routes::models::Named;
use crate::server::state::AppState;

/// Description of the served model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelResponse {
    /// The server's name for the model (in routes, metrics and logs).
    pub model: String,
    /// Model name (the artifact's).
    pub name: String,
    /// Model version.
    pub version: String,
    /// `sha256:<hex>` content checksum.
    pub sha256: String,
    /// Class labels.
    pub classes: Vec<String>,
    /// Vocabulary size.
    pub vocabulary_size: usize,
    /// When it was trained (RFC 3339).
    pub trained_at: String,
    /// Stored evaluation (F1 macro, balanced accuracy, accuracy, per class).
    #[schema(value_type = Object)]
    pub evaluation: crate::classifier::Evaluation,
    /// Training parameters.
    #[schema(value_type = Object)]
    pub training: crate::artifact::TrainingParams,
    /// Training-data fingerprint.
    #[schema(value_type = Object)]
    pub dataset: crate::artifact::DatasetFingerprint,
    /// Probability calibration (temperature) applied to every prediction, if any.
    #[schema(value_type = Option<Object>)]
    pub calibration: Option<crate::artifact::Calibration>,
    /// Gate minimum F1 macro in force.
    pub gate_min_f1_macro: f64,
    /// F1 macro the gate judged.
    pub gate_f1_macro: f64,
    /// Where that F1 came from.
    pub gate_source: String,
    /// When the model was loaded (RFC 3339).
    pub loaded_at: String,
    /// The MLflow run that trained it (`null` when training was not tracked).
    pub mlflow_run_id: Option<String>,
    /// The MLflow registry version served (`null` unless `model.path` is a `models:/` URI).
    pub registry_version: Option<String>,
}

/// The default model.
#[utoipa::path(get, path = "/model", responses((status = 200, body = ModelResponse)))]
pub async fn model(State(state): State<AppState>) -> Result<Json<ModelResponse>, ApiError> {
    describe(state.models.default_entry())
}

/// The model `name`.
#[utoipa::path(get, path = "/models/{name}",
    params(("name" = String, Path, description = "Model name (as `GET /models` lists it)")),
    responses(
        (status = 200, body = ModelResponse),
        (status = 404, description = "No such model: code model_not_found, naming the models there are", body = crate::server::error::ErrorBody),
        (status = 503, description = "The model is not being served: code model_unavailable", body = crate::server::error::ErrorBody)))]
pub async fn model_named(Named(entry): Named) -> Result<Json<ModelResponse>, ApiError> {
    describe(&entry)
}

fn describe(entry: &ModelEntry) -> Result<Json<ModelResponse>, ApiError> {
    let m = entry.ready()?;
    let meta = &m.loaded.meta;
    Ok(Json(ModelResponse {
        model: entry.name.to_string(),
        name: meta.model.name.clone(),
        version: meta.model.version.clone(),
        sha256: meta.checksum.clone(),
        classes: meta.classes.clone(),
        vocabulary_size: meta.vocabulary_size,
        trained_at: meta.created_at.clone(),
        evaluation: meta.evaluation.clone(),
        training: meta.training.clone(),
        dataset: meta.dataset.clone(),
        calibration: meta.calibration.clone(),
        gate_min_f1_macro: m.gate.threshold,
        gate_f1_macro: m.gate.f1_macro,
        gate_source: m.gate.gate_source.to_string(),
        loaded_at: m.loaded_at.to_rfc3339(),
        mlflow_run_id: meta.mlflow_run_id.clone(),
        registry_version: m.registry_version.as_ref().map(|v| v.version.clone()),
    }))
}

/// Three headline figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct Figures {
    /// F1 macro.
    pub f1_macro: f64,
    /// Balanced accuracy.
    pub balanced_accuracy: f64,
    /// Accuracy.
    pub accuracy: f64,
}

/// Live figures with per-class recall.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveFigures {
    /// F1 macro over the window.
    pub f1_macro: f64,
    /// Balanced accuracy over the window.
    pub balanced_accuracy: f64,
    /// Accuracy over the window.
    pub accuracy: f64,
    /// Recall per class: `null` for a class with no labelled prediction in
    /// the window yet, which has no recall (0 would read as "every one
    /// missed").
    pub per_class_recall: std::collections::BTreeMap<String, Option<f64>>,
}

/// Label-free drift signals.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftFigures {
    /// Recent predictions considered.
    pub recent_predictions: u64,
    /// Share of each predicted label.
    pub predicted_label_share: std::collections::BTreeMap<String, f64>,
    /// Jensen–Shannon divergence (bits) of that share vs. the training prior.
    pub label_js_divergence: f64,
    /// Mean probability of the predicted class.
    pub mean_confidence: f64,
    /// Mean out-of-vocabulary share.
    pub mean_oov_ratio: f64,
}

/// Live vs. stored model quality.
#[derive(Debug, Serialize, ToSchema)]
pub struct QualityResponse {
    /// Configured window size (`feedback.window`): of labelled predictions
    /// for `live`, and of recent predictions for `drift`.
    pub window_size: usize,
    /// Labelled predictions in it.
    pub samples: u64,
    /// Live figures (`null` until feedback arrives).
    pub live: Option<LiveFigures>,
    /// Figures stored at training time.
    pub stored: Figures,
    /// Drift signals (`null` before the first prediction).
    pub drift: Option<DriftFigures>,
}

/// Live quality of the default model from label feedback, beside the
/// stored figures.
#[utoipa::path(get, path = "/model/quality", responses((status = 200, body = QualityResponse)))]
pub async fn quality(State(state): State<AppState>) -> Result<Json<QualityResponse>, ApiError> {
    quality_of(&state, state.models.default_entry())
}

/// Live quality of the model `name` (its own feedback and drift windows).
#[utoipa::path(get, path = "/models/{name}/quality",
    params(("name" = String, Path, description = "Model name (as `GET /models` lists it)")),
    responses(
        (status = 200, body = QualityResponse),
        (status = 404, description = "No such model: code model_not_found, naming the models there are", body = crate::server::error::ErrorBody),
        (status = 503, description = "The model is not being served: code model_unavailable", body = crate::server::error::ErrorBody)))]
pub async fn quality_named(
    State(state): State<AppState>,
    Named(entry): Named,
) -> Result<Json<QualityResponse>, ApiError> {
    quality_of(&state, &entry)
}

fn quality_of(state: &AppState, entry: &ModelEntry) -> Result<Json<QualityResponse>, ApiError> {
    let model = entry.ready()?;
    let live = state.feedback.live_quality(entry.slot);
    let drift = state.feedback.drift(entry.slot);
    let stored = &model.loaded.meta.evaluation;
    Ok(Json(QualityResponse {
        window_size: state.feedback.window_size(),
        samples: live.samples,
        live: live.evaluation.map(|e| LiveFigures {
            f1_macro: e.f1_macro,
            balanced_accuracy: e.balanced_accuracy,
            accuracy: e.accuracy,
            per_class_recall: e
                .per_class
                .into_iter()
                .map(|c| (c.label, (c.support > 0).then_some(c.recall)))
                .collect(),
        }),
        stored: Figures {
            f1_macro: stored.f1_macro,
            balanced_accuracy: stored.balanced_accuracy,
            accuracy: stored.accuracy,
        },
        drift: drift.map(|d| DriftFigures {
            recent_predictions: d.recent_predictions,
            predicted_label_share: d.predicted_label_share.into_iter().collect(),
            label_js_divergence: d.label_js_divergence,
            mean_confidence: d.mean_confidence,
            mean_oov_ratio: d.mean_oov_ratio,
        }),
    }))
}
