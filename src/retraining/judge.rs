//! The two gates of a retrain and the report that tells their outcome.

use serde::Serialize;

use crate::classifier::{Evaluation, GridPoint};
use crate::gate::{GateError, GatePass};

use super::merge::DataCounts;

/// Holdout scores of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// F1 macro (what the gates judge).
    pub f1_macro: f64,
    /// Balanced accuracy.
    pub balanced_accuracy: f64,
    /// Accuracy.
    pub accuracy: f64,
    /// Holdout documents scored.
    pub documents: u64,
}

impl From<&Evaluation> for Scores {
    fn from(e: &Evaluation) -> Self {
        Self {
            f1_macro: e.f1_macro,
            balanced_accuracy: e.balanced_accuracy,
            accuracy: e.accuracy,
            documents: e.documents,
        }
    }
}

/// The absolute gate: F1 macro on the holdout ≥ the minimum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbsoluteGate {
    /// Whether the candidate passed.
    pub passed: bool,
    /// The candidate's holdout F1 macro.
    pub f1_macro: f64,
    /// The minimum (`--min-f1-macro`, else `gate.min_f1_macro`).
    pub minimum: f64,
}

impl AbsoluteGate {
    /// The outcome of [`crate::gate::gate`] on the candidate; `Err` for an
    /// error that is no verdict (an invalid threshold, a holdout that cannot
    /// be scored).
    pub fn from_gate(result: Result<GatePass, GateError>) -> Result<Self, GateError> {
        match result {
            Ok(p) => Ok(Self {
                passed: true,
                f1_macro: p.f1_macro,
                minimum: p.threshold,
            }),
            Err(GateError::Rejected {
                f1_macro,
                threshold,
                ..
            }) => Ok(Self {
                passed: false,
                f1_macro,
                minimum: threshold,
            }),
            Err(e) => Err(e),
        }
    }
}

/// The no-regression gate: not worse than the model in service by more than
/// `max_regression` F1 macro, both scored on the same holdout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionGate {
    /// False when the current model could not be loaded or scored (then
    /// only the absolute gate decides; `current_error` says why).
    pub applied: bool,
    /// Whether the candidate passed; `null` when not applied.
    pub passed: Option<bool>,
    /// The largest F1 macro drop allowed.
    pub max_regression: f64,
    /// The current model's F1 macro minus `max_regression`.
    pub minimum: Option<f64>,
    /// Candidate F1 macro minus current F1 macro.
    pub delta: Option<f64>,
}

/// Judges the candidate's F1 against the current model's (if scored).
pub fn no_regression(
    candidate_f1: f64,
    current_f1: Option<f64>,
    max_regression: f64,
) -> RegressionGate {
    match current_f1 {
        None => RegressionGate {
            applied: false,
            passed: None,
            max_regression,
            minimum: None,
            delta: None,
        },
        Some(current) => {
            let minimum = current - max_regression;
            RegressionGate {
                applied: true,
                passed: Some(candidate_f1 >= minimum),
                max_regression,
                minimum: Some(minimum),
                delta: Some(candidate_f1 - current),
            }
        }
    }
}

/// The load check every server applies to what `model.path` names
/// (`model.max_bytes`, then `gate.min_f1_macro` on `gate.holdout_path` or
/// the stored evaluation), run on the candidate with retrain's own
/// settings: a model the servers would refuse to load (and a restarted
/// server would refuse to start with) is never promoted, whatever
/// `--min-f1-macro` says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServingGate {
    /// Whether a server with these settings would load the candidate.
    pub passed: bool,
    /// Why it would not.
    pub refusal: Option<String>,
}

impl ServingGate {
    /// A server would load it.
    pub fn passed() -> Self {
        Self {
            passed: true,
            refusal: None,
        }
    }

    /// A server would refuse it, for `refusal`.
    pub fn refused(refusal: impl Into<String>) -> Self {
        Self {
            passed: false,
            refusal: Some(refusal.into()),
        }
    }
}

/// Both gates, and the servers' load check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gates {
    /// F1 macro ≥ minimum.
    pub absolute: AbsoluteGate,
    /// Not worse than the current model.
    pub no_regression: RegressionGate,
    /// What a server loading it would say.
    pub serving: ServingGate,
}

impl Gates {
    /// True when every gate that applies passed.
    pub fn passed(&self) -> bool {
        self.absolute.passed && self.no_regression.passed != Some(false) && self.serving.passed
    }

    /// One sentence: which gate decided, with its numbers.
    pub fn reason(&self) -> String {
        let a = &self.absolute;
        let r = &self.no_regression;
        let absolute = format!(
            "holdout F1 macro {:.4} {} the minimum {:.4}",
            a.f1_macro,
            if a.passed { ">=" } else { "is below" },
            a.minimum
        );
        let regression = match (r.passed, r.minimum, r.delta) {
            (Some(passed), Some(minimum), Some(delta)) => format!(
                "{} the current model by {:.4} (allowed drop {:.4}, minimum {:.4})",
                if delta >= 0.0 {
                    "improves on"
                } else if passed {
                    "falls short of, within the allowance,"
                } else {
                    "regresses from"
                },
                delta.abs(),
                r.max_regression,
                minimum
            ),
            _ => "no-regression gate not applied: the current model could not be scored".into(),
        };
        if !a.passed {
            format!("rejected by the absolute gate: {absolute}")
        } else if r.passed == Some(false) {
            format!("rejected by the no-regression gate: candidate {regression}")
        } else if let Some(refusal) = self
            .serving
            .refusal
            .as_deref()
            .filter(|_| !self.serving.passed)
        {
            format!("rejected by the serving gate: the servers' own load check would refuse it: {refusal}")
        } else {
            format!("both gates passed: {absolute}; candidate {regression}")
        }
    }
}

/// The verdict of a retrain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Both gates passed and the candidate is in service.
    Promoted,
    /// The candidate is in service, but what follows the replacement of
    /// `model.path` failed (the version history or the pruning):
    /// `promoted.error` says what.
    #[serde(rename = "promoted_with_error")]
    PromotedWithError,
    /// A gate refused it; nothing changed.
    Rejected,
    /// Both gates passed but it scores every text exactly as the model in
    /// service (same classes, vocabulary, counts and parameters): nothing
    /// was promoted and nothing changed.
    Unchanged,
}

/// The candidate's description in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateReport {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// sha256 of the artifact file.
    pub sha256: String,
    /// Holdout scores.
    pub holdout: Scores,
}

/// The current model's description in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurrentReport {
    /// `model.path` as configured (a file or a `models:/` URI).
    pub source: String,
    /// Model name.
    pub name: String,
    /// Model version (the artifact's; `registry_version` for a URI).
    pub version: String,
    /// The registry version a `models:/` URI resolved to.
    pub registry_version: Option<String>,
    /// Holdout labels it lacks: their documents were scored as errors.
    pub missing_labels: Vec<String>,
    /// Holdout scores.
    pub holdout: Scores,
}

/// The chosen parameters and the search that chose them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parameters {
    /// The chosen grid point.
    #[serde(flatten)]
    pub chosen: GridPoint,
    /// Cross-validation folds (0: no search, a refit on base counts).
    pub folds: u32,
    /// Fold seed.
    pub seed: u64,
    /// Grid points tried.
    pub grid_points: usize,
    /// Mean cross-validated F1 macro of the chosen point (`null` without a search).
    pub cv_f1_macro: Option<f64>,
}

/// Where a promoted model went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Promotion {
    /// `file` (model.path replaced) or `registry` (alias moved).
    pub target: &'static str,
    /// `model.path` as configured.
    pub path: String,
    /// The kept copy in `model.dir/versions/` (file target).
    pub file: Option<String>,
    /// The replaced model's version, when one was in service.
    pub replaced_version: Option<String>,
    /// Kept versions deleted to honour `--keep`.
    pub removed: Vec<String>,
    /// Kept files found unlisted in the history (left by a crash) and
    /// taken back into it.
    pub adopted: Vec<String>,
    /// What failed after `model.path` was replaced (verdict
    /// `promoted_with_error`).
    pub error: Option<String>,
    /// The registered model version, when the run was registered.
    pub registered: Option<Registered>,
}

/// A registry version created by a promotion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Registered {
    /// Registered model name.
    pub name: String,
    /// Version number.
    pub version: String,
    /// The alias moved to it, if any.
    pub alias: Option<String>,
}

/// The `--report` JSON of `nbserve retrain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `promoted`, `promoted_with_error`, `rejected` or `unchanged`.
    pub verdict: Verdict,
    /// Which gate decided, with its numbers.
    pub reason: String,
    /// Data counts.
    pub data: DataCounts,
    /// Chosen parameters.
    pub parameters: Parameters,
    /// The new model.
    pub candidate: CandidateReport,
    /// The model in service, scored on the same holdout; `null` when it
    /// could not be loaded or scored.
    pub current: Option<CurrentReport>,
    /// Why `current` is `null`.
    pub current_error: Option<String>,
    /// Both gates.
    pub gates: Gates,
    /// Where the candidate went; `null` when rejected or unchanged.
    pub promoted: Option<Promotion>,
    /// The MLflow run, when tracked.
    pub mlflow_run_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::GateSource;

    fn absolute(f1: f64, min: f64) -> AbsoluteGate {
        let result = if f1 >= min {
            Ok(GatePass {
                f1_macro: f1,
                threshold: min,
                gate_source: GateSource::Stored,
            })
        } else {
            Err(GateError::Rejected {
                f1_macro: f1,
                threshold: min,
                gate_source: GateSource::Stored,
            })
        };
        AbsoluteGate::from_gate(result).unwrap()
    }

    #[test]
    fn both_gates_must_pass() {
        let pass = Gates {
            absolute: absolute(0.95, 0.9),
            no_regression: no_regression(0.95, Some(0.953), 0.005),
            serving: ServingGate::passed(),
        };
        assert!(pass.passed(), "{}", pass.reason());
        assert!(
            pass.reason().starts_with("both gates passed"),
            "{}",
            pass.reason()
        );

        let regressed = Gates {
            absolute: absolute(0.95, 0.9),
            no_regression: no_regression(0.95, Some(0.96), 0.005),
            serving: ServingGate::passed(),
        };
        assert!(!regressed.passed());
        assert_eq!(regressed.no_regression.passed, Some(false));
        assert!(
            regressed
                .reason()
                .starts_with("rejected by the no-regression gate"),
            "{}",
            regressed.reason()
        );

        let low = Gates {
            absolute: absolute(0.85, 0.9),
            no_regression: no_regression(0.85, Some(0.5), 0.005),
            serving: ServingGate::passed(),
        };
        assert!(!low.passed());
        assert!(low.reason().starts_with("rejected by the absolute gate"));
    }

    #[test]
    fn without_a_current_model_only_the_absolute_gate_decides() {
        let g = Gates {
            absolute: absolute(0.95, 0.9),
            no_regression: no_regression(0.95, None, 0.005),
            serving: ServingGate::passed(),
        };
        assert!(g.passed());
        assert!(!g.no_regression.applied);
        assert!(g.reason().contains("not applied"), "{}", g.reason());
        let json = serde_json::to_value(&g).unwrap();
        assert_eq!(json["no_regression"]["passed"], serde_json::Value::Null);
        assert_eq!(json["absolute"]["minimum"], 0.9);
    }

    #[test]
    fn a_model_the_servers_would_refuse_is_rejected() {
        let g = Gates {
            absolute: absolute(0.95, 0.5),
            no_regression: no_regression(0.95, Some(0.9), 0.005),
            serving: ServingGate::refused("F1 macro 0.95 is below the gate minimum 0.99"),
        };
        assert!(!g.passed());
        assert!(
            g.reason().starts_with("rejected by the serving gate"),
            "{}",
            g.reason()
        );
        assert!(g.reason().contains("0.99"), "{}", g.reason());
    }

    #[test]
    fn an_invalid_threshold_is_no_verdict() {
        assert!(AbsoluteGate::from_gate(Err(GateError::InvalidThreshold(2.0))).is_err());
    }
}
