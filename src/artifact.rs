//! The model artifact: a versioned, self-describing, checksummed JSON file.
//!
//! The checksum is the sha256 of the compact JSON serialisation of every
//! field except `checksum` itself (serialised as an empty string), so it is
//! independent of how the file is formatted but covers every value in it.
//! Files are written compact, so every byte of a shipped file is significant.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::classifier::{
    BernoulliNb, Classifier, Evaluation, ModelError, NbParameters, Vocabulary, VocabularyError,
};

/// The `format` value of every nbserve artifact.
pub const FORMAT: &str = "nbserve-bernoulli-nb";
/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// The token pattern the tokenizer implements (recorded for readers of the file).
pub const TOKEN_PATTERN: &str = r"(?u)\b\w\w+\b";

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
}

impl Default for VectorizerSpec {
    fn default() -> Self {
        Self {
            lowercase: true,
            token_pattern: TOKEN_PATTERN.to_owned(),
            binary: true,
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
    /// Sorted terms; position = feature index.
    pub vocabulary: Vec<String>,
    /// Fitted counts.
    pub parameters: NbParameters,
    /// `sha256:<hex>` over the canonical content.
    pub checksum: String,
}

/// Why an artifact cannot be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The file could not be read or written.
    #[error("cannot access model file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not parseable JSON.
    #[error("model file is not valid JSON ({0}); a model is the JSON file `nbserve train` writes")]
    NotJson(String),
    /// Valid JSON but not an nbserve artifact.
    #[error("unknown model format {found:?} (expected {FORMAT:?})")]
    UnknownFormat {
        /// What the file says.
        found: String,
    },
    /// A schema version this build does not read.
    #[error("unsupported schema version {found} (this build reads {SCHEMA_VERSION})")]
    UnsupportedSchema {
        /// What the file says.
        found: String,
    },
    /// Fields missing or of the wrong type.
    #[error("model file does not match the schema: {0}")]
    Schema(String),
    /// Content does not match the stored checksum.
    #[error("checksum mismatch: file says {expected}, content hashes to {actual}")]
    ChecksumMismatch {
        /// Stored checksum.
        expected: String,
        /// Computed checksum.
        actual: String,
    },
    /// Array lengths disagree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// NaN or infinity where a number is required.
    #[error("non-finite or out-of-range number in {0}")]
    NonFinite(&'static str),
    /// No evaluation block: the gate has nothing to check.
    #[error("model has no evaluation block; it cannot be gated or served")]
    MissingEvaluation,
    /// The vocabulary is unusable.
    #[error("invalid vocabulary: {0}")]
    Vocabulary(#[from] VocabularyError),
    /// The parameters are unusable.
    #[error("invalid parameters: {0}")]
    Model(#[from] ModelError),
}

/// Everything about a loaded model except its scoring tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelMeta {
    /// Name and version.
    pub model: ModelId,
    /// `sha256:<hex>` of the content.
    pub checksum: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Training parameters.
    pub training: TrainingParams,
    /// Training-data fingerprint.
    pub dataset: DatasetFingerprint,
    /// Class labels.
    pub classes: Vec<String>,
    /// Vocabulary size.
    pub vocabulary_size: usize,
    /// Stored evaluation.
    pub evaluation: Evaluation,
}

/// A validated model, ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The scorer.
    pub classifier: Classifier,
    /// Its description.
    pub meta: ModelMeta,
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

    /// Sets `checksum` from the content.
    pub fn seal(&mut self) {
        self.checksum = self.compute_checksum();
    }

    /// Compact JSON bytes of the sealed artifact.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("artifact serialises")
    }

    /// Writes atomically: a temporary file in the same directory, synced, then
    /// renamed over `path`, so a reader never sees a half-written model.
    pub fn save(&self, path: &Path) -> Result<(), ArtifactError> {
        let io = |source| ArtifactError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("model");
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.to_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            // Make the rename itself durable.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    /// Parses and fully validates artifact bytes.
    pub fn load_bytes(bytes: &[u8]) -> Result<LoadedModel, ArtifactError> {
        Self::parse(bytes)?.into_loaded()
    }

    /// Parses artifact bytes: format and schema version first (so an
    /// unrelated or newer file is named as such), then the whole schema.
    fn parse(bytes: &[u8]) -> Result<Artifact, ArtifactError> {
        #[derive(Deserialize)]
        struct Header {
            format: Option<serde_json::Value>,
            schema_version: Option<serde_json::Value>,
        }
        let header: Header =
            serde_json::from_slice(bytes).map_err(|e| ArtifactError::NotJson(e.to_string()))?;
        match header.format {
            Some(serde_json::Value::String(f)) if f == FORMAT => {}
            other => {
                return Err(ArtifactError::UnknownFormat {
                    found: other.map_or("<missing>".into(), |v| v.to_string()),
                })
            }
        }
        match header.schema_version {
            Some(v) if v.as_u64() == Some(SCHEMA_VERSION as u64) => {}
            other => {
                return Err(ArtifactError::UnsupportedSchema {
                    found: other.map_or("<missing>".into(), |v| v.to_string()),
                })
            }
        }
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::Schema(e.to_string()))
    }

    /// Reads and validates the artifact at `path`.
    pub fn load(path: &Path) -> Result<LoadedModel, ArtifactError> {
        let bytes = std::fs::read(path).map_err(|source| ArtifactError::Io {
            path: path.to_owned(),
            source,
        })?;
        let artifact = Self::parse(&bytes)?;
        // The file's bytes are not needed past parsing: free them before the
        // scoring tables are built, so the two are never held at once.
        drop(bytes);
        artifact.into_loaded()
    }

    /// Validates everything and builds the classifier.
    pub fn into_loaded(self) -> Result<LoadedModel, ArtifactError> {
        let actual = self.compute_checksum();
        if actual != self.checksum {
            return Err(ArtifactError::ChecksumMismatch {
                expected: self.checksum,
                actual,
            });
        }
        self.validate()?;
        let evaluation = self.evaluation.ok_or(ArtifactError::MissingEvaluation)?;
        // Each parsed part is freed as soon as its table is built: the
        // 110k-term list before the counts are turned into log-probabilities.
        let vocabulary = Vocabulary::from_sorted(&self.vocabulary)?;
        drop(self.vocabulary);
        let nb = BernoulliNb::new(&self.parameters)?;
        drop(self.parameters);
        let vocabulary_size = vocabulary.len();
        let classifier = Classifier::new(self.classes.clone(), vocabulary, nb)?;
        Ok(LoadedModel {
            classifier,
            meta: ModelMeta {
                model: self.model,
                checksum: self.checksum,
                created_at: self.created_at,
                training: self.training,
                dataset: self.dataset,
                classes: self.classes,
                vocabulary_size,
                evaluation,
            },
        })
    }

    /// Shape and range checks that do not need the scoring tables.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        let alpha_ok = self.training.alpha.is_finite()
            && self.training.alpha > 0.0
            && self.parameters.alpha.is_finite();
        if !alpha_ok {
            return Err(ArtifactError::NonFinite("alpha"));
        }
        if self.parameters.alpha != self.training.alpha {
            return Err(ArtifactError::Shape(
                "training.alpha and parameters.alpha differ".into(),
            ));
        }
        let evaluation = self
            .evaluation
            .as_ref()
            .ok_or(ArtifactError::MissingEvaluation)?;
        if !evaluation.is_consistent() {
            return Err(ArtifactError::NonFinite("evaluation"));
        }
        let n = self.classes.len();
        if n < 2 {
            return Err(ArtifactError::Shape(format!(
                "{n} class(es); need at least 2"
            )));
        }
        let mut sorted = self.classes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != n {
            return Err(ArtifactError::Shape("duplicate class labels".into()));
        }
        if self.parameters.class_count.len() != n {
            return Err(ArtifactError::Shape(format!(
                "{} class counts for {n} classes",
                self.parameters.class_count.len()
            )));
        }
        if evaluation.per_class.len() != n {
            return Err(ArtifactError::Shape(format!(
                "evaluation covers {} classes, model has {n}",
                evaluation.per_class.len()
            )));
        }
        self.parameters.validate(self.vocabulary.len())?;
        Ok(())
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
struct CanonicalView<'a>(&'a Artifact);

impl Serialize for CanonicalView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let a = self.0;
        let mut st = s.serialize_struct("Artifact", 12)?;
        st.serialize_field("format", &a.format)?;
        st.serialize_field("schema_version", &a.schema_version)?;
        st.serialize_field("model", &a.model)?;
        st.serialize_field("created_at", &a.created_at)?;
        st.serialize_field("training", &a.training)?;
        st.serialize_field("dataset", &a.dataset)?;
        st.serialize_field("classes", &a.classes)?;
        st.serialize_field("evaluation", &a.evaluation)?;
        st.serialize_field("vocabulary", &a.vocabulary)?;
        st.serialize_field("parameters", &a.parameters)?;
        st.serialize_field("checksum", "")?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
    use crate::training::{train, TrainOptions};

    fn sample_artifact() -> Artifact {
        let data = Dataset::from_csv(
            Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/sample.csv"
            )),
            "text",
            "label",
        )
        .unwrap();
        let options = TrainOptions {
            alpha: 1.0,
            test_size: 0.25,
            seed: 7,
            name: "sample".into(),
            version: None,
            created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        train(&data, None, &options, |_, _| {}).unwrap()
    }

    fn resealed(edit: impl FnOnce(&mut Artifact)) -> Vec<u8> {
        let mut a = sample_artifact();
        edit(&mut a);
        a.seal();
        a.to_bytes()
    }

    #[test]
    fn canonical_view_serialises_like_the_struct() {
        let mut a = sample_artifact();
        a.checksum = String::new();
        assert_eq!(
            serde_json::to_vec(&CanonicalView(&a)).unwrap(),
            serde_json::to_vec(&a).unwrap()
        );
    }

    /// The expectation is computed from the documented rule alone, on a
    /// fixed file (the shipped model, written compact): its bytes without the
    /// final newline and with the checksum value emptied, hashed with sha256.
    #[test]
    fn checksum_is_the_sha256_of_the_documented_canonical_bytes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/spam-nb.json");
        let bytes = std::fs::read(path).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        let text = text.strip_suffix('\n').unwrap_or(text);
        let at = text
            .rfind(r#","checksum":"sha256:"#)
            .expect("checksum field last");
        let (content, field) = text.split_at(at);
        let stored = field
            .strip_prefix(r#","checksum":""#)
            .and_then(|f| f.strip_suffix(r#""}"#))
            .unwrap();
        assert_eq!(stored.len(), "sha256:".len() + 64, "{stored}");
        let canonical = format!(r#"{content},"checksum":""}}"#);
        // Larger than the hashing buffer, so it is hashed in several pieces.
        assert!(canonical.len() > 64 * 1024, "{} bytes", canonical.len());
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        assert_eq!(stored, expected, "the shipped file's own checksum");
        let parsed: Artifact = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed.compute_checksum(), expected);
        assert_eq!(
            Artifact::load(Path::new(path)).unwrap().meta.checksum,
            expected
        );
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let a = sample_artifact();
        a.save(&path).unwrap();
        let loaded = Artifact::load(&path).unwrap();
        assert_eq!(loaded.meta.checksum, a.checksum);
        assert_eq!(loaded.meta.vocabulary_size, a.vocabulary.len());
        assert_eq!(loaded.meta.evaluation, a.evaluation.clone().unwrap());
        // Same predictions as the classifier built in memory.
        let direct = Artifact::load_bytes(&a.to_bytes()).unwrap();
        for text in ["free money now", "meeting tomorrow at ten", ""] {
            assert_eq!(
                loaded.classifier.predict(text),
                direct.classifier.predict(text)
            );
        }
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn any_flipped_byte_is_rejected() {
        let bytes = sample_artifact().to_bytes();
        // A spread of positions: header, evaluation, vocabulary, counts, checksum.
        for i in (0..bytes.len()).step_by(bytes.len() / 97) {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(Artifact::load_bytes(&b).is_err(), "flip at {i} accepted");
        }
        let mut b = bytes.clone();
        let i = b.len() / 2;
        b[i] = if b[i] == b'7' { b'8' } else { b'7' };
        if let Err(ArtifactError::ChecksumMismatch { .. })
        | Err(ArtifactError::Schema(_))
        | Err(ArtifactError::NotJson(_)) = Artifact::load_bytes(&b)
        {
        } else {
            panic!("a digit change in the middle must fail");
        }
    }

    #[test]
    fn half_a_file_is_not_json() {
        let bytes = sample_artifact().to_bytes();
        assert!(matches!(
            Artifact::load_bytes(&bytes[..bytes.len() / 2]),
            Err(ArtifactError::NotJson(_))
        ));
    }

    #[test]
    fn each_corruption_gets_its_own_error() {
        assert!(matches!(
            Artifact::load(Path::new("/nonexistent/model.json")),
            Err(ArtifactError::Io { .. })
        ));
        assert!(matches!(
            Artifact::load_bytes(b"nope"),
            Err(ArtifactError::NotJson(_))
        ));
        assert!(matches!(
            Artifact::load_bytes(br#"{"format":"onnx","schema_version":1}"#),
            Err(ArtifactError::UnknownFormat { .. })
        ));
        let b = resealed(|a| a.schema_version = 2);
        assert!(matches!(
            Artifact::load_bytes(&b),
            Err(ArtifactError::UnsupportedSchema { .. })
        ));
        let mut v: serde_json::Value =
            serde_json::from_slice(&sample_artifact().to_bytes()).unwrap();
        v.as_object_mut().unwrap().remove("vocabulary");
        assert!(matches!(
            Artifact::load_bytes(&serde_json::to_vec(&v).unwrap()),
            Err(ArtifactError::Schema(_))
        ));
        let b = resealed(|a| {
            a.vocabulary.pop();
        });
        assert!(matches!(
            Artifact::load_bytes(&b),
            Err(ArtifactError::Model(ModelError::Shape(_)))
        ));
        let b = resealed(|a| a.evaluation = None);
        assert!(matches!(
            Artifact::load_bytes(&b),
            Err(ArtifactError::MissingEvaluation)
        ));
        let b = resealed(|a| a.vocabulary.swap(0, 1));
        assert!(matches!(
            Artifact::load_bytes(&b),
            Err(ArtifactError::Vocabulary(_))
        ));
        let b = resealed(|a| {
            a.classes.pop();
        });
        assert!(matches!(
            Artifact::load_bytes(&b),
            Err(ArtifactError::Shape(_))
        ));
        let b = resealed(|a| a.checksum = "sha256:00".into());
        assert!(Artifact::load_bytes(&b).is_ok(), "seal recomputes");
        let mut a = sample_artifact();
        a.checksum = "sha256:00".into();
        assert!(matches!(
            Artifact::load_bytes(&a.to_bytes()),
            Err(ArtifactError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn non_finite_numbers_are_rejected() {
        let mut a = sample_artifact();
        a.evaluation.as_mut().unwrap().f1_macro = f64::NAN;
        assert!(matches!(
            a.validate(),
            Err(ArtifactError::NonFinite("evaluation"))
        ));
        let mut a = sample_artifact();
        a.training.alpha = f64::INFINITY;
        assert!(matches!(
            a.validate(),
            Err(ArtifactError::NonFinite("alpha"))
        ));
        // JSON cannot carry NaN: serde writes null, which fails the schema.
        let mut a = sample_artifact();
        a.evaluation.as_mut().unwrap().accuracy = f64::NAN;
        a.seal();
        assert!(matches!(
            Artifact::load_bytes(&a.to_bytes()),
            Err(ArtifactError::Schema(_))
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// The loader's fuzz property (no nightly toolchain for cargo-fuzz
        /// here): arbitrary bytes, and a real artifact with a random span
        /// overwritten, never panic and never load unless unchanged.
        #[test]
        fn loader_never_panics_on_garbage(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let _ = Artifact::load_bytes(&bytes);
        }

        #[test]
        fn loader_rejects_any_overwritten_span(
            at in 0.0f64..1.0,
            patch in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..16),
        ) {
            let original = sealed_sample_bytes();
            let mut bytes = original.clone();
            let start = ((bytes.len() - patch.len()) as f64 * at) as usize;
            bytes[start..start + patch.len()].copy_from_slice(&patch);
            let result = Artifact::load_bytes(&bytes);
            proptest::prop_assert_eq!(result.is_ok(), bytes == original);
        }
    }

    fn sealed_sample_bytes() -> Vec<u8> {
        static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        BYTES.get_or_init(|| sample_artifact().to_bytes()).clone()
    }

    #[test]
    fn training_is_deterministic_to_the_byte() {
        let a = sample_artifact().to_bytes();
        let b = sample_artifact().to_bytes();
        assert_eq!(a, b);
    }
}
