//! `nbserve retrain` and `nbserve rollback`: arguments, sequencing, exit
//! codes and printing; the rules live in `nbserve::retraining`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nbserve::artifact::Artifact;
use nbserve::dataset::Dataset;
use nbserve::fsio::{self, sha256_hex};
use nbserve::gate::GateError;
use nbserve::mlflow::{MlflowClient, ModelUri};
use nbserve::retraining::judge::{
    no_regression, AbsoluteGate, CandidateReport, CurrentReport, Gates, Parameters, Promotion,
    Registered, Report, Scores, ServingGate, Verdict,
};
use nbserve::retraining::merge::{model_classes, DataCounts, Merged, Merger, OpenLog};
use nbserve::retraining::store::{self, Keep, Store, StoreError};
use nbserve::retraining::{
    gate_like_load, read_model_file, read_registry_model, score_in_service, LoadRefusal,
    ScoreError, SourceBytes,
};
use nbserve::settings::Settings;
use nbserve::training::{tune, RunOptions, TuneOptions};

use super::args::{RetrainArgs, RollbackArgs};
use super::commands::{runtime, CmdResult};
use super::tracking::{Tracker, TrainingFacts};
use super::tune::{grid_from, tune_failure};
use super::{exit, Failure};

fn load_settings(config: Option<&Path>) -> Result<Settings, Failure> {
    Settings::load(config).map_err(|e| Failure::new(exit::SETTINGS, e))
}

fn invalid_data(e: impl std::fmt::Display) -> Failure {
    Failure::new(exit::INVALID_DATA, e)
}

fn store_failure(e: StoreError) -> Failure {
    let code = match e {
        StoreError::UnknownVersion { .. } => exit::USAGE,
        _ => exit::FAILURE,
    };
    Failure::new(code, e)
}

/// Fails (usage) unless `report` can be replaced: the report is written
/// after a promotion, too late to find out its directory is missing or
/// read-only. The probe is the replacement's own temporary file, created
/// with a unique name that must not exist yet (nothing planted there is
/// followed or truncated), then removed.
fn check_writable(report: &Path) -> Result<(), Failure> {
    fsio::Replacement::new(report).map(drop).map_err(|e| {
        Failure::new(
            exit::USAGE,
            format!("--report {}: cannot write there: {e}", report.display()),
        )
    })
}

/// Where promotion goes: `model.path` as a file, or a registry alias.
enum Target {
    File(PathBuf),
    Alias { name: String, alias: String },
}

/// Everything checked before any work starts.
struct Plan {
    settings: Settings,
    target: Target,
    min_f1_macro: f64,
    options: TuneOptions,
}

fn plan(a: &mut RetrainArgs) -> Result<Plan, Failure> {
    let grid = grid_from(&a.grid)?;
    if !(a.max_regression.is_finite() && (0.0..=1.0).contains(&a.max_regression)) {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "--max-regression {}: must be within [0, 1]",
                a.max_regression
            ),
        ));
    }
    if a.keep < 2 {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "--keep {}: at least 2 (the new model and the one it replaces)",
                a.keep
            ),
        ));
    }
    if let Some(report) = &a.report {
        check_writable(report)?;
    }
    let settings = load_settings(a.config.as_deref())?;
    let min_f1_macro = a.min_f1_macro.unwrap_or(settings.gate.min_f1_macro);
    if !(min_f1_macro.is_finite() && (0.0..=1.0).contains(&min_f1_macro)) {
        return Err(Failure::new(
            exit::USAGE,
            format!("--min-f1-macro must be within [0, 1], got {min_f1_macro}"),
        ));
    }
    let path = &settings.model.path;
    let target = match ModelUri::from_path(path) {
        None => Target::File(path.clone()),
        Some(Err(e)) => return Err(Failure::new(exit::SETTINGS, format!("model.path: {e}"))),
        Some(Ok(ModelUri::Version { .. })) => {
            return Err(Failure::new(
                exit::SETTINGS,
                format!(
                    "model.path {} pins one registry version; retrain promotes by moving an alias (models:/NAME@ALIAS)",
                    path.display()
                ),
            ))
        }
        Some(Ok(ModelUri::Alias { name, alias })) => {
            if !a.tracking.mlflow_uri.as_deref().is_some_and(|u| !u.is_empty()) {
                a.tracking.mlflow_uri = settings.model.mlflow_uri.clone();
            }
            if !a.tracking.mlflow_uri.as_deref().is_some_and(|u| !u.is_empty()) {
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "model.path {} is a registry alias: retrain registers the new version there, which needs --mlflow-uri, MLFLOW_TRACKING_URI or model.mlflow_uri",
                        path.display()
                    ),
                ));
            }
            Target::Alias {
                name: a.tracking.register.clone().unwrap_or(name),
                alias: a.alias.clone().unwrap_or(alias),
            }
        }
    };
    if a.alias.is_some() && a.tracking.register.is_none() && matches!(target, Target::File(_)) {
        return Err(Failure::new(
            exit::USAGE,
            "--alias needs --register NAME (or a models:/NAME@ALIAS model.path)",
        ));
    }
    let created_at = super::commands::creation_time()?;
    let name = a.name.clone().unwrap_or_else(|| match &target {
        Target::Alias { name, .. } => name.clone(),
        Target::File(p) => p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_owned(),
    });
    let version = a
        .model_version
        .clone()
        .unwrap_or_else(|| created_at.format("%Y.%m.%d-%H%M%S%.3f").to_string());
    let options = TuneOptions {
        grid,
        folds: a.grid.folds,
        run: RunOptions {
            test_size: 0.0,
            seed: a.seed,
            name,
            version: Some(version),
            created_at,
        },
    };
    Ok(Plan {
        settings,
        target,
        min_f1_macro,
        options,
    })
}

/// `nbserve retrain`: with a tracking URI, inside an MLflow run (FAILED
/// when rejected or when anything fails).
pub(super) fn retrain(mut a: RetrainArgs) -> CmdResult {
    let plan = plan(&mut a)?;
    let run_name = format!(
        "{}-{}",
        plan.options.run.name,
        plan.options.run.version.as_deref().unwrap_or("retrain")
    );
    let tracker = Tracker::start(&a.tracking, &run_name, "nbserve retrain")?;
    let outcome = retrain_tracked(&a, &plan, tracker.as_ref());
    if let Some(t) = tracker {
        t.finish(&outcome);
    }
    outcome
}

fn read_inputs(a: &RetrainArgs, plan: &Plan) -> Result<(Merged, Dataset), Failure> {
    let read = |p: &Path| -> Result<Dataset, Failure> {
        Dataset::from_csv(p, &a.text_column, &a.label_column).map_err(invalid_data)
    };
    let name = |p: &Path| p.display().to_string();
    let holdout = read(&a.holdout)?;
    let logs = a
        .feedback_log
        .iter()
        .map(|p| OpenLog::open(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid_data)?;
    let current = read_current(plan)
        .ok()
        .and_then(|src| model_classes(&src.bytes));
    let mut merger = Merger::new(
        &holdout,
        &name(&a.holdout),
        current.as_deref(),
        a.allow_new_classes,
    )
    .map_err(invalid_data)?;
    for p in &a.data {
        merger.add_base(read(p)?, &name(p)).map_err(invalid_data)?;
    }
    merger
        .add_logs(logs, a.max_log_bytes)
        .map_err(invalid_data)?;
    let merged = merger.finish().map_err(invalid_data)?;
    print_data_counts(&merged.counts, current.is_some());
    Ok((merged, holdout))
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

/// The model in service: its bytes (when a valid artifact) and its scores,
/// or why it could not be scored.
struct Current {
    report: Option<CurrentReport>,
    error: Option<String>,
    kept: Option<(Vec<u8>, String, String)>,
    /// It is a valid artifact that scores every text as the candidate does.
    identical: bool,
}

fn current_model(plan: &Plan, holdout: &Dataset, candidate: &Artifact) -> Current {
    let path = &plan.settings.model.path;
    let read = read_current(plan);
    let failed = |e: String, kept, identical| Current {
        report: None,
        error: Some(format!("{}: {e}", path.display())),
        kept,
        identical,
    };
    let src = match read {
        Ok(src) => src,
        Err(e) => return failed(e, None, false),
    };
    let model = match Artifact::load_bytes(&src.bytes) {
        Ok(model) => model,
        Err(e) => return failed(e.to_string(), None, false),
    };
    // `load_bytes` validated these bytes, so they parse as an artifact.
    let identical = serde_json::from_slice::<Artifact>(&src.bytes)
        .is_ok_and(|current| candidate.predicts_like(&current));
    let id = &model.meta.model;
    // A valid model in service is kept for rollback even when it cannot be
    // scored on this holdout (e.g. it lacks one of its labels): promoting
    // must never destroy the only copy of a loadable model.
    let kept = Some((src.bytes.clone(), id.name.clone(), id.version.clone()));
    match score_in_service(&model, holdout) {
        Err(e) => failed(ScoreError::Holdout(e).to_string(), kept, identical),
        Ok((evaluation, missing_labels)) => Current {
            report: Some(CurrentReport {
                source: path.display().to_string(),
                name: id.name.clone(),
                version: id.version.clone(),
                registry_version: src.registry_version.as_ref().map(|v| v.version.clone()),
                missing_labels,
                holdout: Scores::from(&evaluation),
            }),
            error: None,
            kept,
            identical,
        },
    }
}

/// The bytes of the model in service, from `model.path` or the registry.
fn read_current(plan: &Plan) -> Result<SourceBytes, String> {
    let path = &plan.settings.model.path;
    match ModelUri::from_path(path) {
        None => read_model_file(path, plan.settings.model.max_bytes).map_err(|e| e.to_string()),
        Some(uri) => registry_read(plan, uri),
    }
}

fn registry_read(
    plan: &Plan,
    uri: Result<ModelUri, nbserve::mlflow::MlflowError>,
) -> Result<SourceBytes, String> {
    let uri = uri.map_err(|e| e.to_string())?;
    let server = plan
        .settings
        .model
        .mlflow_uri
        .clone()
        .or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok())
        .filter(|u| !u.is_empty());
    let client = server
        .map(|u| MlflowClient::new(&u))
        .transpose()
        .map_err(|e| e.to_string())?;
    let rt = runtime().map_err(|f| f.message)?;
    rt.block_on(read_registry_model(
        &uri,
        client.as_ref(),
        plan.settings.model.max_bytes,
    ))
    .map_err(|e| e.to_string())
}

fn retrain_tracked(a: &RetrainArgs, plan: &Plan, tracker: Option<&Tracker>) -> CmdResult {
    let started = std::time::Instant::now();
    let (merged, holdout) = read_inputs(a, plan)?;
    let points = plan.options.grid.points().len();
    noteln!(
        "cross-validating {points} grid points on {} folds, then scoring on the holdout",
        plan.options.folds
    );
    let mut artifact = tune(
        &merged.train,
        Some(&holdout),
        &plan.options,
        |_, _| {},
        &|_, _| {},
    )
    .map_err(|e| tune_failure(e, exit::INVALID_DATA))?;
    if let Some(t) = tracker {
        artifact.mlflow_run_id = Some(t.run_id().to_owned());
        artifact.seal();
        let facts = TrainingFacts {
            command: "nbserve retrain",
            dataset_bytes: a
                .data
                .iter()
                .chain(&a.feedback_log)
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .sum(),
            training_seconds: started.elapsed().as_secs_f64(),
        };
        t.log_model(&artifact, &facts)?;
    }
    let bytes = artifact.file_bytes();
    let candidate = Artifact::load_bytes(&bytes)
        .map_err(|e| Failure::new(exit::FAILURE, format!("the new model does not load: {e}")))?;
    let absolute = AbsoluteGate::from_gate(nbserve::gate::gate(
        &candidate,
        plan.min_f1_macro,
        Some(&holdout),
    ))
    .map_err(|e| match e {
        GateError::InvalidThreshold(_) => Failure::new(exit::USAGE, e),
        e => invalid_data(e),
    })?;
    // The comparison and the promotion happen under one lock, so the model
    // compared against is the model replaced, even with retrains racing.
    let model_dir = &plan.settings.model.dir;
    let _lock = match &plan.target {
        Target::Alias { .. } if !model_dir.is_dir() => None,
        _ => Some(
            store::lock(model_dir, Duration::from_secs(a.lock_wait_secs)).map_err(store_failure)?,
        ),
    };
    let current = current_model(plan, &holdout, &artifact);
    let gates = Gates {
        no_regression: no_regression(
            absolute.f1_macro,
            current.report.as_ref().map(|c| c.holdout.f1_macro),
            a.max_regression,
        ),
        absolute,
        serving: serving_gate(plan, &bytes),
    };
    let tuning = artifact.tuning.as_ref().expect("tune stores its search");
    let best = &tuning.results[tuning.best];
    let candidate_report = CandidateReport {
        name: artifact.model.name.clone(),
        version: artifact.model.version.clone(),
        sha256: sha256_hex(&bytes),
        holdout: Scores::from(artifact.evaluation.as_ref().expect("tune evaluates")),
    };
    // An identical candidate is not promoted: a nightly retrain without new
    // labels would otherwise make every server reload the same model and
    // fill the kept versions with copies. A failed gate still rejects it,
    // so a model in service that no longer passes is reported as such.
    let unchanged = gates.passed() && current.identical;
    let promoted = if gates.passed() && !unchanged {
        Some(promote(a, plan, &artifact, &bytes, &current, tracker)?)
    } else {
        None
    };
    let (verdict, reason) = if promoted.is_some() {
        let with_error = promoted.as_ref().and_then(|p| p.error.as_deref());
        match with_error {
            None => (Verdict::Promoted, gates.reason()),
            Some(e) => (
                Verdict::PromotedWithError,
                format!("{}; promoted, but: {e}", gates.reason()),
            ),
        }
    } else if unchanged {
        (
            Verdict::Unchanged,
            format!(
                "the candidate predicts exactly as the model in service{} (same vocabulary, counts and parameters); nothing to promote ({})",
                current
                    .kept
                    .as_ref()
                    .map(|(_, _, v)| format!(" {v}"))
                    .unwrap_or_default(),
                gates.reason()
            ),
        )
    } else {
        (Verdict::Rejected, gates.reason())
    };
    let report = Report {
        verdict,
        reason,
        data: merged.counts.clone(),
        parameters: Parameters {
            chosen: best.params,
            folds: tuning.folds,
            seed: tuning.seed,
            grid_points: tuning.results.len(),
            cv_f1_macro: best.f1_macro.mean,
        },
        candidate: candidate_report,
        current: current.report,
        current_error: current.error,
        gates,
        promoted,
        mlflow_run_id: tracker.map(|t| t.run_id().to_owned()),
    };
    if let Some(path) = &a.report {
        let mut json = serde_json::to_vec_pretty(&report).expect("serialisable");
        json.push(b'\n');
        fsio::write_atomic(path, &json).map_err(|e| {
            let done = match report.verdict {
                Verdict::Promoted | Verdict::PromotedWithError => "the candidate WAS promoted",
                Verdict::Rejected => "the candidate was rejected, nothing changed",
                Verdict::Unchanged => {
                    "the candidate is identical to the model in service, nothing changed"
                }
            };
            Failure::new(
                exit::FAILURE,
                format!("{done}, but the report could not be written: {e}"),
            )
        })?;
    }
    print_report(&report);
    // Last, and not fatal: the promotion (or the rejection) has already
    // happened, so a tracking server failing now must not turn the outcome
    // a scheduler sees into "failed" with no report.
    if let Some(t) = tracker {
        if let Err(f) = log_report(t, &report) {
            noteln!(
                "nbserve: warning: the outcome could not be logged to the MLflow run: {}",
                f.message
            );
        }
    }
    match report.verdict {
        Verdict::Promoted | Verdict::Unchanged => Ok(()),
        Verdict::PromotedWithError => Err(Failure::new(
            exit::PROMOTED_WITH_ERROR,
            format!(
                "the candidate IS in service at {}, but {}",
                plan.settings.model.path.display(),
                report
                    .promoted
                    .as_ref()
                    .and_then(|p| p.error.as_deref())
                    .unwrap_or("the store could not be completed")
            ),
        )),
        Verdict::Rejected => Err(Failure::new(
            exit::GATE_REJECTED,
            format!("not promoted, nothing changed: {}", report.reason),
        )),
    }
}

/// What a server with these settings would say when loading `bytes` from
/// `model.path`: the same size limit and the same gate.
fn serving_gate(plan: &Plan, bytes: &[u8]) -> ServingGate {
    let max = plan.settings.model.max_bytes;
    if bytes.len() as u64 > max {
        return ServingGate::refused(format!(
            "the artifact is {} bytes, over model.max_bytes {max}",
            bytes.len()
        ));
    }
    match gate_like_load(bytes, &plan.settings.gate) {
        Ok(_) => ServingGate::passed(),
        Err(e) => ServingGate::refused(e.to_string()),
    }
}

fn promote(
    a: &RetrainArgs,
    plan: &Plan,
    artifact: &Artifact,
    bytes: &[u8],
    current: &Current,
    tracker: Option<&Tracker>,
) -> Result<Promotion, Failure> {
    let replaced_version = current.kept.as_ref().map(|(_, _, v)| v.clone());
    // The registry first: when it fails, no file has changed.
    let registered = match (&plan.target, &a.tracking.register, tracker) {
        (Target::Alias { name, alias }, _, Some(t)) => Some(register(t, name, Some(alias))?),
        (Target::File(_), Some(name), Some(t)) => Some(register(t, name, a.alias.as_deref())?),
        _ => None,
    };
    match &plan.target {
        Target::Alias { .. } => Ok(Promotion {
            target: "registry",
            path: plan.settings.model.path.display().to_string(),
            file: None,
            replaced_version,
            removed: Vec::new(),
            adopted: Vec::new(),
            error: None,
            registered,
        }),
        Target::File(path) => {
            let store = Store::new(&plan.settings.model.dir, plan.settings.model.max_bytes);
            let candidate = Keep {
                bytes,
                name: &artifact.model.name,
                version: &artifact.model.version,
            };
            let replaced = current.kept.as_ref().map(|(b, n, v)| Keep {
                bytes: b,
                name: n,
                version: v,
            });
            let done = store
                .promote(path, &candidate, replaced.as_ref(), a.keep)
                .map_err(|e| {
                    let mut f = store_failure(e);
                    f.message =
                        format!("not promoted, {} unchanged: {}", path.display(), f.message);
                    f
                })?;
            if !done.adopted.is_empty() {
                noteln!(
                    "nbserve: kept files missing from the version history (left by an interrupted run) were taken back into it: {}",
                    done.adopted.join(", ")
                );
            }
            Ok(Promotion {
                target: "file",
                path: path.display().to_string(),
                file: Some(done.file),
                replaced_version,
                removed: done.removed,
                adopted: done.adopted,
                error: done.error,
                registered,
            })
        }
    }
}

fn register(t: &Tracker, name: &str, alias: Option<&str>) -> Result<Registered, Failure> {
    let mv = t.register(name)?;
    if let Some(alias) = alias {
        t.set_alias(name, alias, &mv.version)?;
    }
    Ok(Registered {
        name: mv.name,
        version: mv.version,
        alias: alias.map(str::to_owned),
    })
}

fn log_report(t: &Tracker, r: &Report) -> Result<(), Failure> {
    let mut metrics = vec![
        (
            "holdout.candidate.f1_macro".to_owned(),
            r.candidate.holdout.f1_macro,
        ),
        (
            "data.training_documents".to_owned(),
            r.data.training_documents as f64,
        ),
        (
            "data.holdout_overlap".to_owned(),
            r.data.holdout_overlap as f64,
        ),
        (
            "data.feedback_examples".to_owned(),
            r.data.feedback_examples as f64,
        ),
        ("data.malformed".to_owned(), r.data.malformed as f64),
        (
            "data.unknown_label".to_owned(),
            r.data.skipped.unknown_label as f64,
        ),
        (
            "data.over_budget".to_owned(),
            r.data.skipped.over_budget as f64,
        ),
    ];
    if let Some(c) = &r.current {
        metrics.push(("holdout.current.f1_macro".to_owned(), c.holdout.f1_macro));
    }
    if let Some(d) = r.gates.no_regression.delta {
        metrics.push(("gate.no_regression.delta".to_owned(), d));
    }
    let verdict = match r.verdict {
        Verdict::Promoted => "promoted",
        Verdict::PromotedWithError => "promoted_with_error",
        Verdict::Rejected => "rejected",
        Verdict::Unchanged => "unchanged",
    };
    let tags = vec![
        ("nbserve.retrain.verdict".to_owned(), verdict.to_owned()),
        (
            "nbserve.retrain.reason".to_owned(),
            r.reason.chars().take(5000).collect(),
        ),
    ];
    t.log_outcome(&metrics, &tags)
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
    let path = &settings.model.path;
    if ModelUri::from_path(path).is_some() {
        return Err(Failure::new(
            exit::SETTINGS,
            format!(
                "model.path {} is a registry URI: the registry keeps its versions; move the alias back with `nbserve promote`",
                path.display()
            ),
        ));
    }
    let _lock = store::lock(&settings.model.dir, Duration::from_secs(a.lock_wait_secs))
        .map_err(store_failure)?;
    let store = Store::new(&settings.model.dir, settings.model.max_bytes);
    let serving = read_model_file(path, settings.model.max_bytes)
        .ok()
        .map(|s| sha256_hex(&s.bytes));
    let plan = store
        .plan_rollback(serving.as_deref(), a.to.as_deref())
        .map_err(store_failure)?;
    let bytes = store.read_kept(&plan.target).map_err(|e| {
        Failure::new(
            exit::INVALID_MODEL,
            format!("not rolled back, nothing changed: {e}"),
        )
    })?;
    // The history's sha256 is what was kept: a file changed since (by hand,
    // by a bad disk) is not the version the operator asked for.
    let sha = sha256_hex(&bytes);
    if sha != plan.target.sha256 {
        return Err(Failure::new(
            exit::INVALID_MODEL,
            format!(
                "not rolled back, nothing changed: {} has changed since it was kept as version {} (sha256 {}, history says {})",
                plan.path.display(),
                plan.target.version,
                sha,
                plan.target.sha256
            ),
        ));
    }
    let (model, pass) = gate_like_load(&bytes, &settings.gate).map_err(|e| {
        let code = match &e {
            LoadRefusal::Gate(GateError::Rejected { .. }) => exit::GATE_REJECTED,
            LoadRefusal::Gate(GateError::InvalidThreshold(_)) => exit::SETTINGS,
            _ => exit::INVALID_MODEL,
        };
        Failure::new(
            code,
            format!(
                "not rolled back, nothing changed: {}: {e}",
                plan.path.display()
            ),
        )
    })?;
    let entry = store
        .apply_rollback(plan, path, &bytes)
        .map_err(store_failure)?;
    outln!(
        "rolled back: {} now holds {} {} (kept as {}/{}; F1 macro {:.4} ({}) >= minimum {:.4})",
        path.display(),
        model.meta.model.name,
        model.meta.model.version,
        store::VERSIONS_DIR,
        entry.file,
        pass.f1_macro,
        pass.gate_source,
        pass.threshold
    );
    Ok(())
}
