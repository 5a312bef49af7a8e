//! The exit-code table: each error a command can end with, and the
//! documented code it exits with (`nbserve reference exit-codes`,
//! docs/reference/exit-codes.md). Commands return
//! errors; only `cli::main` asks them for their code.

use nbserve::artifact::ArtifactError;
use nbserve::classifier::{ParamError, SplitError};
use nbserve::dataset::DatasetError;
use nbserve::fsio::FsError;
use nbserve::gate::GateError;
use nbserve::mlflow::MlflowError;
use nbserve::retraining::store::StoreError;
use nbserve::retraining::{PlanError, PromoteError, RetrainError, RollbackError, SourceError};
use nbserve::server::{LoadError, StartupError};
use nbserve::settings::{ModelChoiceError, SettingsError};
use nbserve::shards::ShardError;
use nbserve::training::{TrainError, TuneError};

/// Success.
pub const OK: u8 = 0;
/// Any other failure (I/O, bind, the tracking server).
pub const FAILURE: u8 = 1;
/// Bad command line (clap's own code).
pub const USAGE: u8 = 2;
/// Invalid settings.
pub const SETTINGS: u8 = 3;
/// Invalid model artifact.
pub const INVALID_MODEL: u8 = 4;
/// Unusable data file (CSV, feedback log). The documented contract gives
/// invalid models and invalid data one code.
pub const INVALID_DATA: u8 = INVALID_MODEL;
/// The gate rejected the model.
pub const GATE_REJECTED: u8 = 5;
/// `healthcheck` found the server unhealthy.
pub const UNHEALTHY: u8 = 6;
/// `retrain` put the candidate in service, but the version history or the
/// pruning that follows failed.
pub const PROMOTED_WITH_ERROR: u8 = 7;

/// An error a command can end with, and its exit code.
pub trait ExitCoded: std::fmt::Display {
    /// The documented exit code.
    fn exit_code(&self) -> u8;
}

/// A usage error only the command line can see: flags that do not go
/// together, an environment variable out of its format.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// `healthcheck`'s verdict on a server that did not answer 200.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unhealthy(pub String);

/// Standard output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Stdout {
    /// Its reader went away: the command ends quietly, with its own code.
    #[error("")]
    ReaderGone,
    /// Any other failure (a full disk).
    #[error("cannot write to standard output: {0}")]
    Failed(std::io::Error),
}

macro_rules! one_code {
    ($($ty:ty => $code:expr),* $(,)?) => {
        $(impl ExitCoded for $ty {
            fn exit_code(&self) -> u8 {
                $code
            }
        })*
    };
}

one_code! {
    Usage => USAGE,
    Unhealthy => UNHEALTHY,
    std::io::Error => FAILURE,
    reqwest::Error => FAILURE,
    SettingsError => SETTINGS,
    ArtifactError => INVALID_MODEL,
    // Writes (`train --out`, `split`): the model or data read was fine.
    FsError => FAILURE,
    DatasetError => INVALID_DATA,
}

impl ExitCoded for Stdout {
    fn exit_code(&self) -> u8 {
        match self {
            Stdout::ReaderGone => OK,
            Stdout::Failed(_) => FAILURE,
        }
    }
}

impl ExitCoded for ParamError {
    /// A value out of its range is a usage error; one in range that this
    /// data cannot support (more folds than a class has documents) a data
    /// error.
    fn exit_code(&self) -> u8 {
        if self.by_data {
            INVALID_DATA
        } else {
            USAGE
        }
    }
}

impl ExitCoded for SplitError {
    fn exit_code(&self) -> u8 {
        match self {
            SplitError::InvalidTestSize(_) => USAGE,
            SplitError::ClassTooSmall(..) => INVALID_DATA,
        }
    }
}

impl ExitCoded for TrainError {
    fn exit_code(&self) -> u8 {
        match self {
            TrainError::Param(e) => e.exit_code(),
            TrainError::Split(e) => e.exit_code(),
            _ => INVALID_DATA,
        }
    }
}

impl ExitCoded for TuneError {
    fn exit_code(&self) -> u8 {
        match self {
            TuneError::Usage(e) => e.exit_code(),
            TuneError::EmptyGrid => USAGE,
            TuneError::Train(e) => e.exit_code(),
        }
    }
}

impl ExitCoded for GateError {
    /// Only a flag can give an invalid minimum: the settings' is checked
    /// when they load (exit 3).
    fn exit_code(&self) -> u8 {
        match self {
            GateError::Rejected { .. } => GATE_REJECTED,
            GateError::InvalidThreshold(_) => USAGE,
            GateError::TooLarge { .. } | GateError::Artifact(_) => INVALID_MODEL,
            GateError::HoldoutFile(_) | GateError::Holdout(_) => INVALID_DATA,
        }
    }
}

impl ExitCoded for MlflowError {
    /// An invalid URI can only come from a flag here (`--mlflow-uri`), and
    /// a CA bundle from its variable: the settings' are checked when they
    /// load.
    fn exit_code(&self) -> u8 {
        match self {
            MlflowError::InvalidUri(_) | MlflowError::CaBundle { .. } => USAGE,
            _ => FAILURE,
        }
    }
}

impl ExitCoded for SourceError {
    fn exit_code(&self) -> u8 {
        match self {
            SourceError::Artifact(e) => e.exit_code(),
            SourceError::Registry(_) => INVALID_MODEL,
            SourceError::Runtime(e) => e.exit_code(),
        }
    }
}

impl ExitCoded for LoadError {
    /// A registry that cannot provide the model is, for `serve`, a model
    /// that cannot be loaded.
    fn exit_code(&self) -> u8 {
        match self {
            LoadError::Gate(e) => e.exit_code(),
            LoadError::Holdout(e) => e.exit_code(),
            // Like a model over gate.max_memory_bytes.
            LoadError::Path
            | LoadError::Artifact(_)
            | LoadError::Registry(_)
            | LoadError::OverBudget { .. } => INVALID_MODEL,
        }
    }
}

impl ExitCoded for StartupError {
    fn exit_code(&self) -> u8 {
        match self {
            StartupError::Model { source, .. } => source.exit_code(),
            StartupError::Repository(_) | StartupError::FeedbackLog(_) => SETTINGS,
            StartupError::Bind { .. } => FAILURE,
            // A stop before serving is still a stop.
            StartupError::Stopped { .. } => OK,
        }
    }
}

impl ExitCoded for StoreError {
    fn exit_code(&self) -> u8 {
        match self {
            StoreError::UnknownVersion { .. } => USAGE,
            _ => FAILURE,
        }
    }
}

impl ExitCoded for PlanError {
    fn exit_code(&self) -> u8 {
        match self {
            PlanError::Threshold(e) => e.exit_code(),
            PlanError::PinnedVersion(_) => SETTINGS,
            PlanError::MaxRegression(_)
            | PlanError::Keep(_)
            | PlanError::AliasWithoutName
            | PlanError::NoTracking(_) => USAGE,
        }
    }
}

impl ExitCoded for RetrainError {
    fn exit_code(&self) -> u8 {
        match self {
            RetrainError::Plan(e) => e.exit_code(),
            RetrainError::Data(e) => e.exit_code(),
            RetrainError::FeedbackLog(_)
            | RetrainError::Merge(_)
            | RetrainError::NoModelForCounts(_) => INVALID_DATA,
            RetrainError::BaseCounts(e) => e.exit_code(),
            RetrainError::Tune(e) => e.exit_code(),
            RetrainError::Tracking(e) => e.exit_code(),
            RetrainError::Gate(e) => e.exit_code(),
            RetrainError::Store(e) | RetrainError::NotPromoted { source: e, .. } => e.exit_code(),
            RetrainError::Candidate(_) | RetrainError::Report { .. } => FAILURE,
            RetrainError::Rejected(_) => GATE_REJECTED,
            RetrainError::PromotedWithError { .. } => PROMOTED_WITH_ERROR,
        }
    }
}

impl ExitCoded for PromoteError {
    fn exit_code(&self) -> u8 {
        match self {
            PromoteError::Registry(e) => e.exit_code(),
            PromoteError::Refused { source, .. } => source.exit_code(),
        }
    }
}

impl ExitCoded for RollbackError {
    fn exit_code(&self) -> u8 {
        match self {
            RollbackError::RegistrySource(_) => SETTINGS,
            RollbackError::Store(e) => e.exit_code(),
            RollbackError::Unreadable(_) | RollbackError::Changed { .. } => INVALID_MODEL,
            RollbackError::Refused { source, .. } => source.exit_code(),
        }
    }
}

impl ExitCoded for ModelChoiceError {
    /// An unknown name can only come from `--served-model`.
    fn exit_code(&self) -> u8 {
        match self {
            ModelChoiceError::Settings(e) => e.exit_code(),
            ModelChoiceError::Unknown { .. } => USAGE,
        }
    }
}

impl ExitCoded for ShardError {
    /// Unusable input (a CSV, a damaged or mismatched counts or scores
    /// file) is invalid data; an output that cannot be written a failure.
    fn exit_code(&self) -> u8 {
        match self {
            ShardError::Output(_) => FAILURE,
            ShardError::Cv(e) if e.is_usage() => USAGE,
            _ => INVALID_DATA,
        }
    }
}
