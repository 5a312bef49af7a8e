//! The artifact's stored form: every field of the file, and the checksum
//! that covers them.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::classifier::{
    DfBound, Evaluation, ModelKind, NbParameters, TuningReport, VectorizerOptions,
};

use super::TOKEN_PATTERN;

/// Name and version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelId {
    /// Model name, e.g. `spam-nb`.
    pub name: String,
    /// Model version, e.g. `2026.11.25`.
    pub version: String,
}

/// How the vectorizer turns text into features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorizerSpec {
    /// Lowercase before tokenizing.
    pub lowercase: bool,
    /// The token regular expression (Python syntax).
    pub token_pattern: String,
    /// Features are presence/absence, not counts.
    pub binary: bool,
    /// `min_df` (absent in schema 1: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_df: Option<DfBound>,
    /// `max_df` (absent in schema 1: 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_df: Option<DfBound>,
    /// `max_features`, 0 = no limit (absent in schema 1: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_features: Option<u64>,
}

impl Default for VectorizerSpec {
    fn default() -> Self {
        Self::new(&VectorizerOptions::default())
    }
}

impl VectorizerSpec {
    /// The spec of a vectorizer with these options.
    pub fn new(options: &VectorizerOptions) -> Self {
        Self {
            lowercase: true,
            token_pattern: TOKEN_PATTERN.to_owned(),
            binary: options.binary,
            min_df: Some(options.min_df),
            max_df: Some(options.max_df),
            max_features: Some(options.max_features),
        }
    }

    /// The options, with scikit-learn's defaults for absent ones.
    pub fn options(&self) -> VectorizerOptions {
        let d = VectorizerOptions::default();
        VectorizerOptions {
            min_df: self.min_df.unwrap_or(d.min_df),
            max_df: self.max_df.unwrap_or(d.max_df),
            max_features: self.max_features.unwrap_or(d.max_features),
            binary: self.binary,
        }
    }
}

/// Training parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingParams {
    /// Smoothing.
    pub alpha: f64,
    /// Held-out share, when the evaluation used a random split.
    pub test_size: Option<f64>,
    /// Split seed, when the evaluation used a random split.
    pub seed: Option<u64>,
    /// `stratified_split` or `test_file`.
    pub evaluated_on: String,
    /// The vectorizer.
    pub vectorizer: VectorizerSpec,
    /// The model (absent in schema 1: Bernoulli NB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelKind>,
}

impl TrainingParams {
    /// The model kind, Bernoulli when the file does not say.
    pub fn model_kind(&self) -> ModelKind {
        self.model.unwrap_or_default()
    }
}

/// Temperature scaling fitted on out-of-fold predictions of the training part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Always `temperature`: probabilities are `softmax(jll / temperature)`.
    pub method: String,
    /// The fitted temperature (> 0).
    pub temperature: f64,
    /// Cross-validation folds that produced the out-of-fold scores.
    pub folds: u32,
    /// Seed of those folds.
    pub seed: u64,
    /// Mean out-of-fold log loss at temperature 1 (scikit-learn's probabilities).
    pub log_loss_before: f64,
    /// Mean out-of-fold log loss at the fitted temperature.
    pub log_loss_after: f64,
}

/// What the model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetFingerprint {
    /// sha256 (hex) of the training CSV.
    pub sha256: String,
    /// Documents in that file.
    pub documents: u64,
    /// Documents per label in that file.
    pub class_counts: BTreeMap<String, u64>,
    /// sha256 of the separate test CSV, when one was given.
    pub test_sha256: Option<String>,
}

/// The file as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`SCHEMA_VERSION`] for files this build writes.
    pub schema_version: u32,
    /// Name and version.
    pub model: ModelId,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Training parameters.
    pub training: TrainingParams,
    /// Training-data fingerprint.
    pub dataset: DatasetFingerprint,
    /// Class labels in index order.
    pub classes: Vec<String>,
    /// Held-out evaluation measured at training time.
    pub evaluation: Option<Evaluation>,
    /// Probability calibration, when fitted (`tune`, `train --calibrate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// The cross-validated search that chose the parameters (`tune`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<TuningReport>,
    /// Sorted terms; position = feature index.
    pub vocabulary: Vec<String>,
    /// Fitted counts.
    pub parameters: NbParameters,
    /// The MLflow run that trained it, when training was tracked. Absent
    /// from untracked (and older) files, so their checksums are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow_run_id: Option<String>,
    /// The sufficient statistics of every document fitted (schema 3 only):
    /// a counts file ([`crate::classifier::stats::format`]) as standard
    /// base64, every term seen including the pruned ones, so the model can
    /// learn and forget exactly. Absent from older schemas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<String>,
    /// `sha256:<hex>` over the canonical content.
    pub checksum: String,
}

impl Artifact {
    /// The checksum of the content as it is now.
    ///
    /// The canonical JSON is hashed as it is written, through a 64 KiB buffer:
    /// materialising it would allocate (and copy) a buffer larger than the
    /// file on every load.
    pub fn compute_checksum(&self) -> String {
        let mut out = BufWriter::with_capacity(64 * 1024, HashWriter(Sha256::new()));
        serde_json::to_writer(&mut out, &CanonicalView(self)).expect("artifact serialises");
        let HashWriter(hasher) = out
            .into_inner()
            .unwrap_or_else(|_| unreachable!("hashing never fails"));
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }

    /// Whether `self` scores every text exactly as `other` does: the same
    /// classes, vocabulary, fitted counts, smoothing, model kind, vectorizer
    /// and calibration temperature. Name, version, creation time, dataset
    /// fingerprint, evaluation, tuning report, MLflow run and checksum are
    /// description, not scoring, and are ignored; absent schema-1 fields
    /// compare as their defaults.
    pub fn predicts_like(&self, other: &Artifact) -> bool {
        let (a, b) = (&self.training, &other.training);
        let (va, vb) = (&a.vectorizer, &b.vectorizer);
        self.classes == other.classes
            && self.vocabulary == other.vocabulary
            && self.parameters == other.parameters
            && a.alpha == b.alpha
            && a.model_kind() == b.model_kind()
            && va.lowercase == vb.lowercase
            && va.token_pattern == vb.token_pattern
            && va.binary == vb.binary
            && va.options() == vb.options()
            && self.calibration.as_ref().map(|c| c.temperature)
                == other.calibration.as_ref().map(|c| c.temperature)
    }

    /// Sets `checksum` from the content.
    pub fn seal(&mut self) {
        self.checksum = self.compute_checksum();
    }

    /// Compact JSON bytes of the sealed artifact.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("artifact serialises")
    }

    /// The exact bytes [`Artifact::save`] writes (JSON and a final newline).
    pub fn file_bytes(&self) -> Vec<u8> {
        let mut bytes = self.to_bytes();
        bytes.push(b'\n');
        bytes
    }
}

/// Feeds what is written to it into a hash.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serialises an artifact with an empty checksum without cloning it.
pub(super) struct CanonicalView<'a>(pub(super) &'a Artifact);

impl Serialize for CanonicalView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let a = self.0;
        let mut st = s.serialize_struct("Artifact", 15)?;
        st.serialize_field("format", &a.format)?;
        st.serialize_field("schema_version", &a.schema_version)?;
        st.serialize_field("model", &a.model)?;
        st.serialize_field("created_at", &a.created_at)?;
        st.serialize_field("training", &a.training)?;
        st.serialize_field("dataset", &a.dataset)?;
        st.serialize_field("classes", &a.classes)?;
        st.serialize_field("evaluation", &a.evaluation)?;
        // Absent rather than null, as the derived Serialize writes them.
        match &a.calibration {
            Some(c) => st.serialize_field("calibration", c)?,
            None => st.skip_field("calibration")?,
        }
        match &a.tuning {
            Some(t) => st.serialize_field("tuning", t)?,
            None => st.skip_field("tuning")?,
        }
        st.serialize_field("vocabulary", &a.vocabulary)?;
        st.serialize_field("parameters", &a.parameters)?;
        match &a.mlflow_run_id {
            Some(id) => st.serialize_field("mlflow_run_id", id)?,
            None => st.skip_field("mlflow_run_id")?,
        }
        match &a.statistics {
            Some(s) => st.serialize_field("statistics", s)?,
            None => st.skip_field("statistics")?,
        }
        st.serialize_field("checksum", "")?;
        st.end()
    }
}
