//! A retrain's plan: everything decided before any work starts, and the
//! rules it must satisfy.

use std::path::PathBuf;
use std::time::Duration;

use crate::gate::{check_threshold, GateError};
use crate::mlflow::ModelUri;
use crate::settings::{ModelSource, Settings};
use crate::training::TuneOptions;

/// A registry version to create from the tracked run, and the alias to
/// move to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Registered model name.
    pub name: String,
    /// Alias moved to the new version, if any.
    pub alias: Option<String>,
}

/// Where a promoted candidate goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `model.path` is a file: replaced atomically, the one it replaces
    /// kept in `model.dir/versions`; also registered when asked.
    File {
        /// `model.path`.
        path: PathBuf,
        /// A registration besides the file, if asked for.
        register: Option<Registration>,
    },
    /// `model.path` is `models:/NAME@ALIAS`: a new version is registered
    /// and the alias moved to it (the servers follow the alias).
    Alias(Registration),
}

impl Target {
    /// The target `source` (`model.path`) makes, with the registration
    /// asked for: `register` names the registered model (default: the
    /// alias's own), `alias` the alias to move (default: the one
    /// `model.path` names; with a file, only together with `register`).
    pub fn new(
        source: &ModelSource,
        register: Option<String>,
        alias: Option<String>,
    ) -> Result<Self, PlanError> {
        match source {
            ModelSource::File(path) => {
                if alias.is_some() && register.is_none() {
                    return Err(PlanError::AliasWithoutName);
                }
                Ok(Self::File {
                    path: path.clone(),
                    register: register.map(|name| Registration { name, alias }),
                })
            }
            ModelSource::Registry(uri @ ModelUri::Version { .. }) => {
                Err(PlanError::PinnedVersion(uri.clone()))
            }
            ModelSource::Registry(ModelUri::Alias { name, alias: a }) => {
                Ok(Self::Alias(Registration {
                    name: register.unwrap_or_else(|| name.clone()),
                    alias: Some(alias.unwrap_or_else(|| a.clone())),
                }))
            }
        }
    }

    /// The registration promoting to this target makes, if any.
    pub fn registration(&self) -> Option<&Registration> {
        match self {
            Self::Alias(r) => Some(r),
            Self::File { register, .. } => register.as_ref(),
        }
    }
}

/// The data a retrain reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// Labelled base CSVs, read in order.
    pub data: Vec<PathBuf>,
    /// Stored counts of the base corpus (`nbserve count`, merged), added to
    /// instead of re-reading it: the model in service's parameters and
    /// temperature are refitted on them and the new rows, without a search.
    pub base_counts: Option<PathBuf>,
    /// Feedback logs (JSON lines), read after the CSVs, oldest first.
    pub feedback_logs: Vec<PathBuf>,
    /// The fixed labelled holdout: never trained on; both gates score on it.
    pub holdout: PathBuf,
    /// The CSVs' text column.
    pub text_column: String,
    /// The CSVs' label column.
    pub label_column: String,
    /// Train on feedback labels that are no known class too.
    pub allow_new_classes: bool,
    /// Bytes of feedback log read at most (the newest).
    pub max_log_bytes: u64,
}

/// Everything a retrain needs, decided up front.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The settings of the servers it promotes to (`model.*`, `gate.*`).
    pub settings: Settings,
    /// Where a promoted candidate goes.
    pub target: Target,
    /// What it reads.
    pub inputs: Inputs,
    /// The grid, folds, seed, name, version and creation time.
    pub options: TuneOptions,
    /// The absolute gate's minimum holdout F1 macro.
    pub min_f1_macro: f64,
    /// The no-regression gate's largest F1 macro drop allowed.
    pub max_regression: f64,
    /// Kept versions in `model.dir/versions` (the one in service included).
    pub keep: usize,
    /// How long to wait for another retrain or rollback to finish.
    pub lock_wait: Duration,
    /// Where the JSON report is written, if anywhere.
    pub report: Option<PathBuf>,
}

/// Why a plan cannot run. Messages name parameters and settings; the
/// command line names its flags.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `max_regression` outside [0, 1].
    #[error("max_regression {0}: must be within [0, 1]")]
    MaxRegression(f64),
    /// Fewer than two kept versions.
    #[error("keep {0}: at least 2 (the new model and the one it replaces)")]
    Keep(usize),
    /// The minimum is not a number in [0, 1].
    #[error(transparent)]
    Threshold(#[from] GateError),
    /// `model.path` names one fixed registry version.
    #[error("model.path {0} pins one registry version; retrain promotes by moving an alias (models:/NAME@ALIAS)")]
    PinnedVersion(ModelUri),
    /// An alias to move, but no registered model to move it on.
    #[error("an alias to move needs a registered model name (or a models:/NAME@ALIAS model.path)")]
    AliasWithoutName,
    /// A registration without a tracking run to register from.
    #[error("registering {0} needs a tracking server (model.mlflow_uri or MLFLOW_TRACKING_URI)")]
    NoTracking(String),
}

impl Plan {
    /// The ranges: `keep` at least 2, `max_regression` and `min_f1_macro`
    /// within [0, 1].
    pub fn check(&self) -> Result<(), PlanError> {
        let r = self.max_regression;
        if !(r.is_finite() && (0.0..=1.0).contains(&r)) {
            return Err(PlanError::MaxRegression(r));
        }
        if self.keep < 2 {
            return Err(PlanError::Keep(self.keep));
        }
        check_threshold(self.min_f1_macro)?;
        Ok(())
    }
}
