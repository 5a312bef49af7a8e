//! The model commands: `train`, `split`, `evaluate`, `predict`, `check`,
//! and what `train` and `tune` share.

use std::io::{BufRead, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use nbserve::artifact::{Artifact, ArtifactError, LoadedModel};
use nbserve::classifier::{
    stratified_split, Classifier, DfBound, ModelKind, TrainParams, VectorizerOptions,
};
use nbserve::dataset::{self, Dataset};
use nbserve::gate::{load_gated, ServingRule};
use nbserve::retraining::{read_model_file, SourceError};
use nbserve::settings::{GateSettings, Settings};
use nbserve::training::{evaluate_on, RunOptions, Tracking, TrainOptions, TrainingFacts};

use super::args::{
    CheckArgs, ColumnArgs, DataArgs, EvaluateArgs, FitArgs, HeldOutArgs, NameArgs, PredictArgs,
    SplitArgs, TrackingArgs, TrainArgs,
};
use super::exit::Usage;
use super::output;
use super::tracking::Tracker;
use super::tune::param_failure;
use super::{CmdResult, Failure};

fn read_data(args: &DataArgs) -> Result<Dataset, Failure> {
    read_csv(
        &args.data,
        &args.columns.text_column,
        &args.columns.label_column,
    )
}

pub(super) fn read_csv(path: &Path, text: &str, label: &str) -> Result<Dataset, Failure> {
    Ok(Dataset::from_csv(path, text, label)?)
}

fn load_model(path: &Path) -> Result<LoadedModel, Failure> {
    Artifact::load(path).map_err(|e| invalid_model(path.display(), e))
}

/// An unusable artifact, named by `what` unless the error names its file.
fn invalid_model(what: impl std::fmt::Display, e: ArtifactError) -> Failure {
    match e {
        // Already names the file.
        ArtifactError::Io { .. } => e.into(),
        _ => Failure::from(e).about(what),
    }
}

/// `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.
pub(super) fn creation_time() -> Result<DateTime<Utc>, Failure> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .parse::<i64>()
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .ok_or_else(|| Usage("SOURCE_DATE_EPOCH must be Unix seconds".into()).into()),
        Err(_) => Ok(Utc::now()),
    }
}

/// Reads `--data` and `--test-data` and says what will be trained on.
pub(super) fn read_train_data(
    data: &[std::path::PathBuf],
    columns: &ColumnArgs,
    held_out: &HeldOutArgs,
) -> Result<(Dataset, Option<Dataset>), Failure> {
    let train = Dataset::from_csvs(data, &columns.text_column, &columns.label_column)?;
    let test = held_out
        .test_data
        .as_deref()
        .map(|p| read_csv(p, &columns.text_column, &columns.label_column))
        .transpose()?;
    let files: Vec<String> = data.iter().map(|p| p.display().to_string()).collect();
    noteln!(
        "training on {} documents from {}{}",
        train.len(),
        files.join(", "),
        test.as_ref()
            .map(|t| format!(", evaluating on {} documents", t.len()))
            .unwrap_or_default()
    );
    Ok((train, test))
}

/// The split and naming options; the name defaults to the output file's stem.
pub(super) fn run_options(a: &HeldOutArgs, out: &Path) -> Result<RunOptions, Failure> {
    named_run(&a.naming, a.test_size, a.seed, out)
}

/// A run named by `naming` (the name defaulting to `out`'s stem), created
/// now or at `SOURCE_DATE_EPOCH`.
pub(super) fn named_run(
    naming: &NameArgs,
    test_size: f64,
    seed: u64,
    out: &Path,
) -> Result<RunOptions, Failure> {
    let stem = out.file_stem().and_then(|s| s.to_str());
    Ok(RunOptions {
        test_size,
        seed,
        name: naming
            .name
            .clone()
            .unwrap_or_else(|| stem.unwrap_or("model").to_owned()),
        version: naming.model_version.clone(),
        created_at: creation_time()?,
    })
}

/// The model and vectorizer options of one fit; features are binary when
/// `binary` or for Bernoulli NB.
pub(super) fn fit_options(
    a: &FitArgs,
    binary: bool,
) -> Result<(ModelKind, VectorizerOptions), Failure> {
    let model = parse_model(&a.model)?;
    Ok((
        model,
        VectorizerOptions {
            min_df: parse_df("--min-df", &a.min_df)?,
            max_df: parse_df("--max-df", &a.max_df)?,
            max_features: a.max_features,
            binary: binary || model == ModelKind::Bernoulli,
        },
    ))
}

/// Parses a `--min-df` / `--max-df` value (a usage error naming it).
pub(super) fn parse_df(flag: &str, value: &str) -> Result<DfBound, Failure> {
    DfBound::parse(value).map_err(|e| Usage(format!("{flag} {value}: {e}")).into())
}

/// Parses a `--model` value (a usage error naming it).
pub(super) fn parse_model(value: &str) -> Result<ModelKind, Failure> {
    ModelKind::parse(value).map_err(|e| Usage(format!("--model: {e}")).into())
}

/// `nbserve train`: with a tracking URI, inside an MLflow run that ends
/// FAILED when anything after its start fails.
pub fn train(a: TrainArgs) -> CmdResult {
    // Read first, so a bad setting fails before minutes of training.
    let min_f1_macro = super::serve::load_settings(a.settings.config.as_deref())?
        .gate
        .min_f1_macro;
    let (model, vectorizer) = fit_options(&a.fit, a.binary)?;
    let options = TrainOptions {
        model,
        vectorizer,
        calibrate_folds: a.calibrate.then_some(a.folds),
        alpha: a.fit.alpha,
        run: run_options(&a.held_out, &a.out)?,
    };
    // Checked before anything is read: the ranges an artifact is served with.
    options
        .params(a.held_out.test_data.is_none())
        .check()
        .map_err(|e| param_failure(&e))?;
    let tracker = Tracker::start(&a.tracking, &run_name(&options.run), "nbserve train")?;
    let (outcome, f1_macro) = match train_tracked(&a, &options, tracker.as_ref()) {
        Ok(f1_macro) => (Ok(()), f1_macro),
        Err(f) => (Err(f), f64::NAN),
    };
    if let Some(t) = tracker {
        t.finish(&outcome);
    }
    outcome?;
    if f1_macro < min_f1_macro {
        noteln!(
            "nbserve: warning: F1 macro {f1_macro:.4} is below the gate minimum {min_f1_macro:.4} \
             (gate.min_f1_macro): serve, check and promote will refuse this model; \
             `nbserve tune` chooses alpha and min_df by cross-validation"
        );
    }
    Ok(())
}

/// The MLflow run name: the model's name and version.
pub(super) fn run_name(run: &RunOptions) -> String {
    format!("{}-{}", run.name, run.version.as_deref().unwrap_or("train"))
}

/// Trains, tracks and saves; returns the model's held-out F1 macro.
fn train_tracked(
    a: &TrainArgs,
    options: &TrainOptions,
    tracker: Option<&Tracker>,
) -> Result<f64, Failure> {
    let (data, test) = read_train_data(&a.csv.data, &a.csv.columns, &a.held_out)?;
    let show_progress = data.len() >= 5000;
    let started = std::time::Instant::now();
    let (artifact, counts) =
        nbserve::training::train_counted(&data, test.as_ref(), options, |done, total| {
            if show_progress {
                noteln!("  tokenized {done}/{total} documents");
            }
        })
        .map_err(super::tune::train_failure)?;
    let artifact = if a.statistics {
        artifact.with_statistics(&counts)
    } else {
        artifact
    };
    let facts = TrainingFacts::measured(
        "nbserve train",
        a.csv.data.iter().map(|p| p.as_path()),
        started,
    );
    let f1_macro = artifact
        .evaluation
        .as_ref()
        .expect("training evaluates")
        .f1_macro;
    track_and_save(artifact, &a.out, tracker, &facts, &a.tracking)?;
    Ok(f1_macro)
}

/// Logs the artifact to the run (and registers it) when tracked, then saves
/// it. Everything that can fail remotely happens before the file is written,
/// so a failed command leaves no new artifact behind.
pub(super) fn track_and_save(
    mut artifact: Artifact,
    out: &Path,
    tracker: Option<&Tracker>,
    facts: &TrainingFacts,
    tracking: &TrackingArgs,
) -> CmdResult {
    if let Some(t) = tracker {
        artifact.mlflow_run_id = Some(t.run_id().to_owned());
        artifact.seal();
        t.log_model(&artifact, facts)?;
        if let Some(name) = &tracking.register {
            let mv = t.register(name)?;
            noteln!("registered model {} version {}", mv.name, mv.version);
        }
    }
    save_and_report(&artifact, out)?;
    if let Some(t) = tracker {
        outln!("MLflow run {}", t.run_id());
    }
    Ok(())
}

/// Saves the artifact and prints what was written and its evaluation.
pub(super) fn save_and_report(artifact: &Artifact, out: &Path) -> CmdResult {
    artifact.save(out)?;
    let evaluation = artifact.evaluation.as_ref().expect("training evaluates");
    outln!(
        "model {} {} ({} {}, {} terms, {} classes) written to {}",
        artifact.model.name,
        artifact.model.version,
        artifact.training.model_kind(),
        if artifact.training.vectorizer.binary {
            "binary"
        } else {
            "counts"
        },
        artifact.vocabulary.len(),
        artifact.classes.len(),
        out.display()
    );
    if let Some(c) = &artifact.calibration {
        outln!(
            "calibration: temperature {:.4} ({}-fold out-of-fold log loss {:.4} -> {:.4})",
            c.temperature,
            c.folds,
            c.log_loss_before,
            c.log_loss_after
        );
    }
    outln!(
        "evaluated on {} ({} documents):",
        artifact.training.evaluated_on,
        evaluation.documents
    );
    out!("{}", evaluation.to_table());
    Ok(())
}

/// `nbserve split`: the test share checked as `train` checks it.
pub fn split(a: SplitArgs) -> CmdResult {
    TrainParams {
        test_size: Some(a.test_size),
        ..TrainParams::default()
    }
    .check()
    .map_err(|e| param_failure(&e))?;
    let data = read_data(&a.data)?;
    let classes = data.classes();
    let labels = data.label_indices(&classes).expect("own labels");
    let split = stratified_split(&labels, &classes, a.test_size, a.seed)?;
    data.subset(&split.train).write_csv(&a.train_out)?;
    data.subset(&split.test).write_csv(&a.test_out)?;
    outln!(
        "{} training and {} test documents written",
        split.train.len(),
        split.test.len()
    );
    Ok(())
}

/// `nbserve evaluate`.
pub fn evaluate(a: EvaluateArgs) -> CmdResult {
    let model = load_model(&a.model)?;
    let data = read_data(&a.data)?;
    let e = evaluate_on(&model.classifier, &data)?;
    if a.json {
        outln!("{}", serde_json::to_string(&e).expect("serialisable"));
    } else {
        out!("{}", e.to_table());
    }
    Ok(())
}

/// Writes one line per classified text: a table row or a JSON object.
struct Printer<'a, W> {
    classifier: &'a Classifier,
    json: bool,
    out: W,
}

impl<W: Write> Printer<'_, W> {
    fn print(&mut self, text: &str) -> std::io::Result<()> {
        let p = self.classifier.predict(text);
        let classes = self.classifier.classes();
        let label = &classes[p.label];
        if !self.json {
            return writeln!(self.out, "{label}\t{:.4}", p.confidence());
        }
        let by_class = |values: &[f64]| -> serde_json::Map<String, serde_json::Value> {
            classes
                .iter()
                .zip(values)
                .map(|(c, &v)| (c.clone(), v.into()))
                .collect()
        };
        let line = serde_json::json!({
            "label": label,
            "probabilities": by_class(&p.probabilities()),
            "log_probabilities": by_class(&p.log_probabilities),
        });
        writeln!(self.out, "{line}")
    }
}

/// `nbserve predict`: the argument, else the `--data` CSV, else stdin lines.
/// Its output is its product: a reader that goes away ends it (quietly,
/// exit 0; see `output`).
pub fn predict(a: PredictArgs) -> CmdResult {
    let model = load_model(&a.model)?;
    let stdout = std::io::stdout();
    let mut printer = Printer {
        classifier: &model.classifier,
        json: a.json,
        out: std::io::BufWriter::new(stdout.lock()),
    };
    let written = output::write_failure;
    if let Some(text) = &a.text {
        printer.print(text).map_err(written)?;
    } else if let Some(path) = &a.data {
        for text in dataset::stream_column(path, &a.text_column)? {
            printer.print(&text?).map_err(written)?;
        }
    } else {
        for line in std::io::stdin().lock().lines() {
            printer.print(&line?).map_err(written)?;
        }
    }
    printer.out.flush().map_err(written)
}

/// `nbserve check`: the deployment gate, as CI calls it — the servers' one
/// rule, with the limits of a server with default settings
/// (`model.max_bytes`, `gate.max_memory_bytes`).
pub fn check(a: CheckArgs) -> CmdResult {
    let defaults = Settings::default();
    let bytes = read_model_file(&a.model, defaults.model.max_bytes)
        .map_err(|e| match e {
            SourceError::Artifact(e) => invalid_model(a.model.display(), e),
            e => e.into(),
        })?
        .bytes;
    let rule = ServingRule {
        gate: GateSettings {
            min_f1_macro: a.min_f1_macro,
            holdout_path: a.holdout.clone(),
            ..defaults.gate
        },
        max_bytes: defaults.model.max_bytes,
    };
    let servable =
        load_gated(bytes, &rule).map_err(|e| Failure::from(e).about(a.model.display()))?;
    let (model, pass) = (&servable.model.meta.model, &servable.pass);
    outln!(
        "gate passed: model {} {} F1 macro {:.4} ({}) >= minimum {:.4}",
        model.name,
        model.version,
        pass.f1_macro,
        pass.gate_source,
        pass.threshold
    );
    Ok(())
}
