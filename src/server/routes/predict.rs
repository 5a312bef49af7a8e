//! `POST /predict` and `POST /predict/batch`: the native JSON answers,
//! written straight from the class-indexed scores.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::classifier::Contribution;
use crate::server::error::ApiError;
use crate::server::extract::AppJson;
use crate::server::loader::ServingModel;
use crate::server::routes::models::Named;
use crate::server::scoring::{score_batch, score_text, Scored};
use crate::server::state::AppState;

/// One text to classify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// The text (non-empty, at most `server.max_text_bytes` bytes).
    pub text: String,
    /// Also return the terms that pushed toward the predicted class.
    #[serde(default)]
    pub explain: bool,
}

/// Many texts to classify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The texts (1 to `server.max_batch_size`).
    pub texts: Vec<String>,
}

/// A term's push toward the predicted class.
#[derive(Debug, Serialize, ToSchema)]
pub struct TermContribution<'a> {
    /// Vocabulary term.
    pub term: &'a str,
    /// Log-odds it adds to the predicted class over the runner-up.
    pub log_odds: f64,
}

/// One prediction.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictResponse<'a> {
    /// Id to send label feedback for (`POST /feedback`).
    #[serde(serialize_with = "as_text")]
    #[schema(value_type = String)]
    pub prediction_id: &'a Uuid,
    /// Predicted label.
    pub label: &'a str,
    /// Probability per class.
    #[schema(value_type = BTreeMap<String, f64>)]
    pub probabilities: ByClassName<'a>,
    /// Version of the model that scored this text.
    pub model_version: &'a str,
    /// Top terms toward the predicted class, when `explain` was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Vec<TermContribution<'a>>>,
}

/// Predictions for a batch, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse<'a> {
    /// One per text.
    pub predictions: Vec<PredictResponse<'a>>,
    /// Version of the model that scored the batch.
    pub model_version: &'a str,
}

/// A prediction's probabilities as a JSON object keyed by class, the keys
/// in name order whatever the model's class order (as the answer has
/// always had them).
#[derive(Debug)]
pub struct ByClassName<'a> {
    classes: &'a [String],
    /// Class indices in name order ([`name_order`]).
    order: &'a [usize],
    row: &'a Scored,
}

impl Serialize for ByClassName<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let log_probabilities = &self.row.prediction.log_probabilities;
        let mut map = serializer.serialize_map(Some(self.order.len()))?;
        for &c in self.order {
            map.serialize_entry(&self.classes[c], &log_probabilities[c].exp())?;
        }
        map.end()
    }
}

/// An id as its text (hyphenated).
fn as_text<S: Serializer>(id: &&Uuid, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

/// Class indices sorted by class name: worked out once per answer, so no
/// cell is looked up by name.
fn name_order(classes: &[String]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..classes.len()).collect();
    order.sort_unstable_by(|&a, &b| classes[a].cmp(&classes[b]));
    order
}

impl<'a> PredictResponse<'a> {
    fn new(classes: &'a [String], order: &'a [usize], version: &'a str, row: &'a Scored) -> Self {
        PredictResponse {
            prediction_id: &row.id,
            label: &classes[row.prediction.label],
            probabilities: ByClassName {
                classes,
                order,
                row,
            },
            model_version: version,
            explanation: row.explanation.as_deref().map(|terms| {
                terms
                    .iter()
                    .map(|c: &Contribution| TermContribution {
                        term: &c.term,
                        log_odds: c.log_odds,
                    })
                    .collect()
            }),
        }
    }
}

/// Classify one text.
#[utoipa::path(post, path = "/predict", request_body = PredictRequest,
    responses(
        (status = 200, description = "Prediction", body = PredictResponse),
        (status = 400, description = "Malformed JSON", body = crate::server::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::server::error::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::server::error::ErrorBody),
        (status = 422, description = "Invalid request", body = crate::server::error::ErrorBody),
        (status = 503, description = "Overloaded", body = crate::server::error::ErrorBody),
    ))]
pub async fn predict(
    State(state): State<AppState>,
    AppJson(req): AppJson<PredictRequest>,
) -> Result<Response, ApiError> {
    let model = state.default_model()?;
    answer_one(&state, model, req).await
}

/// Classify one text with the model `name`.
#[utoipa::path(post, path = "/models/{name}/predict", request_body = PredictRequest,
    params(("name" = String, Path, description = "Model name (as `GET /models` lists it)")),
    responses(
        (status = 200, description = "Prediction", body = PredictResponse),
        (status = 400, description = "Malformed JSON", body = crate::server::error::ErrorBody),
        (status = 404, description = "No such model: code model_not_found, naming the models there are", body = crate::server::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::server::error::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::server::error::ErrorBody),
        (status = 422, description = "Invalid request", body = crate::server::error::ErrorBody),
        (status = 503, description = "Overloaded, or the model is not being served (model_unavailable)", body = crate::server::error::ErrorBody),
    ))]
pub async fn predict_named(
    State(state): State<AppState>,
    Named(entry): Named,
    AppJson(req): AppJson<PredictRequest>,
) -> Result<Response, ApiError> {
    let model = entry.ready()?;
    answer_one(&state, model, req).await
}

async fn answer_one(
    state: &AppState,
    model: Arc<ServingModel>,
    req: PredictRequest,
) -> Result<Response, ApiError> {
    let (model, row) = score_text(state, model, req.text, req.explain).await?;
    let classes = model.loaded.classifier.classes();
    let order = name_order(classes);
    let version = &model.loaded.meta.model.version;
    let _encode = tracing::debug_span!("encode").entered();
    Ok(Json(PredictResponse::new(classes, &order, version, &row)).into_response())
}

/// Classify many texts with one model version.
#[utoipa::path(post, path = "/predict/batch", request_body = BatchRequest,
    responses(
        (status = 200, description = "Predictions", body = BatchResponse),
        (status = 400, description = "Malformed JSON", body = crate::server::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::server::error::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::server::error::ErrorBody),
        (status = 422, description = "Invalid request", body = crate::server::error::ErrorBody),
        (status = 503, description = "Overloaded", body = crate::server::error::ErrorBody),
    ))]
pub async fn predict_batch(
    State(state): State<AppState>,
    AppJson(req): AppJson<BatchRequest>,
) -> Result<Response, ApiError> {
    let model = state.default_model()?;
    answer_batch(&state, model, req).await
}

/// Classify many texts with the model `name`, one version for all.
#[utoipa::path(post, path = "/models/{name}/predict/batch", request_body = BatchRequest,
    params(("name" = String, Path, description = "Model name (as `GET /models` lists it)")),
    responses(
        (status = 200, description = "Predictions", body = BatchResponse),
        (status = 400, description = "Malformed JSON", body = crate::server::error::ErrorBody),
        (status = 404, description = "No such model: code model_not_found, naming the models there are", body = crate::server::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::server::error::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::server::error::ErrorBody),
        (status = 422, description = "Invalid request", body = crate::server::error::ErrorBody),
        (status = 503, description = "Overloaded, or the model is not being served (model_unavailable)", body = crate::server::error::ErrorBody),
    ))]
pub async fn predict_batch_named(
    State(state): State<AppState>,
    Named(entry): Named,
    AppJson(req): AppJson<BatchRequest>,
) -> Result<Response, ApiError> {
    let model = entry.ready()?;
    answer_batch(&state, model, req).await
}

async fn answer_batch(
    state: &AppState,
    model: Arc<ServingModel>,
    req: BatchRequest,
) -> Result<Response, ApiError> {
    let batch = score_batch(state, model, req.texts).await?;
    let classes = batch.model.loaded.classifier.classes();
    let order = name_order(classes);
    let version = &batch.model.loaded.meta.model.version;
    let predictions = batch
        .rows
        .iter()
        .map(|row| PredictResponse::new(classes, &order, version, row))
        .collect();
    let _encode = tracing::debug_span!("encode").entered();
    Ok(Json(BatchResponse {
        predictions,
        model_version: version,
    })
    .into_response())
}
