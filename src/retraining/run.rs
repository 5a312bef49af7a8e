//! One retrain, from its plan to its report: merge the inputs, tune, judge
//! the candidate on the holdout against the minimum, the model in service
//! and the servers' own rule, and promote it under the store's lock.

use std::path::PathBuf;
use std::time::Instant;

use crate::artifact::{Artifact, ArtifactError};
use crate::classifier::Counts;
use crate::dataset::{Dataset, DatasetError};
use crate::fsio::{self, FsError};
use crate::gate::{self, GateError, ServingRule};
use crate::mlflow::MlflowError;
use crate::training::{tune, Tracking, TrainingFacts, TuneError};

use super::current::{Current, InService};
use super::judge::{
    no_regression, AbsoluteGate, CandidateReport, Gates, Parameters, Promotion, Registered, Report,
    Scores, ServingGate, Verdict,
};
use super::merge::{
    model_classes, DataCounts, FeedbackLogError, MergeError, Merged, Merger, OpenLog,
};
use super::plan::{Plan, PlanError, Registration, Target};
use super::store::{self, Store, StoreError};
use crate::shards::ShardError;

/// What a retrain says while it runs (the command line prints it).
#[derive(Debug)]
pub enum Progress<'a> {
    /// The inputs are merged: what will be trained on, and whether the
    /// model in service could be read for its classes.
    Data {
        /// The counts.
        counts: &'a DataCounts,
        /// The model in service was read (its classes are known labels).
        current_read: bool,
    },
    /// The model in service's parameters are refitted on the base counts
    /// and the merged rows (no search: the base rows are not read).
    Refitting {
        /// Documents in the base counts.
        base_documents: u64,
    },
    /// The search starts.
    Tuning {
        /// Grid points.
        grid_points: usize,
        /// Folds.
        folds: u32,
    },
    /// Kept files missing from the version history (left by an
    /// interrupted run) were taken back into it.
    Adopted(&'a [String]),
    /// The outcome could not be logged to the tracking run; the retrain's
    /// outcome stands.
    OutcomeNotLogged(&'a MlflowError),
}

/// Why a retrain failed, or did not put its candidate in service.
#[derive(Debug, thiserror::Error)]
pub enum RetrainError {
    /// The plan breaks a rule.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A CSV (base data or holdout) is unusable.
    #[error(transparent)]
    Data(#[from] DatasetError),
    /// A feedback log cannot be read.
    #[error(transparent)]
    FeedbackLog(#[from] FeedbackLogError),
    /// The inputs make no training set fit for the holdout.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// The base counts cannot be read.
    #[error(transparent)]
    BaseCounts(#[from] ShardError),
    /// A refit on base counts needs the model in service's parameters.
    #[error(
        "--base-counts refits the parameters of the model in service, which cannot be used: {0}"
    )]
    NoModelForCounts(String),
    /// The search failed (a parameter, or the data).
    #[error(transparent)]
    Tune(#[from] TuneError),
    /// The tracking server failed.
    #[error(transparent)]
    Tracking(#[from] MlflowError),
    /// The candidate does not load (a bug: training writes valid models).
    #[error("the new model does not load: {0}")]
    Candidate(ArtifactError),
    /// The absolute gate could not judge (the holdout cannot be scored).
    #[error(transparent)]
    Gate(#[from] GateError),
    /// The store could not be locked.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The promotion failed before `model.path` changed.
    #[error("not promoted, {path} unchanged: {source}")]
    NotPromoted {
        /// `model.path`.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// The outcome stands, but its report file could not be written.
    #[error("{done}, but the report could not be written: {source}")]
    Report {
        /// What happened, in words.
        done: &'static str,
        /// Why it was not written.
        source: FsError,
    },
    /// A gate rejected the candidate (verdict `rejected`).
    #[error("not promoted, nothing changed: {0}")]
    Rejected(String),
    /// The candidate is in service, but what follows failed (verdict
    /// `promoted_with_error`).
    #[error("the candidate IS in service at {path}, but {error}")]
    PromotedWithError {
        /// `model.path`.
        path: String,
        /// What failed.
        error: String,
    },
}

impl Report {
    /// The verdict as an outcome: `Ok` when promoted or unchanged.
    pub fn outcome(&self) -> Result<(), RetrainError> {
        match self.verdict {
            Verdict::Promoted | Verdict::Unchanged => Ok(()),
            Verdict::Rejected => Err(RetrainError::Rejected(self.reason.clone())),
            Verdict::PromotedWithError => Err(RetrainError::PromotedWithError {
                path: self
                    .promoted
                    .as_ref()
                    .map_or_else(String::new, |p| p.path.clone()),
                error: self
                    .promoted
                    .as_ref()
                    .and_then(|p| p.error.clone())
                    .unwrap_or_else(|| "the store could not be completed".into()),
            }),
        }
    }
}

/// Runs the retrain `plan` describes, tracked in `tracking` when given
/// (which a registration needs), telling `progress` what it does. Returns
/// the report of every verdict (also written to `plan.report`); errors are
/// failures before a verdict, or a report that could not be written.
pub fn run(
    plan: &Plan,
    tracking: Option<&dyn Tracking>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Report, RetrainError> {
    plan.check()?;
    if let (Some(r), None) = (plan.target.registration(), tracking) {
        return Err(PlanError::NoTracking(r.name.clone()).into());
    }
    let started = Instant::now();
    let in_service = InService::new(&plan.settings)?;
    let (merged, holdout, base) = read_inputs(plan, &in_service, progress)?;
    let fit = tracing::debug_span!("fit", refit = base.is_some()).entered();
    let mut artifact = match &base {
        Some(base) => {
            progress(Progress::Refitting {
                base_documents: base.documents(),
            });
            super::base::refit(base, &merged, &holdout, &in_service, &plan.options.run)?
        }
        None => {
            progress(Progress::Tuning {
                grid_points: plan.options.grid.points().len(),
                folds: plan.options.folds,
            });
            tune(
                &merged.train,
                Some(&holdout),
                &plan.options,
                |_, _| {},
                &|_, _| {},
            )?
        }
    };
    drop(fit);
    if let Some(t) = tracking {
        artifact.mlflow_run_id = Some(t.run_id().to_owned());
        artifact.seal();
        let inputs = plan.inputs.data.iter().chain(&plan.inputs.feedback_logs);
        let facts =
            TrainingFacts::measured("nbserve retrain", inputs.map(PathBuf::as_path), started);
        t.log_model(&artifact, &facts)?;
    }
    let bytes = artifact.file_bytes();
    let judging = tracing::debug_span!("gates").entered();
    let candidate = Artifact::load_bytes(&bytes).map_err(RetrainError::Candidate)?;
    let absolute =
        AbsoluteGate::from_gate(gate::gate(&candidate, plan.min_f1_macro, Some(&holdout)))?;
    // The comparison and the promotion happen under one lock, so the model
    // compared against is the model replaced, even with retrains racing.
    let model_dir = &plan.settings.model.dir;
    let _lock = match &plan.target {
        Target::Alias(_) if !model_dir.is_dir() => None,
        _ => Some(store::lock(model_dir, plan.lock_wait)?),
    };
    let current = Current::read(&in_service, &holdout, &artifact);
    let gates = Gates {
        no_regression: no_regression(
            absolute.f1_macro,
            current.report.as_ref().map(|c| c.holdout.f1_macro),
            plan.max_regression,
        ),
        absolute,
        serving: serving_gate(plan, &bytes),
    };
    // An identical candidate is not promoted: a nightly retrain without new
    // labels would otherwise make every server reload the same model and
    // fill the kept versions with copies. A failed gate still rejects it,
    // so a model in service that no longer passes is reported as such.
    let unchanged = gates.passed() && current.identical;
    drop(judging);
    let promoted = if gates.passed() && !unchanged {
        Some(promote(
            plan, &artifact, &bytes, &current, tracking, progress,
        )?)
    } else {
        None
    };
    let (verdict, reason) = verdict(&gates, promoted.as_ref(), unchanged, &current);
    let report = Report {
        verdict,
        reason,
        data: merged.counts.clone(),
        parameters: parameters(&artifact, plan.options.run.seed),
        candidate: CandidateReport {
            name: artifact.model.name.clone(),
            version: artifact.model.version.clone(),
            sha256: fsio::sha256_hex(&bytes),
            holdout: Scores::from(artifact.evaluation.as_ref().expect("tune evaluates")),
        },
        current: current.report,
        current_error: current.error,
        gates,
        promoted,
        mlflow_run_id: tracking.map(|t| t.run_id().to_owned()),
    };
    if let Some(path) = &plan.report {
        write_report(path, &report)?;
    }
    // Last, and not fatal: the promotion (or the rejection) has already
    // happened, so a tracking server failing now must not turn the outcome
    // a scheduler sees into "failed" with no report.
    if let Some(t) = tracking {
        let (metrics, tags) = outcome_record(&report);
        if let Err(e) = t.log_outcome(&metrics, &tags) {
            progress(Progress::OutcomeNotLogged(&e));
        }
    }
    Ok(report)
}

/// Reads the holdout, the feedback logs, the base data and base counts,
/// and merges them.
#[tracing::instrument(level = "debug", name = "read_inputs", skip_all)]
fn read_inputs(
    plan: &Plan,
    in_service: &InService,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(Merged, Dataset, Option<Counts>), RetrainError> {
    let inputs = &plan.inputs;
    let read = |p: &PathBuf| Dataset::from_csv(p, &inputs.text_column, &inputs.label_column);
    let name = |p: &PathBuf| p.display().to_string();
    let holdout = read(&inputs.holdout)?;
    let logs = inputs
        .feedback_logs
        .iter()
        .map(|p| OpenLog::open(p))
        .collect::<Result<Vec<_>, _>>()?;
    let current = in_service
        .read()
        .ok()
        .and_then(|src| model_classes(&src.bytes));
    let mut merger = Merger::new(
        &holdout,
        &name(&inputs.holdout),
        current.as_deref(),
        inputs.allow_new_classes,
    )?;
    let base = inputs
        .base_counts
        .as_deref()
        .map(super::base::read)
        .transpose()?;
    let mut base_classes = std::collections::BTreeMap::new();
    if let Some(b) = &base {
        merger.know_labels(b.classes());
        base_classes.extend(b.classes().iter().cloned().zip(b.class_documents()));
    }
    for p in &inputs.data {
        merger.add_base(read(p)?, &name(p))?;
    }
    merger.add_logs(logs, inputs.max_log_bytes)?;
    let merged = merger.finish_over(&base_classes)?;
    progress(Progress::Data {
        counts: &merged.counts,
        current_read: current.is_some(),
    });
    Ok((merged, holdout, base))
}

/// What a server with these settings would say when loading `bytes` from
/// `model.path`: the one servable rule.
fn serving_gate(plan: &Plan, bytes: &[u8]) -> ServingGate {
    match gate::load_gated(bytes, &ServingRule::from(&plan.settings)) {
        Ok(_) => ServingGate::passed(),
        Err(e) => ServingGate::refused(e.to_string()),
    }
}

/// The verdict and its reason.
fn verdict(
    gates: &Gates,
    promoted: Option<&Promotion>,
    unchanged: bool,
    current: &Current,
) -> (Verdict, String) {
    match promoted {
        Some(Promotion { error: None, .. }) => (Verdict::Promoted, gates.reason()),
        Some(Promotion { error: Some(e), .. }) => (
            Verdict::PromotedWithError,
            format!("{}; promoted, but: {e}", gates.reason()),
        ),
        None if unchanged => (
            Verdict::Unchanged,
            format!(
                "the candidate predicts exactly as the model in service{} (same vocabulary, counts and parameters); nothing to promote ({})",
                current
                    .kept
                    .as_ref()
                    .map(|k| format!(" {}", k.version))
                    .unwrap_or_default(),
                gates.reason()
            ),
        ),
        None => (Verdict::Rejected, gates.reason()),
    }
}

/// The chosen point and the search that chose it (none for a refit on
/// base counts: the point is the model in service's).
fn parameters(artifact: &Artifact, seed: u64) -> Parameters {
    match &artifact.tuning {
        Some(tuning) => {
            let best = &tuning.results[tuning.best];
            Parameters {
                chosen: best.params,
                folds: tuning.folds,
                seed: tuning.seed,
                grid_points: tuning.results.len(),
                cv_f1_macro: Some(best.f1_macro.mean),
            }
        }
        None => {
            let t = &artifact.training;
            let v = t.vectorizer.options();
            Parameters {
                chosen: crate::classifier::GridPoint {
                    model: t.model_kind(),
                    binary: v.binary,
                    alpha: t.alpha,
                    min_df: v.min_df,
                    max_df: v.max_df,
                    max_features: v.max_features,
                },
                folds: 0,
                seed,
                grid_points: 1,
                cv_f1_macro: None,
            }
        }
    }
}

fn write_report(path: &std::path::Path, report: &Report) -> Result<(), RetrainError> {
    let mut json = serde_json::to_vec_pretty(report).expect("serialisable");
    json.push(b'\n');
    fsio::write_atomic(path, &json).map_err(|source| RetrainError::Report {
        done: match report.verdict {
            Verdict::Promoted | Verdict::PromotedWithError => "the candidate WAS promoted",
            Verdict::Rejected => "the candidate was rejected, nothing changed",
            Verdict::Unchanged => {
                "the candidate is identical to the model in service, nothing changed"
            }
        },
        source,
    })
}

/// Puts the candidate in service: the registry first (when it fails, no
/// file has changed), then `model.path` through the store.
#[tracing::instrument(level = "debug", name = "promote", skip_all)]
fn promote(
    plan: &Plan,
    artifact: &Artifact,
    bytes: &[u8],
    current: &Current,
    tracking: Option<&dyn Tracking>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Promotion, RetrainError> {
    let replaced_version = current.kept.as_ref().map(|k| k.version.clone());
    let registered = match (plan.target.registration(), tracking) {
        (Some(r), Some(t)) => Some(register(t, r)?),
        _ => None,
    };
    let mut promotion = Promotion {
        target: "registry",
        path: plan.settings.model.path.to_string(),
        file: None,
        replaced_version,
        removed: Vec::new(),
        adopted: Vec::new(),
        error: None,
        registered,
    };
    let Target::File { path, .. } = &plan.target else {
        return Ok(promotion);
    };
    let store = Store::new(&plan.settings.model.dir, plan.settings.model.max_bytes);
    let candidate = store::Keep {
        bytes,
        name: &artifact.model.name,
        version: &artifact.model.version,
    };
    let replaced = current.kept.as_ref().map(|k| k.as_keep());
    let done = store
        .promote(path, &candidate, replaced.as_ref(), plan.keep)
        .map_err(|source| RetrainError::NotPromoted {
            path: path.clone(),
            source,
        })?;
    if !done.adopted.is_empty() {
        progress(Progress::Adopted(&done.adopted));
    }
    promotion.target = "file";
    promotion.path = path.display().to_string();
    promotion.file = Some(done.file);
    promotion.removed = done.removed;
    promotion.adopted = done.adopted;
    promotion.error = done.error;
    Ok(promotion)
}

/// Registers a new version from `t`'s logged model and moves the alias
/// `r` names to it: how a promoted retrain, and a promoted challenger, are
/// registered.
pub fn register(t: &dyn Tracking, r: &Registration) -> Result<Registered, MlflowError> {
    let mv = t.register(&r.name)?;
    if let Some(alias) = &r.alias {
        t.set_alias(&r.name, alias, &mv.version)?;
    }
    Ok(Registered {
        name: mv.name,
        version: mv.version,
        alias: r.alias.clone(),
    })
}

/// Metrics, then tags, as a tracking run records them.
type Record = (Vec<(String, f64)>, Vec<(String, String)>);

/// The metrics and tags a retrain's outcome adds to its tracking run.
fn outcome_record(r: &Report) -> Record {
    let data = &r.data;
    let mut metrics: Vec<(String, f64)> = [
        ("holdout.candidate.f1_macro", r.candidate.holdout.f1_macro),
        ("data.training_documents", data.training_documents as f64),
        ("data.holdout_overlap", data.holdout_overlap as f64),
        ("data.feedback_examples", data.feedback_examples as f64),
        ("data.malformed", data.malformed as f64),
        ("data.unknown_label", data.skipped.unknown_label as f64),
        ("data.over_budget", data.skipped.over_budget as f64),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(c) = &r.current {
        metrics.push(("holdout.current.f1_macro".to_owned(), c.holdout.f1_macro));
    }
    if let Some(d) = r.gates.no_regression.delta {
        metrics.push(("gate.no_regression.delta".to_owned(), d));
    }
    let verdict = serde_json::to_value(r.verdict).expect("serialisable");
    let tags = vec![
        (
            "nbserve.retrain.verdict".to_owned(),
            verdict.as_str().unwrap_or_default().to_owned(),
        ),
        (
            "nbserve.retrain.reason".to_owned(),
            r.reason.chars().take(5000).collect(),
        ),
    ];
    (metrics, tags)
}
