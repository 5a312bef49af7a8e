//! The deployment gate: the one rule for what may be served.
//!
//! [`load_gated`] is that rule, and every path that puts a model in service
//! or says it could be goes through it with the configured limits: start-up,
//! `/admin/reload`, source polling, `nbserve check`, `promote`, `retrain`
//! (the candidate's serving gate) and `rollback`. [`gate`] is its last step,
//! the F1 threshold, which `retrain` also applies on its own holdout.

use std::borrow::Cow;
use std::fmt;

use crate::artifact::{Artifact, ArtifactError, LoadedModel};
use crate::dataset::{Dataset, DatasetError};
use crate::fsio::sha256_hex;
use crate::settings::{GateSettings, Settings};
use crate::training::{evaluate_on, TrainError};

/// Where the F1 macro the gate judged came from (`gate_source` in logs, in
/// `GET /model` and in these types).
#[derive(Debug, Clone, PartialEq)]
pub enum GateSource {
    /// The evaluation block stored in the artifact.
    Stored,
    /// A fresh evaluation on a holdout file.
    Holdout {
        /// Documents evaluated.
        documents: u64,
    },
}

impl fmt::Display for GateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateSource::Stored => write!(f, "stored evaluation"),
            GateSource::Holdout { documents } => {
                write!(f, "holdout re-evaluation, {documents} documents")
            }
        }
    }
}

/// A model that passed the gate, with the numbers it passed on.
#[derive(Debug, Clone, PartialEq)]
pub struct GatePass {
    /// The F1 macro judged.
    pub f1_macro: f64,
    /// The minimum it had to reach.
    pub threshold: f64,
    /// Where the F1 came from.
    pub gate_source: GateSource,
}

/// Why the gate did not let a model through.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The artifact is larger than `model.max_bytes`.
    #[error("the artifact is {bytes} bytes, over model.max_bytes ({max_bytes} bytes)")]
    TooLarge {
        /// Its size.
        bytes: u64,
        /// The cap.
        max_bytes: u64,
    },
    /// Not a valid artifact, or one too large for `gate.max_memory_bytes`.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// `gate.holdout_path` cannot be read.
    #[error(transparent)]
    HoldoutFile(#[from] DatasetError),
    /// The configured minimum is not a number in [0, 1].
    #[error("gate minimum F1 macro must be within [0, 1], got {0}")]
    InvalidThreshold(f64),
    /// The model is below the minimum.
    #[error(
        "model F1 macro {f1_macro:.4} ({gate_source}) is below the gate minimum {threshold:.4}"
    )]
    Rejected {
        /// The F1 macro judged.
        f1_macro: f64,
        /// The minimum.
        threshold: f64,
        /// Where the F1 came from.
        gate_source: GateSource,
    },
    /// The holdout could not be evaluated.
    #[error("holdout re-evaluation failed: {0}")]
    Holdout(#[from] TrainError),
}

/// Refuses a minimum F1 macro that is not a number within [0, 1].
pub fn check_threshold(min_f1_macro: f64) -> Result<(), GateError> {
    if GateSettings::valid_minimum(min_f1_macro) {
        Ok(())
    } else {
        Err(GateError::InvalidThreshold(min_f1_macro))
    }
}

/// Accepts `model` when its F1 macro reaches `min_f1_macro`.
///
/// With a `holdout`, the model is re-evaluated on it and the stored evaluation
/// is ignored, so a stale or edited evaluation block cannot pass the gate.
pub fn gate(
    model: &LoadedModel,
    min_f1_macro: f64,
    holdout: Option<&Dataset>,
) -> Result<GatePass, GateError> {
    check_threshold(min_f1_macro)?;
    let (f1_macro, gate_source) = match holdout {
        None => (model.meta.evaluation.f1_macro, GateSource::Stored),
        Some(data) => {
            let e = evaluate_on(&model.classifier, data)?;
            (
                e.f1_macro,
                GateSource::Holdout {
                    documents: e.documents,
                },
            )
        }
    };
    if f1_macro >= min_f1_macro {
        Ok(GatePass {
            f1_macro,
            threshold: min_f1_macro,
            gate_source,
        })
    } else {
        Err(GateError::Rejected {
            f1_macro,
            threshold: min_f1_macro,
            gate_source,
        })
    }
}

/// What the servable rule is configured by: `gate.*` (the minimum, the
/// holdout, the memory budget) and `model.max_bytes`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServingRule {
    /// The gate settings.
    pub gate: GateSettings,
    /// Largest artifact served, in bytes (`model.max_bytes`).
    pub max_bytes: u64,
}

impl From<&Settings> for ServingRule {
    fn from(s: &Settings) -> Self {
        Self {
            gate: s.gate.clone(),
            max_bytes: s.model.max_bytes,
        }
    }
}

/// A model that may be served: validated, within the limits, past the gate.
#[derive(Debug, Clone)]
pub struct Servable {
    /// The classifier and its description.
    pub model: LoadedModel,
    /// The gate's verdict.
    pub pass: GatePass,
    /// The sha256 (hex) of the artifact's bytes.
    pub sha256: String,
}

/// The one rule for "may this be served": artifact `bytes` within
/// `model.max_bytes`, valid, loadable within `gate.max_memory_bytes`, and
/// reaching `gate.min_f1_macro` — re-evaluated on `gate.holdout_path` when
/// set, else as stored.
///
/// Owned bytes are freed once parsed, before the scoring tables are built
/// (a server's load); borrowed ones are left to their owner.
pub fn load_gated<'a>(
    bytes: impl Into<Cow<'a, [u8]>>,
    rule: &ServingRule,
) -> Result<Servable, GateError> {
    let bytes = bytes.into();
    let size = bytes.len() as u64;
    if size > rule.max_bytes {
        return Err(GateError::TooLarge {
            bytes: size,
            max_bytes: rule.max_bytes,
        });
    }
    let sha256 = sha256_hex(&bytes);
    let budget = rule.gate.max_memory_bytes;
    let model = match bytes {
        Cow::Owned(bytes) => Artifact::load_owned_within(bytes, budget)?,
        Cow::Borrowed(bytes) => Artifact::load_bytes_within(bytes, budget)?,
    };
    let holdout = rule
        .gate
        .holdout_path
        .as_deref()
        .map(Dataset::holdout)
        .transpose()?;
    let pass = gate(&model, rule.gate.min_f1_macro, holdout.as_ref())?;
    Ok(Servable {
        model,
        pass,
        sha256,
    })
}
