//! The infer request and response as they travel (the JSON body, or the
//! JSON header of a binary-extension body).
//!
//! What a client may put anywhere (`parameters` values, the input's `data`)
//! is kept as the raw JSON text ([`RawValue`]), not parsed into a
//! `serde_json::Value` tree: a tree costs tens of bytes per `[]` or `""`
//! of the body, raw text one. [`super::request`] reads what it needs from
//! it, the texts up to the declared count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// `parameters` of a request or of one of its tensors: names to raw JSON
/// values (a name given twice keeps the last value).
pub type RawParameters = BTreeMap<String, Box<RawValue>>;

/// An input tensor.
#[derive(Debug, Deserialize, ToSchema)]
pub struct V2InputTensor {
    /// Must be `text`.
    pub name: String,
    /// `[N]`.
    pub shape: Vec<i64>,
    /// Must be `BYTES`.
    pub datatype: String,
    /// `binary_data_size` when the data follows the JSON header.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<RawParameters>,
    /// The texts (flat or nested, row-major) unless sent as binary.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub data: Option<Box<RawValue>>,
}

/// A requested output.
#[derive(Debug, Deserialize, ToSchema)]
pub struct V2RequestedOutput {
    /// `label` or `probabilities`.
    pub name: String,
    /// `binary_data: true` to get it as binary tensor data.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<RawParameters>,
}

/// An inference request (the JSON header of a binary-extension body).
#[derive(Debug, Deserialize, ToSchema)]
pub struct V2InferRequest {
    /// Echoed in the response.
    #[serde(default)]
    pub id: Option<String>,
    /// `binary_data_output: true` for every output as binary tensor data.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<RawParameters>,
    /// Exactly one: `text`.
    pub inputs: Vec<V2InputTensor>,
    /// Outputs to return, each at most once (default: all).
    #[serde(default)]
    pub outputs: Option<Vec<V2RequestedOutput>>,
}

/// An output tensor.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2OutputTensor {
    /// `label` or `probabilities`.
    pub name: String,
    /// `BYTES` or `FP64`.
    pub datatype: String,
    /// `[N]` or `[N, C]`.
    pub shape: Vec<usize>,
    /// `binary_data_size` when the data follows the JSON header.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// The values, row-major, unless sent as binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<Value>,
}

/// An inference response (the JSON header of a binary-extension body).
#[derive(Debug, Serialize, ToSchema)]
pub struct V2InferResponse {
    /// The served model's name.
    pub model_name: String,
    /// Its version.
    pub model_version: String,
    /// The request's `id`, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `prediction_ids`: the ids for `POST /feedback`, comma-separated, in order.
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// The outputs asked for, in the order asked.
    pub outputs: Vec<V2OutputTensor>,
}
