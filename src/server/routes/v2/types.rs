//! What travels: the infer request and answer (the JSON body, or the JSON
//! header of a binary-extension body), the metadata and health answers, the
//! error body, and the model's tensors.
//!
//! What a client may put anywhere (`parameters` values, the input's `data`)
//! is kept as the raw JSON text ([`RawValue`]), not parsed into a
//! `serde_json::Value` tree: a tree costs tens of bytes per `[]` or `""`
//! of the body, raw text one. [`super::request`] reads what it needs from
//! it, the texts up to the declared count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::response::{PredictionIds, TensorData};

/// The one input tensor.
pub(super) const INPUT: &str = "text";

/// An output tensor of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Output {
    /// `label`: `BYTES`, `[N]`.
    Label,
    /// `probabilities`: `FP64`, `[N, C]`.
    Probabilities,
}

impl Output {
    /// Every output, in the default order.
    pub(super) const ALL: [Output; 2] = [Output::Label, Output::Probabilities];

    /// The tensor's name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Output::Label => "label",
            Output::Probabilities => "probabilities",
        }
    }

    /// The tensor's datatype.
    pub(super) fn datatype(self) -> &'static str {
        match self {
            Output::Label => "BYTES",
            Output::Probabilities => "FP64",
        }
    }
}

/// An output to send, and whether as binary tensor data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wanted {
    pub output: Output,
    pub binary: bool,
}

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

/// `parameters` of an output sent as binary tensor data.
#[derive(Debug, Serialize)]
pub struct BinaryDataSize {
    /// Bytes of the output's data after the JSON header.
    pub binary_data_size: usize,
}

/// An output tensor.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2OutputTensor<'a> {
    /// `label` or `probabilities`.
    pub name: &'static str,
    /// `BYTES` or `FP64`.
    pub datatype: &'static str,
    /// `[N]` or `[N, C]`.
    pub shape: Vec<usize>,
    /// `binary_data_size` when the data follows the JSON header.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<BinaryDataSize>,
    /// The values, row-major, unless sent as binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<TensorData<'a>>,
}

/// `parameters` of an inference response.
#[derive(Debug, Serialize)]
pub struct InferParameters<'a> {
    /// The ids for `POST /feedback`, comma-separated, in order.
    pub prediction_ids: PredictionIds<'a>,
}

/// An inference response (the JSON header of a binary-extension body).
#[derive(Debug, Serialize, ToSchema)]
pub struct V2InferResponse<'a> {
    /// The served model's name.
    pub model_name: &'a str,
    /// Its version.
    pub model_version: &'a str,
    /// The request's `id`, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `prediction_ids`: the ids for `POST /feedback`, comma-separated, in order.
    #[schema(value_type = Object)]
    pub parameters: InferParameters<'a>,
    /// The outputs asked for, in the order asked.
    pub outputs: Vec<V2OutputTensor<'a>>,
}

/// A protocol error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct V2ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// Server metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2ServerMetadata {
    /// `nbserve`.
    pub name: String,
    /// The server's version.
    pub version: String,
    /// Protocol extensions supported.
    pub extensions: Vec<String>,
}

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2LiveResponse {
    /// Always true while the process serves.
    pub live: bool,
}

/// Readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2ReadyResponse {
    /// True while the server takes traffic.
    pub ready: bool,
}

/// Model readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2ModelReadyResponse {
    /// The model's name.
    pub name: String,
    /// True while it is served.
    pub ready: bool,
}

/// A tensor's name, datatype and shape (-1: any size).
#[derive(Debug, Serialize, ToSchema)]
pub struct V2TensorMetadata {
    /// Tensor name.
    pub name: String,
    /// Protocol datatype.
    pub datatype: String,
    /// Shape; -1 for a variable dimension.
    pub shape: Vec<i64>,
}

/// Model metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2ModelMetadata {
    /// Model name.
    pub name: String,
    /// The one version served.
    pub versions: Vec<String>,
    /// `nbserve_<kind>_nb`, the served model's kind: `nbserve_bernoulli_nb`,
    /// `nbserve_multinomial_nb` or `nbserve_complement_nb`.
    pub platform: String,
    /// The input: `text`, `BYTES`, `[-1]`.
    pub inputs: Vec<V2TensorMetadata>,
    /// The outputs: `label` and `probabilities`.
    pub outputs: Vec<V2TensorMetadata>,
    /// The class labels: the columns of `probabilities`, in order.
    pub classes: Vec<String>,
}
