//! Why an artifact cannot be loaded.

use std::path::PathBuf;

use crate::classifier::{ModelError, ParamError, VocabularyError};
use crate::fsio::FsError;

use super::{FORMAT, SCHEMA_VERSION, STATISTICS_SCHEMA};

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
    /// A device, FIFO, directory or socket rather than a regular file.
    #[error("model file {path} is not a regular file")]
    NotRegularFile {
        /// The file.
        path: PathBuf,
    },
    /// Larger than the configured cap (`model.max_bytes`).
    #[error("model file {path} is larger than model.max_bytes ({max_bytes} bytes)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max_bytes: u64,
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
    #[error("unsupported schema version {found} (this build reads 1, {SCHEMA_VERSION} and {STATISTICS_SCHEMA})")]
    UnsupportedSchema {
        /// What the file says.
        found: String,
    },
    /// The file could not be written as it must be (e.g. keeping its owner).
    #[error(transparent)]
    File(FsError),
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
    /// A training parameter out of the range training itself accepts.
    #[error("invalid training parameter: {0}")]
    Param(#[from] ParamError),
    /// Loading it would take more memory than the budget allows.
    #[error(
        "the model ({terms} terms, {classes} classes) needs an estimated {estimate} bytes of memory to load, \
         over gate.max_memory_bytes ({max_memory_bytes} bytes)"
    )]
    TooMuchMemory {
        /// Vocabulary size.
        terms: u64,
        /// Classes.
        classes: u64,
        /// The estimated peak ([`MemoryEstimate::peak`]).
        estimate: u64,
        /// The budget.
        max_memory_bytes: u64,
    },
    /// No evaluation block: the gate has nothing to check.
    #[error("model has no evaluation block; it cannot be gated or served")]
    MissingEvaluation,
    /// The vocabulary is unusable.
    #[error("invalid vocabulary: {0}")]
    Vocabulary(#[from] VocabularyError),
    /// The parameters are unusable.
    #[error("invalid parameters: {0}")]
    Model(#[from] ModelError),
    /// The learning statistics (schema 3) are unusable.
    #[error("invalid statistics: {0}")]
    Statistics(String),
}

impl From<FsError> for ArtifactError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::Io { path, source } => Self::Io { path, source },
            FsError::NotRegular { path } | FsError::Symlink { path } => {
                Self::NotRegularFile { path }
            }
            FsError::TooLarge { path, max_bytes } => Self::TooLarge { path, max_bytes },
            e @ FsError::Owner { .. } => Self::File(e),
        }
    }
}

/// Longest piece of artifact content an error message quotes.
const MAX_QUOTED: usize = 120;

/// Caps text taken from an artifact (a serde message quoting a field, a
/// format string) so a hostile file cannot make an error message huge.
pub(super) fn clip(mut text: String) -> String {
    if text.len() > MAX_QUOTED {
        let mut end = MAX_QUOTED;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
