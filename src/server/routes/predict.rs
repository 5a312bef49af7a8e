//! `POST /predict` and `POST /predict/batch`: the native JSON answers,
//! written straight from the class-indexed scores.

use axum::body::Body;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
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

impl<'a> From<&'a Contribution> for TermContribution<'a> {
    fn from(c: &'a Contribution) -> Self {
        TermContribution {
            term: &c.term,
            log_odds: c.log_odds,
        }
    }
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

/// Calls `f` with the class indices sorted by class name: worked out once
/// per answer, so no cell is looked up by name; on the stack for the usual
/// few classes.
fn with_name_order<R>(classes: &[String], f: impl FnOnce(&[usize]) -> R) -> R {
    const ON_STACK: usize = 16;
    let sort = |order: &mut [usize]| {
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = i;
        }
        order.sort_unstable_by(|&a, &b| classes[a].cmp(&classes[b]));
    };
    if classes.len() <= ON_STACK {
        let mut order = [0usize; ON_STACK];
        let order = &mut order[..classes.len()];
        sort(order);
        f(order)
    } else {
        let mut order = vec![0; classes.len()];
        sort(&mut order);
        f(&order)
    }
}

#[cfg(test)]
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
            explanation: row
                .explanation
                .as_deref()
                .map(|terms| terms.iter().map(TermContribution::from).collect()),
        }
    }
}

/// The answers of the four predict routes, for the OpenAPI document: one
/// list, `BATCH` choosing the answer's schema and `NAMED` adding what a
/// route naming its model can answer (its schemas are registered in
/// [`crate::server::openapi::ApiDoc`]).
pub struct PredictAnswers<const BATCH: bool, const NAMED: bool>;

/// `POST /predict`'s answers.
pub type PredictOne = PredictAnswers<false, false>;
/// `POST /models/{name}/predict`'s answers.
pub type PredictOneNamed = PredictAnswers<false, true>;
/// `POST /predict/batch`'s answers.
pub type PredictMany = PredictAnswers<true, false>;
/// `POST /models/{name}/predict/batch`'s answers.
pub type PredictManyNamed = PredictAnswers<true, true>;

impl<const BATCH: bool, const NAMED: bool> utoipa::IntoResponses for PredictAnswers<BATCH, NAMED> {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        use crate::server::openapi::json_answer as answer;
        use utoipa::openapi::ResponsesBuilder;
        let error = |description: &str| answer(description, "ErrorBody");
        let ok = if BATCH {
            answer("Predictions", "BatchResponse")
        } else {
            answer("Prediction", "PredictResponse")
        };
        let mut responses = ResponsesBuilder::new()
            .response("200", ok)
            .response("400", error("Malformed JSON"));
        if NAMED {
            responses = responses.response(
                "404",
                error("No such model: code model_not_found, naming the models there are"),
            );
        }
        let overloaded = if NAMED {
            "Overloaded, or the model is not being served (model_unavailable)"
        } else {
            "Overloaded"
        };
        responses
            .response("413", error("Body too large"))
            .response("415", error("Not JSON"))
            .response("422", error("Invalid request"))
            .response("503", error(overloaded))
            .build()
            .into()
    }
}

/// Classify one text.
#[utoipa::path(post, path = "/predict", request_body = PredictRequest,
    responses(PredictOne))]
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
    responses(PredictOneNamed))]
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
    let version = &model.loaded.meta.model.version;
    let _encode = tracing::debug_span!("encode").entered();
    let mut out = Vec::with_capacity(256);
    with_name_order(classes, |order| {
        write_prediction(&mut out, classes, order, version, &row);
    });
    Ok(json_response(out))
}

/// Classify many texts with one model version.
#[utoipa::path(post, path = "/predict/batch", request_body = BatchRequest,
    responses(PredictMany))]
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
    responses(PredictManyNamed))]
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
    let version = &batch.model.loaded.meta.model.version;
    let _encode = tracing::debug_span!("encode").entered();
    let mut out = Vec::with_capacity(64 + 160 * batch.rows.len());
    with_name_order(classes, |order| {
        write_batch(&mut out, classes, order, version, &batch.rows);
    });
    Ok(json_response(out))
}

/// Writes one prediction: the JSON serde writes for [`PredictResponse`]
/// (a test holds them equal), without its per-field machinery — the id as
/// text through `fmt`, a buffer grown field by field.
fn write_prediction(
    out: &mut Vec<u8>,
    classes: &[String],
    order: &[usize],
    version: &str,
    row: &Scored,
) {
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(b"{\"prediction_id\":\"");
    out.extend_from_slice(row.id.hyphenated().encode_lower(&mut id).as_bytes());
    out.extend_from_slice(b"\",\"label\":");
    write_json(out, &classes[row.prediction.label]);
    out.extend_from_slice(b",\"probabilities\":{");
    for (n, &c) in order.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_json(out, &classes[c]);
        out.push(b':');
        write_json(out, &row.prediction.log_probabilities[c].exp());
    }
    out.extend_from_slice(b"},\"model_version\":");
    write_json(out, version);
    if let Some(terms) = &row.explanation {
        out.extend_from_slice(b",\"explanation\":");
        let terms: Vec<TermContribution> = terms.iter().map(TermContribution::from).collect();
        write_json(out, &terms);
    }
    out.push(b'}');
}

/// Writes a batch's answer: the JSON of [`BatchResponse`].
fn write_batch(
    out: &mut Vec<u8>,
    classes: &[String],
    order: &[usize],
    version: &str,
    rows: &[Scored],
) {
    out.extend_from_slice(b"{\"predictions\":[");
    for (n, row) in rows.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_prediction(out, classes, order, version, row);
    }
    out.extend_from_slice(b"],\"model_version\":");
    write_json(out, version);
    out.push(b'}');
}

/// Appends `value` as JSON (a string escaped, a non-finite number `null`).
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("strings, numbers and terms serialise into memory");
}

/// A 200 answer with a JSON body, as `axum::Json` makes it.
fn json_response(body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::Prediction;

    fn row(label: usize, log_probabilities: Vec<f64>, explain: bool) -> Scored {
        Scored {
            id: Uuid::from_u128(0x0123_4567_89ab_8def_8123_4567_89ab_cdef),
            prediction: Prediction {
                label,
                log_probabilities,
                tokens: 3,
                oov_tokens: 1,
            },
            explanation: explain.then(|| {
                vec![
                    Contribution {
                        term: "fr\u{e9}e \"money\"".into(),
                        log_odds: 2.5,
                    },
                    Contribution {
                        term: "now".into(),
                        log_odds: 1e-300,
                    },
                ]
            }),
        }
    }

    /// Class names and versions that need escaping, out of name order, and
    /// probabilities serde writes in its shortest form.
    fn cases() -> Vec<(Vec<String>, String, Vec<Scored>)> {
        let classes = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        vec![
            (
                classes(&["spam", "ham"]),
                "2026.11.30".into(),
                vec![row(0, vec![-0.01, -4.6], false)],
            ),
            (
                classes(&["zeta \"q\"", "alpha\\b", "\u{1}ctl", "\u{e9}t\u{e9}\n"]),
                "v\"1\"\t".into(),
                vec![
                    row(2, vec![-2.0, -1.5, -0.3, -3.0], true),
                    row(1, vec![-1e-17, -40.0, -745.2, -0.7], false),
                ],
            ),
            (
                classes(&["b", "a"]),
                String::new(),
                vec![row(1, vec![f64::NEG_INFINITY, 0.0], true)],
            ),
        ]
    }

    #[test]
    fn one_prediction_is_written_as_serde_writes_it() {
        for (classes, version, rows) in cases() {
            for r in &rows {
                let mut written = Vec::new();
                with_name_order(&classes, |order| {
                    write_prediction(&mut written, &classes, order, &version, r);
                    let serde =
                        serde_json::to_vec(&PredictResponse::new(&classes, order, &version, r));
                    assert_eq!(
                        String::from_utf8(written).unwrap(),
                        String::from_utf8(serde.unwrap()).unwrap()
                    );
                });
            }
        }
    }

    #[test]
    fn a_batch_is_written_as_serde_writes_it() {
        for (classes, version, rows) in cases() {
            let mut written = Vec::new();
            with_name_order(&classes, |order| {
                write_batch(&mut written, &classes, order, &version, &rows);
                let serde = serde_json::to_vec(&BatchResponse {
                    predictions: rows
                        .iter()
                        .map(|r| PredictResponse::new(&classes, order, &version, r))
                        .collect(),
                    model_version: &version,
                });
                assert_eq!(
                    String::from_utf8(written).unwrap(),
                    String::from_utf8(serde.unwrap()).unwrap()
                );
            });
        }
    }

    #[test]
    fn name_order_sorts_few_and_many_classes() {
        let few: Vec<String> = ["c", "a", "b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(with_name_order(&few, <[usize]>::to_vec), [1, 2, 0]);
        let many: Vec<String> = (0..40).rev().map(|i| format!("class{i:02}")).collect();
        let expected: Vec<usize> = (0..40).rev().collect();
        assert_eq!(with_name_order(&many, <[usize]>::to_vec), expected);
    }
}
