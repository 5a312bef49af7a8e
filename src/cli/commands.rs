//! One function per subcommand; each error leaves with its exit code.

use std::io::{BufRead, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use nbserve::artifact::{Artifact, ArtifactError, LoadedModel};
use nbserve::classifier::{stratified_split, Classifier, DfBound, ModelKind, VectorizerOptions};
use nbserve::dataset::{self, Dataset, DatasetError};
use nbserve::gate::GateError;
use nbserve::retraining::{gate_like_load, read_model_file, LoadRefusal, SourceError};
use nbserve::server::{Application, HeldSignals, LoadError, Signals, StartupError};
use nbserve::settings::{GateSettings, Settings};
use nbserve::training::{evaluate_on, RunOptions, TrainError, TrainOptions};

use super::args::{
    CheckArgs, ConfigArgs, DataArgs, EvaluateArgs, HealthcheckArgs, HeldOutArgs, PredictArgs,
    PromoteArgs, SplitArgs, TrackingArgs, TrainArgs,
};
use super::exit;
use super::output;
use super::tracking::{Tracker, TrainingFacts};
use super::tune::param_failure;
use super::Failure;

pub(super) type CmdResult = Result<(), Failure>;

fn read_data(args: &DataArgs) -> Result<Dataset, Failure> {
    read_csv(&args.data, &args.text_column, &args.label_column)
}

fn read_csv(path: &Path, text: &str, label: &str) -> Result<Dataset, Failure> {
    Dataset::from_csv(path, text, label).map_err(invalid_data)
}

fn invalid_data(e: DatasetError) -> Failure {
    Failure::new(exit::INVALID_DATA, e)
}

fn load_model(path: &Path) -> Result<LoadedModel, Failure> {
    Artifact::load(path).map_err(|e| invalid_model(path.display(), e))
}

/// An unusable artifact (exit 4), named by `what` unless the error names
/// its file.
fn invalid_model(what: impl std::fmt::Display, e: ArtifactError) -> Failure {
    match e {
        // Already names the file.
        ArtifactError::Io { .. } => Failure::new(exit::INVALID_MODEL, e),
        _ => Failure::new(exit::INVALID_MODEL, format!("{what}: {e}")),
    }
}

/// Why a model may not be served, as an exit code and a message: the gate
/// said no (5), its threshold is not a number in [0, 1] (`threshold_code`),
/// the holdout cannot be read or scored (4), the artifact is invalid or too
/// large (4).
fn refusal(e: LoadRefusal, what: impl std::fmt::Display, threshold_code: u8) -> Failure {
    match e {
        LoadRefusal::Artifact(e) => invalid_model(what, e),
        LoadRefusal::Holdout(e) => invalid_data(e),
        LoadRefusal::Gate(GateError::InvalidThreshold(t)) => Failure::new(
            threshold_code,
            format!("--min-f1-macro must be within [0, 1], got {t}"),
        ),
        LoadRefusal::Gate(e @ GateError::Holdout(_)) => Failure::new(exit::INVALID_DATA, e),
        LoadRefusal::Gate(e) => Failure::new(exit::GATE_REJECTED, format!("gate rejected: {e}")),
    }
}

fn io_failure(e: std::io::Error) -> Failure {
    Failure::new(exit::FAILURE, e)
}

/// `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.
pub(super) fn creation_time() -> Result<DateTime<Utc>, Failure> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .parse::<i64>()
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .ok_or_else(|| Failure::new(exit::USAGE, "SOURCE_DATE_EPOCH must be Unix seconds")),
        Err(_) => Ok(Utc::now()),
    }
}

/// Reads `--data` and `--test-data` and says what will be trained on.
pub(super) fn read_train_data(
    data: &DataArgs,
    held_out: &HeldOutArgs,
) -> Result<(Dataset, Option<Dataset>), Failure> {
    let train = read_data(data)?;
    let test = held_out
        .test_data
        .as_deref()
        .map(|p| read_csv(p, &data.text_column, &data.label_column))
        .transpose()?;
    noteln!(
        "training on {} documents from {}{}",
        train.len(),
        data.data.display(),
        test.as_ref()
            .map(|t| format!(", evaluating on {} documents", t.len()))
            .unwrap_or_default()
    );
    Ok((train, test))
}

/// The split and naming options; the name defaults to the output file's stem.
pub(super) fn run_options(a: &HeldOutArgs, out: &Path) -> Result<RunOptions, Failure> {
    let stem = out.file_stem().and_then(|s| s.to_str());
    Ok(RunOptions {
        test_size: a.test_size,
        seed: a.seed,
        name: a
            .name
            .clone()
            .unwrap_or_else(|| stem.unwrap_or("model").to_owned()),
        version: a.model_version.clone(),
        created_at: creation_time()?,
    })
}

/// Parses a `--min-df` / `--max-df` value (exit 2 naming it when invalid).
pub(super) fn parse_df(flag: &str, value: &str) -> Result<DfBound, Failure> {
    DfBound::parse(value).map_err(|e| Failure::new(exit::USAGE, format!("{flag} {value}: {e}")))
}

/// Parses a `--model` value (exit 2 naming it when unknown).
pub(super) fn parse_model(value: &str) -> Result<ModelKind, Failure> {
    ModelKind::parse(value).map_err(|e| Failure::new(exit::USAGE, format!("--model: {e}")))
}

/// `nbserve train`: with a tracking URI, inside an MLflow run that ends
/// FAILED when anything after its start fails.
pub fn train(a: TrainArgs) -> CmdResult {
    // Read first, so a bad setting fails before minutes of training.
    let min_f1_macro = load_settings(&a.settings)?.gate.min_f1_macro;
    let model = parse_model(&a.model)?;
    let vectorizer = VectorizerOptions {
        min_df: parse_df("--min-df", &a.min_df)?,
        max_df: parse_df("--max-df", &a.max_df)?,
        max_features: a.max_features,
        binary: a.binary || model == ModelKind::Bernoulli,
    };
    let options = TrainOptions {
        model,
        vectorizer,
        calibrate_folds: a.calibrate.then_some(a.folds),
        alpha: a.alpha,
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
    let (data, test) = read_train_data(&a.data, &a.held_out)?;
    let show_progress = data.len() >= 5000;
    let started = std::time::Instant::now();
    let artifact = nbserve::training::train(&data, test.as_ref(), options, |done, total| {
        if show_progress {
            noteln!("  tokenized {done}/{total} documents");
        }
    })
    .map_err(|e| match e {
        TrainError::Param(e) => param_failure(&e),
        e => Failure::new(exit::INVALID_DATA, e),
    })?;
    let facts = TrainingFacts::measured("nbserve train", &a.data.data, started);
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
    artifact
        .save(out)
        .map_err(|e| Failure::new(exit::FAILURE, e))?;
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

/// `nbserve split`.
pub fn split(a: SplitArgs) -> CmdResult {
    let data = read_data(&a.data)?;
    let classes = data.classes();
    let labels = data.label_indices(&classes).expect("own labels");
    let split = stratified_split(&labels, &classes, a.test_size, a.seed)
        .map_err(|e| Failure::new(exit::INVALID_DATA, e))?;
    let write = |part: &[usize], path: &Path| {
        data.subset(part)
            .write_csv(path)
            .map_err(|e| Failure::new(exit::FAILURE, e))
    };
    write(&split.train, &a.train_out)?;
    write(&split.test, &a.test_out)?;
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
    let e =
        evaluate_on(&model.classifier, &data).map_err(|e| Failure::new(exit::INVALID_DATA, e))?;
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
        for text in dataset::stream_column(path, &a.text_column).map_err(invalid_data)? {
            printer
                .print(&text.map_err(invalid_data)?)
                .map_err(written)?;
        }
    } else {
        for line in std::io::stdin().lock().lines() {
            printer.print(&line.map_err(io_failure)?).map_err(written)?;
        }
    }
    printer.out.flush().map_err(written)
}

/// `nbserve check`: the deployment gate, as CI calls it, with the limits
/// of a server with default settings (`model.max_bytes`,
/// `gate.max_memory_bytes`).
pub fn check(a: CheckArgs) -> CmdResult {
    let defaults = Settings::default();
    let bytes = read_model_file(&a.model, defaults.model.max_bytes)
        .map_err(|e| match e {
            SourceError::Artifact(e) => invalid_model(a.model.display(), e),
            e => Failure::new(exit::INVALID_MODEL, e),
        })?
        .bytes;
    let gate = GateSettings {
        min_f1_macro: a.min_f1_macro,
        holdout_path: a.holdout.clone(),
        ..defaults.gate
    };
    let (model, pass) =
        gate_like_load(&bytes, &gate).map_err(|e| refusal(e, a.model.display(), exit::USAGE))?;
    outln!(
        "gate passed: model {} {} F1 macro {:.4} ({}) >= minimum {:.4}",
        model.meta.model.name,
        model.meta.model.version,
        pass.f1_macro,
        pass.gate_source,
        pass.threshold
    );
    Ok(())
}

fn load_settings(a: &ConfigArgs) -> Result<Settings, Failure> {
    Settings::load(a.config.as_deref()).map_err(|e| Failure::new(exit::SETTINGS, e))
}

/// `nbserve config`: the resolved settings, the admin and feedback tokens
/// redacted, and the user-info of every URL (`model.mlflow_uri` and any
/// other) too: a user name is often a token.
pub fn config(a: ConfigArgs) -> CmdResult {
    let mut s = load_settings(&a)?;
    for warning in s.warnings() {
        noteln!("nbserve: warning: {warning}");
    }
    for token in [&mut s.admin.token, &mut s.feedback.token] {
        if token.is_some() {
            *token = Some("<redacted>".into());
        }
    }
    let mut printed = serde_json::to_value(&s).expect("serialisable");
    redact_urls(&mut printed);
    outln!(
        "{}",
        serde_json::to_string_pretty(&printed).expect("serialisable")
    );
    Ok(())
}

/// Every string in `v` that is a URL with user-info, redacted.
fn redact_urls(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => *s = nbserve::mlflow::redact_url(s),
        Value::Array(items) => items.iter_mut().for_each(redact_urls),
        Value::Object(fields) => fields.values_mut().for_each(redact_urls),
        _ => {}
    }
}

/// A multi-threaded runtime for the commands that talk HTTP.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io_failure)
}

/// `nbserve serve`.
pub fn serve(a: ConfigArgs) -> CmdResult {
    // First thing, the signal handlers: SIGHUP (log rotation, `systemctl
    // reload`) or SIGTERM may come at any moment, also while the model
    // loads. Until the handlers exist the signals are held pending, not
    // left to their default action.
    let held = HeldSignals::hold().map_err(io_failure)?;
    let rt = runtime()?;
    let signals = {
        let _runtime = rt.enter();
        Signals::install().map_err(io_failure)?
    };
    drop(held);
    let settings = load_settings(&a)?;
    nbserve::telemetry::init(&settings.log);
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    let mut abandoned = false;
    let result = rt.block_on(async {
        let app = match Application::build_with_signals(settings, signals).await {
            Ok(app) => app,
            // A stop before serving is still a stop: exit 0.
            Err(StartupError::Stopped { .. }) => {
                abandoned = true;
                return Ok(());
            }
            Err(e) => {
                // The log is where a service's operators look; one report is
                // enough, unless the log is switched off.
                tracing::error!(error = %e, "start-up failed");
                return Err(Failure {
                    logged: tracing::enabled!(tracing::Level::ERROR),
                    ..Failure::new(startup_exit_code(&e), e)
                });
            }
        };
        app.run_until_stopped().await.map_err(io_failure)
    });
    // Dropping the runtime would wait for every blocking task; a reload
    // still reading a slow file must not keep a stopped server alive, nor
    // may a model load the stop abandoned.
    if abandoned {
        rt.shutdown_background();
    } else {
        rt.shutdown_timeout(std::time::Duration::from_secs(5));
    }
    result
}

/// The documented exit code for a server that did not start.
fn startup_exit_code(e: &StartupError) -> u8 {
    match e {
        StartupError::Model {
            source: LoadError::Gate(GateError::Rejected { .. }),
            ..
        } => exit::GATE_REJECTED,
        StartupError::Model {
            source: LoadError::Holdout(_),
            ..
        } => exit::INVALID_DATA,
        StartupError::Model { .. } => exit::INVALID_MODEL,
        StartupError::FeedbackLog(_) => exit::SETTINGS,
        StartupError::Bind { .. } => exit::FAILURE,
        StartupError::Stopped { .. } => exit::OK,
    }
}

/// `nbserve healthcheck`.
pub fn healthcheck(a: HealthcheckArgs) -> CmdResult {
    runtime()?.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(a.timeout_ms))
            .build()
            .map_err(|e| Failure::new(exit::FAILURE, e))?;
        // Printed without its user-info, and reqwest's errors without the URL.
        let url = nbserve::mlflow::redact_url(&a.url);
        match client.get(&a.url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
            Ok(r) => Err(Failure::new(
                exit::UNHEALTHY,
                format!("{url} answered {}", r.status()),
            )),
            Err(e) => Err(Failure::new(
                exit::UNHEALTHY,
                format!("{url}: {}", e.without_url()),
            )),
        }
    })
}

/// `nbserve promote`: moves a registry alias to a version, only when that
/// version's artifact is one a server with these settings would serve
/// (`--config`: `model.max_bytes` and every `gate.*` limit).
pub fn promote(a: PromoteArgs) -> CmdResult {
    let settings = load_settings(&ConfigArgs {
        config: a.config.clone(),
    })?;
    let gate = GateSettings {
        min_f1_macro: a.min_f1_macro.unwrap_or(settings.gate.min_f1_macro),
        ..settings.gate.clone()
    };
    let client = nbserve::mlflow::MlflowClient::new(&a.mlflow_uri)
        .map_err(|e| Failure::new(exit::USAGE, e))?;
    let mlflow = |e: nbserve::mlflow::MlflowError| Failure::new(exit::FAILURE, e);
    let rt = runtime()?;
    let (mv, bytes) = rt
        .block_on(async {
            let mv = client.get_model_version(&a.model_name, &a.version).await?;
            let bytes = client
                .download_model_file(&mv, settings.model.max_bytes)
                .await?;
            Ok((mv, bytes))
        })
        .map_err(mlflow)?;
    let (_, pass) = gate_like_load(&bytes, &gate).map_err(|e| match e {
        LoadRefusal::Gate(GateError::Rejected { .. }) => Failure::new(
            exit::GATE_REJECTED,
            format!("not promoted: {} version {}: {e}", a.model_name, a.version),
        ),
        e => refusal(
            e,
            format!("{} version {}", mv.name, mv.version),
            exit::USAGE,
        ),
    })?;
    rt.block_on(client.set_alias(&a.model_name, &a.alias, &a.version))
        .map_err(mlflow)?;
    outln!(
        "{}@{} -> version {} (F1 macro {:.4} >= minimum {:.4})",
        a.model_name,
        a.alias,
        a.version,
        pass.f1_macro,
        pass.threshold
    );
    Ok(())
}
