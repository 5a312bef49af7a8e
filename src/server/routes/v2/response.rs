//! Writing an infer answer: a JSON body, or a JSON header and the binary
//! tensor data after it, written straight from the scores (labels and
//! probability columns taken by class index, in the model's class order).
//!
//! Its size is bounded by the request limits and the model: at most
//! `server.max_batch_size` rows, each output at most once
//! ([`super::request`] refuses a repeated one), so per row a prediction id
//! (36 bytes and a comma), the label and the `C` probabilities, plus the
//! echoed request `id` (no longer than the request body) and a fixed
//! header. A served model has at most 100 classes with labels of at most
//! 256 bytes (`src/artifact.rs`): with the defaults (1,000 texts) that is
//! under 5 MB for any model, and far less for a model with few classes.

use std::fmt;

use axum::http::{header, HeaderName};
use axum::response::{IntoResponse, Response};
use serde::{Serialize, Serializer};

use super::binary::{bytes_size, put_bytes, put_fp64, HEADER_LENGTH};
use super::types::{
    BinaryDataSize, InferParameters, Output, V2InferResponse, V2OutputTensor, Wanted,
};
use crate::server::scoring::{Scored, ScoredBatch};

/// The rows' prediction ids, comma-separated (protocol parameters are
/// scalars), written without building the string first.
#[derive(Debug)]
pub struct PredictionIds<'a>(&'a [Scored]);

impl fmt::Display for PredictionIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, row) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            fmt::Display::fmt(&row.id, f)?;
        }
        Ok(())
    }
}

impl Serialize for PredictionIds<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The predicted labels, in row order.
fn labels<'a>(rows: &'a [Scored], classes: &'a [String]) -> impl Iterator<Item = &'a str> {
    rows.iter()
        .map(move |row| classes[row.prediction.label].as_str())
}

/// The probabilities, row-major: each row's in the model's class order.
fn probabilities(rows: &[Scored]) -> impl Iterator<Item = f64> + '_ {
    rows.iter().flat_map(Scored::probabilities)
}

/// An output's values as JSON data, row-major, written from the rows.
#[derive(Debug)]
pub struct TensorData<'a> {
    output: Output,
    rows: &'a [Scored],
    classes: &'a [String],
}

impl Serialize for TensorData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.output {
            Output::Label => serializer.collect_seq(labels(self.rows, self.classes)),
            Output::Probabilities => serializer.collect_seq(probabilities(self.rows)),
        }
    }
}

/// Encodes an output's values as binary tensor data, in one allocation.
fn encode_binary(output: Output, rows: &[Scored], classes: &[String]) -> Vec<u8> {
    match output {
        Output::Label => {
            let mut out = Vec::with_capacity(bytes_size(labels(rows, classes)));
            put_bytes(&mut out, labels(rows, classes));
            out
        }
        Output::Probabilities => {
            let mut out = Vec::with_capacity(rows.len() * classes.len() * 8);
            put_fp64(&mut out, probabilities(rows));
            out
        }
    }
}

/// The answer's body, and the length of its JSON header when binary data
/// follows it. Each output in `outputs` is encoded once.
fn encode<'a>(
    mut answer: V2InferResponse<'a>,
    outputs: &[Wanted],
    rows: &'a [Scored],
    classes: &'a [String],
) -> (Vec<u8>, Option<usize>) {
    let n = rows.len();
    let mut binary = Vec::new();
    for w in outputs {
        let shape = match w.output {
            Output::Label => vec![n],
            Output::Probabilities => vec![n, classes.len()],
        };
        let (parameters, data) = if w.binary {
            let bytes = encode_binary(w.output, rows, classes);
            let size = BinaryDataSize {
                binary_data_size: bytes.len(),
            };
            if binary.is_empty() {
                binary = bytes;
            } else {
                binary.extend_from_slice(&bytes);
            }
            (Some(size), None)
        } else {
            let data = TensorData {
                output: w.output,
                rows,
                classes,
            };
            (None, Some(data))
        };
        answer.outputs.push(V2OutputTensor {
            name: w.output.name(),
            datatype: w.output.datatype(),
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

/// Builds the answer from the batch, with the model that scored it: a JSON
/// body, or a JSON header and binary data after it.
pub(super) fn infer_response(
    batch: &ScoredBatch,
    id: Option<String>,
    outputs: &[Wanted],
) -> Response {
    let loaded = &batch.model.loaded;
    let answer = V2InferResponse {
        // The server's name for the model, as the request named it.
        model_name: &batch.model.profile.model,
        model_version: &loaded.meta.model.version,
        id,
        parameters: InferParameters {
            prediction_ids: PredictionIds(&batch.rows),
        },
        outputs: Vec::with_capacity(outputs.len()),
    };
    let classes = loaded.classifier.classes();
    match encode(answer, outputs, &batch.rows, classes) {
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
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;
    use crate::classifier::Prediction;

    /// The largest label and class count a served model may have.
    const MAX_CLASSES: usize = 100;
    const MAX_LABEL: usize = 256;

    /// `n` rows over `classes`, labelled with the last class, each
    /// probability with as many digits as an f64 prints.
    fn rows(n: usize, classes: &[String]) -> Vec<Scored> {
        (0..n)
            .map(|i| Scored {
                id: Uuid::from_u128(u128::MAX - i as u128),
                prediction: Prediction {
                    label: classes.len() - 1,
                    log_probabilities: vec![-690.123_456_789_012_3; classes.len()],
                    tokens: 0,
                    oov_tokens: 0,
                },
                explanation: None,
            })
            .collect()
    }

    /// An answer with the longest model name and version.
    fn answer<'a>(rows: &'a [Scored], name: &'a str) -> V2InferResponse<'a> {
        V2InferResponse {
            model_name: name,
            model_version: name,
            id: None,
            parameters: InferParameters {
                prediction_ids: PredictionIds(rows),
            },
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
        let name = "m".repeat(MAX_LABEL);
        let n = 1000;
        let rows = rows(n, &classes);
        let both = |binary| Output::ALL.map(|output| Wanted { output, binary }).to_vec();
        let (json, header) = encode(answer(&rows, &name), &both(false), &rows, &classes);
        assert_eq!(header, None);
        assert!(json.len() <= bound(n, MAX_CLASSES), "{}", json.len());
        assert!(json.len() < 5_000_000, "{}", json.len());
        let (binary, header) = encode(answer(&rows, &name), &both(true), &rows, &classes);
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
        let rows = rows(3, &classes);
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
        let (body, header) = encode(answer(&rows, "m"), &asked, &rows, &classes);
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

    #[test]
    fn columns_follow_the_class_order_and_ids_the_rows() {
        // Classes not in name order: each column is its class's, by index.
        let classes = vec!["spam".to_owned(), "ham".to_owned()];
        let mut rows = rows(2, &classes);
        rows[0].prediction.log_probabilities = vec![0.25f64.ln(), 0.75f64.ln()];
        rows[0].prediction.label = 1;
        rows[1].prediction.log_probabilities = vec![0.5f64.ln(), 0.5f64.ln()];
        rows[1].prediction.label = 0;
        let asked = Output::ALL.map(|output| Wanted {
            output,
            binary: false,
        });
        let (body, header) = encode(answer(&rows, "m"), &asked, &rows, &classes);
        assert_eq!(header, None);
        let json: Value = serde_json::from_slice(&body).unwrap();
        let expected: Vec<f64> = [0.25f64, 0.75, 0.5, 0.5]
            .iter()
            .map(|p| p.ln().exp())
            .collect();
        assert_eq!(
            json["outputs"][0]["data"],
            serde_json::json!(["ham", "spam"])
        );
        assert_eq!(json["outputs"][1]["data"], serde_json::json!(expected));
        assert_eq!(json["outputs"][1]["shape"], serde_json::json!([2, 2]));
        let ids = format!("{},{}", rows[0].id, rows[1].id);
        assert_eq!(json["parameters"]["prediction_ids"], ids.as_str());
        let binary = encode_binary(Output::Probabilities, &rows, &classes);
        let decoded: Vec<f64> = binary
            .chunks(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, expected);
        let labels = encode_binary(Output::Label, &rows, &classes);
        assert_eq!(labels, b"\x03\0\0\0ham\x04\0\0\0spam");
    }
}
