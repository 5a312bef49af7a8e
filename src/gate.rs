//! The deployment gate, shared by `nbserve check`, start-up and reload.

use std::fmt;

use crate::artifact::LoadedModel;
use crate::dataset::Dataset;
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

/// Accepts `model` when its F1 macro reaches `min_f1_macro`.
///
/// With a `holdout`, the model is re-evaluated on it and the stored evaluation
/// is ignored, so a stale or edited evaluation block cannot pass the gate.
pub fn gate(
    model: &LoadedModel,
    min_f1_macro: f64,
    holdout: Option<&Dataset>,
) -> Result<GatePass, GateError> {
    if !(min_f1_macro.is_finite() && (0.0..=1.0).contains(&min_f1_macro)) {
        return Err(GateError::InvalidThreshold(min_f1_macro));
    }
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
