//! Writing an infer answer: a JSON body, or a JSON header and the binary
//! tensor data after it.
//!
//! Its size is bounded by the request limits and the model: at most
//! `server.max_batch_size` rows, each output at most once
//! ([`super::request`] refuses a repeated one), so per row a prediction id
//! (36 bytes and a comma), the label and the `C` probabilities, plus the
//! echoed request `id` (no longer than the request body) and a fixed
//! header. A served model has at most 100 classes with labels of at most
//! 256 bytes (`src/artifact.rs`): with the defaults (1,000 texts) that is
//! under 5 MB for any model; the shipped one (2 classes) answers 1,000
//! texts in about 100 KB.

use axum::http::{header, HeaderName};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::request::{Output, Wanted};
use super::types::{V2InferResponse, V2OutputTensor};
use super::HEADER_LENGTH;
use crate::server::loader::ServingModel;
use crate::server::routes::predict::PredictResponse;

fn probability(p: &PredictResponse, class: &str) -> f64 {
    p.probabilities.get(class).copied().unwrap_or(0.0)
}

/// Encodes an output's values as binary tensor data, in one allocation.
fn encode_binary(output: Output, predictions: &[PredictResponse], classes: &[String]) -> Vec<u8> {
    let size = match output {
        Output::Label => predictions.iter().map(|p| 4 + p.label.len()).sum(),
        Output::Probabilities => predictions.len() * classes.len() * 8,
    };
    let mut out = Vec::with_capacity(size);
    for p in predictions {
        match output {
            Output::Label => {
                out.extend_from_slice(&(p.label.len() as u32).to_le_bytes());
                out.extend_from_slice(p.label.as_bytes());
            }
            Output::Probabilities => {
                for c in classes {
                    out.extend_from_slice(&probability(p, c).to_le_bytes());
                }
            }
        }
    }
    out
}

/// An output's values as JSON, row-major.
fn encode_json(output: Output, predictions: &[PredictResponse], classes: &[String]) -> Value {
    match output {
        Output::Label => predictions
            .iter()
            .map(|p| Value::from(p.label.as_str()))
            .collect(),
        Output::Probabilities => predictions
            .iter()
            .flat_map(|p| classes.iter().map(|c| Value::from(probability(p, c))))
            .collect(),
    }
}

/// The answer's body, and the length of its JSON header when binary data
/// follows it. Each output in `outputs` is encoded once.
fn encode(
    answer: V2InferResponse,
    outputs: &[Wanted],
    predictions: &[PredictResponse],
    classes: &[String],
) -> (Vec<u8>, Option<usize>) {
    let mut answer = answer;
    let n = predictions.len();
    let mut binary = Vec::new();
    for w in outputs {
        let (datatype, shape) = match w.output {
            Output::Label => ("BYTES", vec![n]),
            Output::Probabilities => ("FP64", vec![n, classes.len()]),
        };
        let (parameters, data) = if w.binary {
            let bytes = encode_binary(w.output, predictions, classes);
            let mut p = Map::new();
            p.insert("binary_data_size".into(), bytes.len().into());
            if binary.is_empty() {
                binary = bytes;
            } else {
                binary.extend_from_slice(&bytes);
            }
            (Some(p), None)
        } else {
            (None, Some(encode_json(w.output, predictions, classes)))
        };
        answer.outputs.push(V2OutputTensor {
            name: w.output.name().into(),
            datatype: datatype.into(),
            shape,
            parameters,
            data,
        });
    }
    let mut body = serde_json::to_vec(&answer).unwrap_or_default();
    if !outputs.iter().any(|w| w.binary) {
        return (body, None);
    }
    let header_len = body.len();
    body.reserve_exact(binary.len());
    body.extend_from_slice(&binary);
    (body, Some(header_len))
}

/// Builds the answer: a JSON body, or a JSON header and binary data after it.
pub(super) fn infer_response(
    model: &ServingModel,
    id: Option<String>,
    outputs: &[Wanted],
    predictions: &[PredictResponse],
) -> Response {
    let meta = &model.loaded.meta;
    let ids: Vec<&str> = predictions
        .iter()
        .map(|p| p.prediction_id.as_str())
        .collect();
    let mut parameters = Map::new();
    parameters.insert("prediction_ids".into(), ids.join(",").into());
    let answer = V2InferResponse {
        model_name: meta.model.name.clone(),
        model_version: meta.model.version.clone(),
        id,
        parameters,
        outputs: Vec::with_capacity(outputs.len()),
    };
    match encode(answer, outputs, predictions, &meta.classes) {
        (body, None) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        (body, Some(header_len)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    HeaderName::from_static(HEADER_LENGTH),
                    header_len.to_string(),
                ),
            ],
            body,
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest label and class count a served model may have.
    const MAX_CLASSES: usize = 100;
    const MAX_LABEL: usize = 256;

    /// `n` predictions over `classes`, labelled with the last class.
    fn predictions(n: usize, classes: &[String]) -> Vec<PredictResponse> {
        (0..n)
            .map(|i| PredictResponse {
                prediction_id: format!("{:036}", i),
                label: classes[classes.len() - 1].clone(),
                // Probabilities with as many digits as an f64 prints.
                probabilities: classes
                    .iter()
                    .map(|c| (c.clone(), 1.234_567_890_123_456_7e-300))
                    .collect(),
                model_version: "v".into(),
                explanation: None,
            })
            .collect()
    }

    fn answer() -> V2InferResponse {
        V2InferResponse {
            model_name: "m".repeat(MAX_LABEL),
            model_version: "v".repeat(MAX_LABEL),
            id: None,
            parameters: Map::from_iter([(
                "prediction_ids".to_owned(),
                Value::from("x".repeat(37 * 1000)),
            )]),
            outputs: Vec::new(),
        }
    }

    /// The bound the module documents: per row a prediction id, a label
    /// (JSON-escaped: at most 6 bytes per byte, quotes, comma) and `C`
    /// numbers of at most 24 characters and a comma; plus a fixed header.
    fn bound(n: usize, classes: usize) -> usize {
        n * (37 + (6 * MAX_LABEL + 3) + 25 * classes) + 8 * 1024
    }

    #[test]
    fn the_largest_answer_stays_within_the_documented_bound() {
        // Control characters are escaped as \u00XX: the worst case per byte.
        let classes: Vec<String> = (0..MAX_CLASSES)
            .map(|i| format!("{i:03}{}", "\u{1}".repeat(MAX_LABEL - 3)))
            .collect();
        let n = 1000;
        let rows = predictions(n, &classes);
        let both = |binary| Output::ALL.map(|output| Wanted { output, binary }).to_vec();
        let (json, header) = encode(answer(), &both(false), &rows, &classes);
        assert_eq!(header, None);
        assert!(json.len() <= bound(n, MAX_CLASSES), "{}", json.len());
        assert!(json.len() < 5_000_000, "{}", json.len());
        let (binary, header) = encode(answer(), &both(true), &rows, &classes);
        let header = header.unwrap();
        assert_eq!(
            binary.len() - header,
            n * (4 + MAX_LABEL) + n * MAX_CLASSES * 8
        );
        assert!(binary.len() <= bound(n, MAX_CLASSES));
    }

    #[test]
    fn each_output_is_encoded_once_in_the_order_asked() {
        let classes = vec!["ham".to_owned(), "spam".to_owned()];
        let rows = predictions(3, &classes);
        let asked = [
            Wanted {
                output: Output::Probabilities,
                binary: true,
            },
            Wanted {
                output: Output::Label,
                binary: false,
            },
        ];
        let (body, header) = encode(answer(), &asked, &rows, &classes);
        let header = header.unwrap();
        let json: Value = serde_json::from_slice(&body[..header]).unwrap();
        let outputs = json["outputs"].as_array().unwrap();
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[0]["name"], "probabilities");
        assert_eq!(outputs[0]["parameters"]["binary_data_size"], 3 * 2 * 8);
        assert_eq!(
            outputs[1]["data"],
            serde_json::json!(["spam", "spam", "spam"])
        );
        assert_eq!(body.len() - header, 3 * 2 * 8);
    }
}
