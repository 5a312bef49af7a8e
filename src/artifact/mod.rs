//! The model artifact: a versioned, self-describing, checksummed JSON file.
//!
//! The checksum is the sha256 of the compact JSON serialisation of every
//! field except `checksum` itself (serialised as an empty string), so it is
//! independent of how the file is formatted but covers every value in it.
//! Files are written compact, so every byte of a shipped file is significant.

use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::classifier::{Classifier, Counts, Evaluation, NaiveBayes, Vocabulary};
use crate::fsio::{self, FsError};

/// The `format` value of every nbserve artifact (kept for every model kind,
/// so existing readers recognise the file).
pub const FORMAT: &str = "nbserve-bernoulli-nb";
/// The schema version this build writes.
///
/// Schema 2 adds the vectorizer options, the model kind, `calibration`,
/// `tuning` and the Brier score / ECE in `evaluation`; every addition is
/// optional, so schema-1 files (Bernoulli NB, default vectorizer, no
/// calibration) still load and keep their checksum.
pub const SCHEMA_VERSION: u32 = 2;
/// The schema of files carrying their sufficient statistics (`train
/// --statistics`): schema 2 plus `statistics`, so the model can learn and
/// forget in place. Only such files are written as schema 3, so every other
/// file stays readable by older builds.
pub const STATISTICS_SCHEMA: u32 = 3;
/// Every schema version this build reads.
pub const READABLE_SCHEMAS: [u32; 3] = [1, 2, STATISTICS_SCHEMA];
/// The token pattern the tokenizer implements (recorded for readers of the file).
pub const TOKEN_PATTERN: &str = crate::classifier::stats::TOKEN_PATTERN;

pub use crate::classifier::params::ALPHA_RANGE;
pub use error::ArtifactError;
pub use memory::MemoryEstimate;
pub use schema::{
    Artifact, Calibration, DatasetFingerprint, ModelId, TrainingParams, VectorizerSpec,
};
pub use validate::name_problem;

mod error;
use error::clip;
mod memory;
mod schema;
mod statistics;
mod validate;

/// Most classes a served model may have (each adds metric series, and the
/// confusion metric grows with their square).
pub const MAX_CLASSES: usize = 100;
/// Longest model name, model version or class label, in bytes (each is
/// repeated in every prediction and in metric labels).
pub const MAX_NAME_BYTES: usize = 256;

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
    /// The MLflow run that trained it, when tracked.
    pub mlflow_run_id: Option<String>,
    /// Probability calibration, if any.
    pub calibration: Option<Calibration>,
}

/// A validated model, ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The scorer.
    pub classifier: Classifier,
    /// Its description.
    pub meta: ModelMeta,
    /// The sufficient statistics it was fitted from (schema 3), decoded
    /// and checked: what a challenger learns on top of.
    pub statistics: Option<std::sync::Arc<Counts>>,
}

impl Artifact {
    /// Writes atomically, keeping the mode and owner of the file it replaces
    /// (see [`fsio::write_atomic`]), so a reader never sees a half-written
    /// model and a server running as another user can still read it.
    pub fn save(&self, path: &Path) -> Result<(), FsError> {
        fsio::write_atomic(path, &self.file_bytes())
    }

    /// Parses and fully validates artifact bytes, with no memory budget
    /// (tools that read a model; serving paths use
    /// [`Artifact::load_bytes_within`]).
    pub fn load_bytes(bytes: &[u8]) -> Result<LoadedModel, ArtifactError> {
        Self::load_bytes_within(bytes, u64::MAX)
    }

    /// [`Artifact::load_bytes`], refusing a model whose load would need
    /// more than `max_memory_bytes` (`gate.max_memory_bytes`) before its
    /// scoring tables are built.
    pub fn load_bytes_within(
        bytes: &[u8],
        max_memory_bytes: u64,
    ) -> Result<LoadedModel, ArtifactError> {
        Self::parse_within(bytes, max_memory_bytes)?.into_loaded()
    }

    /// Parses artifact bytes: format and schema version first (so an
    /// unrelated or newer file is named as such), then, with a budget, the
    /// memory the load would take ([`MemoryEstimate`], read without
    /// allocating for the content), then the whole schema.
    fn parse_within(bytes: &[u8], max_memory_bytes: u64) -> Result<Artifact, ArtifactError> {
        Self::check_header(bytes)?;
        if max_memory_bytes < u64::MAX {
            MemoryEstimate::check(bytes, max_memory_bytes)?;
        }
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::Schema(clip(e.to_string())))
    }

    /// Refuses bytes that are not JSON, or JSON of another format or of a
    /// schema version this build does not read.
    fn check_header(bytes: &[u8]) -> Result<(), ArtifactError> {
        #[derive(Deserialize)]
        struct Header {
            format: Option<serde_json::Value>,
            schema_version: Option<serde_json::Value>,
        }
        let header: Header = serde_json::from_slice(bytes)
            .map_err(|e| ArtifactError::NotJson(clip(e.to_string())))?;
        match header.format {
            Some(serde_json::Value::String(f)) if f == FORMAT => {}
            other => {
                return Err(ArtifactError::UnknownFormat {
                    found: other.map_or("<missing>".into(), |v| clip(v.to_string())),
                })
            }
        }
        match header.schema_version {
            Some(v)
                if v.as_u64()
                    .is_some_and(|n| READABLE_SCHEMAS.iter().any(|&s| u64::from(s) == n)) => {}
            other => {
                return Err(ArtifactError::UnsupportedSchema {
                    found: other.map_or("<missing>".into(), |v| clip(v.to_string())),
                })
            }
        }
        Ok(())
    }

    /// Reads and validates the artifact at `path` (a regular file, symlinks
    /// followed, any size).
    pub fn load(path: &Path) -> Result<LoadedModel, ArtifactError> {
        let file = open_regular(path)?;
        Self::load_file(file, path, u64::MAX)
    }

    /// Reads and validates an artifact from an opened regular file (see
    /// [`open_regular`]), refusing it past `max_bytes`; `path` only names it
    /// in errors.
    pub fn load_file(
        file: File,
        path: &Path,
        max_bytes: u64,
    ) -> Result<LoadedModel, ArtifactError> {
        Self::load_owned(read_capped(file, path, max_bytes)?)
    }

    /// Parses and validates artifact bytes, freeing them once parsed, with
    /// no memory budget.
    pub fn load_owned(bytes: Vec<u8>) -> Result<LoadedModel, ArtifactError> {
        Self::load_owned_within(bytes, u64::MAX)
    }

    /// [`Artifact::load_owned`] within a memory budget (see
    /// [`Artifact::load_bytes_within`]): the loader of every serving path.
    pub fn load_owned_within(
        bytes: Vec<u8>,
        max_memory_bytes: u64,
    ) -> Result<LoadedModel, ArtifactError> {
        let artifact = Self::parse_within(&bytes, max_memory_bytes)?;
        // The file's bytes are not needed past parsing: free them before the
        // scoring tables are built, so the two are never held at once.
        drop(bytes);
        artifact.into_loaded()
    }

    /// Validates everything, builds the classifier and scores sample
    /// documents, refusing a model whose probabilities would not be finite
    /// numbers.
    pub fn into_loaded(self) -> Result<LoadedModel, ArtifactError> {
        let actual = self.compute_checksum();
        if actual != self.checksum {
            return Err(ArtifactError::ChecksumMismatch {
                expected: clip(self.checksum),
                actual,
            });
        }
        self.validate()?;
        let statistics = self.decode_statistics()?.map(std::sync::Arc::new);
        let evaluation = self.evaluation.ok_or(ArtifactError::MissingEvaluation)?;
        // Each parsed part is freed as soon as its table is built: the
        // 110k-term list before the counts are turned into log-probabilities.
        let vocabulary = Vocabulary::from_sorted(&self.vocabulary)?;
        drop(self.vocabulary);
        let nb = NaiveBayes::with_kind(
            self.training.model_kind(),
            self.training.vectorizer.binary,
            &self.parameters,
        )?;
        drop(self.parameters);
        let vocabulary_size = vocabulary.len();
        let calibration = self.calibration;
        let classifier = Classifier::new(self.classes.clone(), vocabulary, nb)?
            .with_temperature(calibration.as_ref().map(|c| c.temperature));
        classifier.check_finite_scores()?;
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
                mlflow_run_id: self.mlflow_run_id,
                calibration,
            },
            statistics,
        })
    }
}

/// Opens `path` for reading (symlinks followed: `model.path` may be a
/// Kubernetes mount) as [`fsio::open_regular_following`] does: a regular
/// file only, and a FIFO cannot stall the open.
pub fn open_regular(path: &Path) -> Result<File, ArtifactError> {
    Ok(fsio::open_regular_following(path, u64::MAX)?)
}

/// Reads all of `file`, refusing it past `max_bytes` without reading more
/// than one byte beyond (see [`fsio::read_capped`]).
pub fn read_capped(file: File, path: &Path, max_bytes: u64) -> Result<Vec<u8>, ArtifactError> {
    Ok(fsio::read_capped(file, path, max_bytes)?)
}

#[cfg(test)]
mod tests {
    use super::schema::CanonicalView;
    use super::*;
    use crate::classifier::{ModelError, ModelKind, Param, ParamError, VectorizerOptions};
    use crate::dataset::Dataset;
    use crate::training::{train, RunOptions, TrainOptions};
    use sha2::{Digest, Sha256};

    pub(super) fn sample_artifact() -> Artifact {
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
            model: ModelKind::Bernoulli,
            vectorizer: VectorizerOptions::default(),
            calibrate_folds: None,
            alpha: 1.0,
            run: RunOptions {
                test_size: 0.25,
                seed: 7,
                name: "sample".into(),
                version: None,
                created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            },
        };
        train(&data, None, &options, |_, _| {}).unwrap()
    }

    pub(super) fn resealed(edit: impl FnOnce(&mut Artifact)) -> Vec<u8> {
        let mut a = sample_artifact();
        edit(&mut a);
        a.seal();
        a.to_bytes()
    }

    #[test]
    fn predicts_like_ignores_the_description_and_sees_every_scoring_field() {
        let base = sample_artifact();
        let mut renamed = base.clone();
        renamed.model.name = "other".into();
        renamed.model.version = "2".into();
        renamed.created_at = "2030-01-01T00:00:00Z".into();
        renamed.evaluation = None;
        renamed.mlflow_run_id = Some("run".into());
        renamed.dataset.sha256 = "0".repeat(64);
        renamed.seal();
        assert!(renamed.predicts_like(&base));
        assert!(base.predicts_like(&base.clone()));

        type Edit = fn(&mut Artifact);
        let edits: [(&str, Edit); 9] = [
            ("vocabulary", |a| a.vocabulary[0].push('x')),
            ("feature counts", |a| a.parameters.feature_count[0][0] += 1),
            ("class counts", |a| a.parameters.class_count[0] += 1),
            ("alpha", |a| {
                a.training.alpha = 0.5;
                a.parameters.alpha = 0.5;
            }),
            ("temperature", |a| {
                a.calibration = Some(Calibration {
                    method: "temperature".into(),
                    temperature: 1.5,
                    folds: 5,
                    seed: 0,
                    log_loss_before: 0.3,
                    log_loss_after: 0.2,
                })
            }),
            ("classes", |a| a.classes.reverse()),
            ("model kind", |a| {
                a.training.model = Some(ModelKind::Multinomial)
            }),
            ("binary", |a| {
                a.training.vectorizer.binary = !a.training.vectorizer.binary
            }),
            ("max_features", |a| {
                a.training.vectorizer.max_features = Some(10)
            }),
        ];
        for (what, edit) in edits {
            let mut changed = base.clone();
            edit(&mut changed);
            assert!(!changed.predicts_like(&base), "{what} differs");
            assert!(!base.predicts_like(&changed), "{what} differs");
        }
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
    fn non_regular_and_oversized_files_are_refused() {
        assert!(matches!(
            Artifact::load(Path::new("/dev/zero")),
            Err(ArtifactError::NotRegularFile { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        #[cfg(unix)]
        {
            // A FIFO with no writer: opening it must neither block nor read.
            let fifo = dir.path().join("fifo.json");
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: `c` is a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            assert!(matches!(
                Artifact::load(&fifo),
                Err(ArtifactError::NotRegularFile { .. })
            ));
        }
        let path = dir.path().join("m.json");
        sample_artifact().save(&path).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        let load = |max| Artifact::load_file(open_regular(&path).unwrap(), &path, max);
        assert!(load(size).is_ok());
        assert!(matches!(
            load(size - 1),
            Err(ArtifactError::TooLarge { max_bytes, .. }) if max_bytes == size - 1
        ));
    }

    /// `train --out` wrote through a temporary name made of the pid alone,
    /// with a plain create: a symlink planted under that name had its
    /// target overwritten and then became the model file.
    #[cfg(unix)]
    #[test]
    fn save_never_writes_through_a_planted_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("m.json");
        let planted = dir
            .path()
            .join(format!(".m.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let a = sample_artifact();
        a.save(&path).unwrap();
        let victim_len = std::fs::metadata(&victim).unwrap().len();
        assert!(
            std::fs::read(&victim).unwrap() == b"precious",
            "the link's target was overwritten ({victim_len} bytes)"
        );
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert!(std::fs::read(&path).unwrap() == a.file_bytes());
        assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
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
        let b = resealed(|a| a.schema_version = STATISTICS_SCHEMA + 1);
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
            Err(ArtifactError::Param(ParamError {
                param: Param::Alpha,
                ..
            }))
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

    #[test]
    fn hostile_but_well_formed_artifacts_are_refused() {
        for alpha in [1e308, 5e-324, 1e-11, 1.1e10] {
            let b = resealed(|a| {
                a.training.alpha = alpha;
                a.parameters.alpha = alpha;
            });
            assert!(
                matches!(
                    Artifact::load_bytes(&b),
                    Err(ArtifactError::Param(ParamError {
                        param: Param::Alpha,
                        ..
                    }))
                ),
                "{alpha}"
            );
        }
        for alpha in [*ALPHA_RANGE.start(), *ALPHA_RANGE.end()] {
            let b = resealed(|a| {
                a.training.alpha = alpha;
                a.parameters.alpha = alpha;
            });
            assert!(Artifact::load_bytes(&b).is_ok(), "{alpha}");
        }
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let edits: [&dyn Fn(&mut Artifact); 3] = [
            &|a| a.model.version = long.clone(),
            &|a| a.model.name = long.clone(),
            &|a| a.classes[0] = long.clone(),
        ];
        for edit in edits {
            let b = resealed(edit);
            assert!(matches!(
                Artifact::load_bytes(&b),
                Err(ArtifactError::Shape(m)) if m.contains("at most 256 bytes are served")
            ));
        }
        let b = resealed(|a| {
            a.classes = (0..=MAX_CLASSES).map(|i| format!("c{i:03}")).collect();
        });
        assert!(matches!(
            Artifact::load_bytes(&b),
            Err(ArtifactError::Shape(m)) if m.contains("at most 100")
        ));
        // Counts that wrap a u64 when summed.
        let b = resealed(|a| {
            a.parameters.class_count = vec![u64::MAX, u64::MAX];
            a.dataset.documents = u64::MAX;
        });
        assert!(matches!(
            Artifact::load_bytes(&b),
            Err(ArtifactError::Model(ModelError::Counts(m))) if m.contains("2^64")
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
    fn schema_1_files_still_load_and_score_the_same() {
        // What a schema-1 build wrote: no vectorizer options, no model kind,
        // no calibration, no Brier score or ECE.
        let current = sample_artifact();
        let mut a = current.clone();
        a.schema_version = 1;
        a.training.model = None;
        a.training.vectorizer.min_df = None;
        a.training.vectorizer.max_df = None;
        a.training.vectorizer.max_features = None;
        let e = a.evaluation.as_mut().unwrap();
        e.brier_score = None;
        e.ece = None;
        a.seal();
        let text = String::from_utf8(a.to_bytes()).unwrap();
        for absent in [
            "min_df",
            "max_features",
            "brier_score",
            "calibration",
            "tuning",
        ] {
            assert!(
                !text.contains(&format!("\"{absent}\":")),
                "{absent} written"
            );
        }
        assert!(!text.contains("\"ece\":"), "ece written");
        let old = Artifact::load_bytes(text.as_bytes()).unwrap();
        let new = Artifact::load_bytes(&current.to_bytes()).unwrap();
        assert_eq!(old.classifier.temperature(), None);
        for t in ["free money now", "meeting tomorrow at ten", ""] {
            assert_eq!(old.classifier.predict(t), new.classifier.predict(t));
        }
    }

    #[test]
    fn calibration_is_covered_by_the_checksum_and_applied() {
        let mut a = sample_artifact();
        a.calibration = Some(Calibration {
            method: "temperature".into(),
            temperature: 8.0,
            folds: 5,
            seed: 1,
            log_loss_before: 1.0,
            log_loss_after: 0.5,
        });
        a.seal();
        let mut plain = a.clone();
        plain.checksum = String::new();
        assert_eq!(
            serde_json::to_vec(&CanonicalView(&plain)).unwrap(),
            serde_json::to_vec(&plain).unwrap()
        );
        let calibrated = Artifact::load_bytes(&a.to_bytes()).unwrap();
        let raw = Artifact::load_bytes(&sample_artifact().to_bytes()).unwrap();
        let text = "free money now";
        let (c, r) = (
            calibrated.classifier.predict(text),
            raw.classifier.predict(text),
        );
        assert_eq!(c.label, r.label);
        assert!(c.confidence() < r.confidence());
        assert_eq!(calibrated.classifier.predict_uncalibrated(text), r);
        for temperature in [0.0, 5e-324, 1e-3, 2e6] {
            let mut bad = a.clone();
            bad.calibration.as_mut().unwrap().temperature = temperature;
            bad.seal();
            assert!(
                matches!(
                    Artifact::load_bytes(&bad.to_bytes()),
                    Err(ArtifactError::Param(ParamError {
                        param: Param::Temperature,
                        ..
                    }))
                ),
                "{temperature}"
            );
        }
        let mut tampered = a;
        tampered.calibration.as_mut().unwrap().temperature = 9.0;
        assert!(matches!(
            Artifact::load_bytes(&tampered.to_bytes()),
            Err(ArtifactError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn training_is_deterministic_to_the_byte() {
        let a = sample_artifact().to_bytes();
        let b = sample_artifact().to_bytes();
        assert_eq!(a, b);
    }

    #[test]
    fn the_mlflow_run_id_is_optional_and_covered_by_the_checksum() {
        let plain = sample_artifact();
        assert!(!String::from_utf8(plain.to_bytes())
            .unwrap()
            .contains("mlflow_run_id"));
        let mut tracked = sample_artifact();
        tracked.mlflow_run_id = Some("0123abcd".into());
        tracked.seal();
        assert_ne!(tracked.checksum, plain.checksum);
        let loaded = Artifact::load_bytes(&tracked.to_bytes()).unwrap();
        assert_eq!(loaded.meta.mlflow_run_id.as_deref(), Some("0123abcd"));
        let edited = String::from_utf8(tracked.to_bytes())
            .unwrap()
            .replace("0123abcd", "fedc3210");
        assert!(matches!(
            Artifact::load_bytes(edited.as_bytes()),
            Err(ArtifactError::ChecksumMismatch { .. })
        ));
    }
}
