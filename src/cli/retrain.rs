//! `nbserve retrain` and `nbserve rollback`: arguments into a plan, the
//! library's use cases (`nbserve::retraining`) run, their progress and
//! outcome printed.

use std::path::Path;
use std::time::Duration;

use nbserve::fsio;
use nbserve::retraining::judge::{Report, Scores, Verdict};
use nbserve::retraining::merge::DataCounts;
use nbserve::retraining::{Inputs, Plan, PlanError, Progress, RetrainError, Target};
use nbserve::settings::ModelSource;
use nbserve::training::{RunOptions, TuneOptions};

use super::args::{RetrainArgs, RollbackArgs};
use super::commands::creation_time;
use super::exit::Usage;
use super::serve::load_settings;
use super::tracking::Tracker;
use super::tune::{grid_from, tune_failure};
use super::{CmdResult, Failure};

/// A plan error as the command line reports it, naming its flags.
fn plan_failure(e: PlanError) -> Failure {
    let message = match &e {
        PlanError::MaxRegression(v) => format!("--max-regression {v}: must be within [0, 1]"),
        PlanError::Keep(k) => {
            format!("--keep {k}: at least 2 (the new model and the one it replaces)")
        }
        PlanError::AliasWithoutName => {
            "--alias needs --register NAME (or a models:/NAME@ALIAS model.path)".into()
        }
        PlanError::NoTracking(name) => format!(
            "registering {name} needs a tracking server: --mlflow-uri, MLFLOW_TRACKING_URI or model.mlflow_uri"
        ),
        _ => e.to_string(),
    };
    Failure::from(e).worded(message)
}

/// A retrain error as the command line reports it (`source`: `model.path`).
fn retrain_failure(e: RetrainError, source: &ModelSource) -> Failure {
    match e {
        RetrainError::Plan(e @ PlanError::NoTracking(_)) if source.file().is_none() => {
            let message = format!(
                "model.path {source} is a registry alias: retrain registers the new version there, which needs --mlflow-uri, MLFLOW_TRACKING_URI or model.mlflow_uri"
            );
            Failure::from(e).worded(message)
        }
        RetrainError::Plan(e) => plan_failure(e),
        RetrainError::Tune(e) => tune_failure(e),
        e => e.into(),
    }
}

/// Fails (usage) unless `report` can be replaced: the report is written
/// after a promotion, too late to find out its directory is missing or
/// read-only. The probe is the replacement's own temporary file, created
/// with a unique name that must not exist yet (nothing planted there is
/// followed or truncated), then removed.
fn check_writable(report: &Path) -> Result<(), Failure> {
    fsio::Replacement::new(report).map(drop).map_err(|e| {
        Usage(format!(
            "--report {}: cannot write there: {e}",
            report.display()
        ))
        .into()
    })
}

/// The plan the arguments describe, checked before any work starts.
fn plan(a: &RetrainArgs) -> Result<Plan, Failure> {
    let grid = grid_from(&a.grid)?;
    let settings = load_settings(a.config.as_deref())?;
    let target = Target::new(
        &settings.model.path,
        a.tracking.register.clone(),
        a.alias.clone(),
    )
    .map_err(plan_failure)?;
    let created_at = creation_time()?;
    let name = a.name.clone().unwrap_or_else(|| match &target {
        Target::Alias(r) => r.name.clone(),
        Target::File { path, .. } => path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_owned(),
    });
    let version = a
        .model_version
        .clone()
        .unwrap_or_else(|| created_at.format("%Y.%m.%d-%H%M%S%.3f").to_string());
    let plan = Plan {
        min_f1_macro: a.min_f1_macro.unwrap_or(settings.gate.min_f1_macro),
        settings,
        target,
        inputs: Inputs {
            data: a.data.clone(),
            base_counts: a.base_counts.clone(),
            feedback_logs: a.feedback_log.clone(),
            holdout: a.holdout.clone(),
            text_column: a.text_column.clone(),
            label_column: a.label_column.clone(),
            allow_new_classes: a.allow_new_classes,
            max_log_bytes: a.max_log_bytes,
        },
        options: TuneOptions {
            grid,
            folds: a.grid.folds,
            fold_rule: nbserve::tuning::FoldRule::Stratified,
            run: RunOptions {
                test_size: 0.0,
                seed: a.seed,
                name,
                version: Some(version),
                created_at,
            },
        },
        max_regression: a.max_regression,
        keep: a.keep,
        lock_wait: Duration::from_secs(a.lock_wait_secs),
        report: a.report.clone(),
    };
    plan.check().map_err(plan_failure)?;
    if let Some(report) = &plan.report {
        check_writable(report)?;
    }
    Ok(plan)
}

/// `nbserve retrain`: with a tracking URI (`--mlflow-uri`, else the
/// settings' `model.mlflow_uri` for a registry alias), inside an MLflow run
/// (FAILED when rejected or when anything fails).
pub(super) fn retrain(mut a: RetrainArgs) -> CmdResult {
    let plan = plan(&a)?;
    if matches!(plan.target, Target::Alias(_))
        && a.tracking
            .mlflow_uri
            .as_deref()
            .is_none_or(|u| u.is_empty())
    {
        a.tracking.mlflow_uri = plan.settings.model.mlflow_uri.clone();
    }
    let run_name = format!(
        "{}-{}",
        plan.options.run.name,
        plan.options.run.version.as_deref().unwrap_or("retrain")
    );
    let tracker = Tracker::start(&a.tracking, &run_name, "nbserve retrain")?;
    let tracking = tracker
        .as_ref()
        .map(|t| t as &dyn nbserve::training::Tracking);
    let outcome = nbserve::retraining::run(&plan, tracking, &mut print_progress)
        .and_then(|report| {
            print_report(&report);
            report.outcome()
        })
        .map_err(|e| retrain_failure(e, &plan.settings.model.path));
    if let Some(t) = tracker {
        t.finish(&outcome);
    }
    outcome
}

/// A retrain's progress, on stderr.
fn print_progress(p: Progress<'_>) {
    match p {
        Progress::Data {
            counts,
            current_read,
        } => print_data_counts(counts, current_read),
        Progress::Refitting { base_documents } => noteln!(
            "refitting the parameters and temperature of the model in service on {base_documents} documents of base counts and the merged rows (no search), then scoring on the holdout"
        ),
        Progress::Tuning { grid_points, folds } => noteln!(
            "cross-validating {grid_points} grid points on {folds} folds, then scoring on the holdout"
        ),
        Progress::Adopted(files) => noteln!(
            "nbserve: kept files missing from the version history (left by an interrupted run) were taken back into it: {}",
            files.join(", ")
        ),
        Progress::OutcomeNotLogged(e) => noteln!(
            "nbserve: warning: the outcome could not be logged to the MLflow run: {e}"
        ),
    }
}

/// The data counts on stderr, and what to do about labels skipped as unknown.
fn print_data_counts(c: &DataCounts, current_read: bool) {
    let s = &c.skipped;
    let reasons = [
        (s.without_text, "without text"),
        (s.malformed, "malformed"),
        (s.label_too_long, "label too long"),
        (s.too_many_labels, "label past the class limit"),
        (s.unknown_label, "unknown label"),
        (s.over_budget, "over --max-log-bytes"),
    ];
    let skipped: Vec<String> = reasons
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
    noteln!(
        "data: {} base rows, {} feedback examples ({} lines, {} bytes; skipped: {}); \
         {} duplicates dropped, {} relabelled, {} holdout texts removed; \
         training on {}, holdout {}",
        c.base_rows,
        c.feedback_examples,
        c.feedback_lines,
        c.feedback_bytes,
        if skipped.is_empty() {
            "none".to_owned()
        } else {
            skipped.join(", ")
        },
        c.duplicates,
        c.relabelled,
        c.holdout_overlap,
        c.training_documents,
        c.holdout_documents
    );
    if s.unknown_label > 0 {
        // Debug formatting quotes the labels and escapes control characters.
        let named: Vec<String> = c
            .unknown_labels
            .iter()
            .map(|(label, n)| format!("{label:?} ({n})"))
            .collect();
        noteln!(
            "data: {} feedback lines have a label that is not a class of the holdout{}, nor of --data: {}{}; \
             skipped (--allow-new-classes trains on them)",
            s.unknown_label,
            if current_read {
                " or of the model in service"
            } else {
                " (the model in service could not be read)"
            },
            named.join(", "),
            if s.unknown_label > c.unknown_labels.values().sum::<u64>() {
                ", ..."
            } else {
                ""
            }
        );
    }
}

fn print_report(r: &Report) {
    let row = |who: &str, version: &str, s: &Scores| {
        outln!(
            "{who:<10} {version:<28} {:>8.4} {:>9.4} {:>8.4}",
            s.f1_macro,
            s.balanced_accuracy,
            s.accuracy
        )
    };
    outln!(
        "{:<10} {:<28} {:>8} {:>9} {:>8}",
        "holdout",
        "version",
        "F1 macro",
        "bal. acc",
        "accuracy"
    );
    row("candidate", &r.candidate.version, &r.candidate.holdout);
    match &r.current {
        Some(c) => {
            row("current", &c.version, &c.holdout);
            if !c.missing_labels.is_empty() {
                outln!(
                    "{:<10} lacks the holdout label(s) {}: their documents count as its errors",
                    "",
                    c.missing_labels.join(", ")
                );
            }
        }
        None => outln!(
            "{:<10} not scored ({})",
            "current",
            r.current_error.as_deref().unwrap_or("unknown")
        ),
    }
    let verdict = match r.verdict {
        Verdict::Promoted => "PROMOTED",
        Verdict::PromotedWithError => "PROMOTED WITH ERROR",
        Verdict::Rejected => "REJECTED",
        Verdict::Unchanged => "UNCHANGED",
    };
    outln!("{verdict}: {}", r.reason);
    if let Some(p) = &r.promoted {
        if let Some(f) = &p.file {
            outln!(
                "{} now holds version {} (kept as {f})",
                p.path,
                r.candidate.version
            );
        }
        if let Some(reg) = &p.registered {
            outln!(
                "registered {} version {}{}",
                reg.name,
                reg.version,
                reg.alias
                    .as_deref()
                    .map(|a| format!(", alias {a} moved"))
                    .unwrap_or_default()
            );
        }
    }
}

/// `nbserve rollback`.
pub(super) fn rollback(a: RollbackArgs) -> CmdResult {
    let settings = load_settings(a.config.as_deref())?;
    let done = nbserve::retraining::rollback(
        &settings,
        a.to.as_deref(),
        Duration::from_secs(a.lock_wait_secs),
    )?;
    let pass = &done.pass;
    outln!(
        "rolled back: {} now holds {} {} (kept as {}/{}; F1 macro {:.4} ({}) >= minimum {:.4})",
        done.path.display(),
        done.model.name,
        done.model.version,
        nbserve::retraining::store::VERSIONS_DIR,
        done.file,
        pass.f1_macro,
        pass.gate_source,
        pass.threshold
    );
    Ok(())
}
