//! Command-line interface: parses arguments and hands over to the library.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::artifact::Artifact;
use crate::dataset::Dataset;
use crate::settings::Settings;
use crate::training::{evaluate_on, train, TrainOptions};

/// Process exit codes (documented in the README).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure (I/O, runtime).
    pub const FAILURE: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// Invalid settings.
    pub const SETTINGS: u8 = 3;
    /// Invalid model artifact or data file.
    pub const INVALID_MODEL: u8 = 4;
    /// The deployment gate rejected the model.
    pub const GATE_REJECTED: u8 = 5;
    /// `healthcheck` found the server unhealthy.
    pub const UNHEALTHY: u8 = 6;
}

/// Train, gate and serve a Bernoulli naive Bayes text classifier.
#[derive(Debug, Parser)]
#[command(name = "nbserve", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model from a labelled CSV and write the artifact.
    Train(TrainArgs),
    /// Write the stratified train/test split `train` would use, as two CSVs.
    Split(SplitArgs),
    /// Score a model on a labelled CSV.
    Evaluate(EvaluateArgs),
    /// Predict the label of texts (argument, `--data` CSV, or one per stdin line).
    Predict(PredictArgs),
    /// Run the deployment gate: exit 0 if the model may be served, 5 if not.
    Check(CheckArgs),
    /// Serve the configured model over HTTP.
    Serve(ConfigArgs),
    /// Exit 0 when the server's /health answers 200 (for container health checks).
    Healthcheck(HealthcheckArgs),
    /// Print the resolved settings as JSON (exit 3 on an unknown or invalid key).
    Config(ConfigArgs),
}

#[derive(Debug, Args)]
struct DataArgs {
    /// Labelled CSV file.
    #[arg(long)]
    data: PathBuf,
    /// Column holding the text.
    #[arg(long, default_value = "text")]
    text_column: String,
    /// Column holding the label.
    #[arg(long, default_value = "label")]
    label_column: String,
}

#[derive(Debug, Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Where to write the artifact.
    #[arg(long)]
    out: PathBuf,
    /// Additive smoothing (> 0).
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Held-out share for the stratified split.
    #[arg(long, default_value_t = 0.2)]
    test_size: f64,
    /// Split seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train on all of --data and evaluate on this labelled CSV instead of a split.
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Model name recorded in the artifact (default: the output file's stem).
    #[arg(long)]
    name: Option<String>,
    /// Model version recorded in the artifact (default: creation time).
    #[arg(long)]
    model_version: Option<String>,
}

#[derive(Debug, Args)]
struct SplitArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Training part output.
    #[arg(long)]
    train_out: PathBuf,
    /// Test part output.
    #[arg(long)]
    test_out: PathBuf,
    /// Held-out share.
    #[arg(long, default_value_t = 0.2)]
    test_size: f64,
    /// Split seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Debug, Args)]
struct EvaluateArgs {
    /// Model artifact.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PredictArgs {
    /// Model artifact.
    #[arg(long)]
    model: PathBuf,
    /// Text to classify; without it, reads --data or one document per stdin line.
    text: Option<String>,
    /// CSV whose text column to classify (documents may span lines).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Column holding the text in --data.
    #[arg(long, default_value = "text")]
    text_column: String,
    /// One JSON object per document: label, probabilities, log_probabilities.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Model artifact.
    #[arg(long)]
    model: PathBuf,
    /// Minimum F1 macro.
    #[arg(long)]
    min_f1_macro: f64,
    /// Re-evaluate on this labelled CSV instead of trusting the stored evaluation.
    #[arg(long)]
    holdout: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Settings file (TOML or YAML); environment variables NBSERVE__* override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct HealthcheckArgs {
    /// Health endpoint to probe.
    #[arg(long, default_value = "http://127.0.0.1:8080/health")]
    url: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
    /// Already reported through the log: `main` prints nothing more.
    logged: bool,
}

impl Failure {
    fn new(code: u8, message: impl std::fmt::Display) -> Self {
        Self {
            code,
            message: message.to_string(),
            logged: false,
        }
    }
}

type CmdResult = Result<(), Failure>;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => cmd_train(a),
        Command::Split(a) => cmd_split(a),
        Command::Evaluate(a) => cmd_evaluate(a),
        Command::Predict(a) => cmd_predict(a),
        Command::Check(a) => cmd_check(a),
        Command::Serve(a) => cmd_serve(a),
        Command::Healthcheck(a) => cmd_healthcheck(a),
        Command::Config(a) => cmd_config(a),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            if !f.logged {
                eprintln!("nbserve: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

fn read_data(args: &DataArgs) -> Result<Dataset, Failure> {
    read_csv(&args.data, &args.text_column, &args.label_column)
}

fn read_csv(path: &Path, text: &str, label: &str) -> Result<Dataset, Failure> {
    Dataset::from_csv(path, text, label).map_err(|e| Failure::new(exit::INVALID_MODEL, e))
}

fn load_model(path: &Path) -> Result<crate::LoadedModel, Failure> {
    Artifact::load(path).map_err(|e| match e {
        // Already names the file.
        crate::artifact::ArtifactError::Io { .. } => Failure::new(exit::INVALID_MODEL, e),
        _ => Failure::new(exit::INVALID_MODEL, format!("{}: {e}", path.display())),
    })
}

fn cmd_train(a: TrainArgs) -> CmdResult {
    let data = read_data(&a.data)?;
    let test = a
        .test_data
        .as_deref()
        .map(|p| read_csv(p, &a.data.text_column, &a.data.label_column))
        .transpose()?;
    eprintln!(
        "training on {} documents from {}{}",
        data.len(),
        a.data.data.display(),
        test.as_ref()
            .map(|t| format!(", evaluating on {} documents", t.len()))
            .unwrap_or_default()
    );
    let created_at = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .parse::<i64>()
            .ok()
            .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
            .ok_or_else(|| Failure::new(exit::USAGE, "SOURCE_DATE_EPOCH must be Unix seconds"))?,
        Err(_) => chrono::Utc::now(),
    };
    let options = TrainOptions {
        alpha: a.alpha,
        test_size: a.test_size,
        seed: a.seed,
        name: a.name.clone().unwrap_or_else(|| {
            a.out
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("model")
                .to_owned()
        }),
        version: a.model_version.clone(),
        created_at,
    };
    let show_progress = data.len() >= 5000;
    let artifact = train(&data, test.as_ref(), &options, |done, total| {
        if show_progress {
            eprintln!("  tokenized {done}/{total} documents");
        }
    })
    .map_err(|e| Failure::new(exit::INVALID_MODEL, e))?;
    artifact
        .save(&a.out)
        .map_err(|e| Failure::new(exit::FAILURE, e))?;
    let evaluation = artifact.evaluation.as_ref().expect("training evaluates");
    println!(
        "model {} {} ({} terms, {} classes) written to {}",
        artifact.model.name,
        artifact.model.version,
        artifact.vocabulary.len(),
        artifact.classes.len(),
        a.out.display()
    );
    println!(
        "evaluated on {} ({} documents):",
        artifact.training.evaluated_on, evaluation.documents
    );
    print!("{}", evaluation.to_table());
    Ok(())
}

fn cmd_split(a: SplitArgs) -> CmdResult {
    let data = read_data(&a.data)?;
    let classes = data.classes();
    let labels = data.label_indices(&classes).expect("own labels");
    let split = crate::classifier::stratified_split(&labels, &classes, a.test_size, a.seed)
        .map_err(|e| Failure::new(exit::INVALID_MODEL, e))?;
    let io = |e| Failure::new(exit::FAILURE, e);
    data.subset(&split.train)
        .write_csv(&a.train_out)
        .map_err(io)?;
    data.subset(&split.test)
        .write_csv(&a.test_out)
        .map_err(io)?;
    println!(
        "{} training and {} test documents written",
        split.train.len(),
        split.test.len()
    );
    Ok(())
}

fn cmd_evaluate(a: EvaluateArgs) -> CmdResult {
    let model = load_model(&a.model)?;
    let data = read_data(&a.data)?;
    let e =
        evaluate_on(&model.classifier, &data).map_err(|e| Failure::new(exit::INVALID_MODEL, e))?;
    if a.json {
        println!("{}", serde_json::to_string(&e).expect("serialisable"));
    } else {
        print!("{}", e.to_table());
    }
    Ok(())
}

fn cmd_predict(a: PredictArgs) -> CmdResult {
    let model = load_model(&a.model)?;
    let classifier = &model.classifier;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut emit = |text: &str| -> std::io::Result<()> {
        let p = classifier.predict(text);
        let label = &classifier.classes()[p.label];
        if a.json {
            let classes = classifier.classes();
            let probs: serde_json::Map<String, serde_json::Value> = classes
                .iter()
                .zip(p.probabilities())
                .map(|(c, v)| (c.clone(), v.into()))
                .collect();
            let logs: serde_json::Map<String, serde_json::Value> = classes
                .iter()
                .zip(&p.log_probabilities)
                .map(|(c, &v)| (c.clone(), v.into()))
                .collect();
            let line = serde_json::json!({
                "label": label,
                "probabilities": probs,
                "log_probabilities": logs,
            });
            writeln!(out, "{line}")
        } else {
            writeln!(out, "{label}\t{:.4}", p.confidence())
        }
    };
    let io = |e: std::io::Error| Failure::new(exit::FAILURE, e);
    if let Some(text) = &a.text {
        emit(text).map_err(io)?;
    } else if let Some(path) = &a.data {
        let mut reader =
            csv::Reader::from_path(path).map_err(|e| Failure::new(exit::INVALID_MODEL, e))?;
        let headers = reader
            .headers()
            .map_err(|e| Failure::new(exit::INVALID_MODEL, e))?
            .clone();
        let idx = headers
            .iter()
            .position(|h| h == a.text_column)
            .ok_or_else(|| {
                Failure::new(
                    exit::INVALID_MODEL,
                    format!("{}: no column {:?}", path.display(), a.text_column),
                )
            })?;
        for record in reader.records() {
            let record = record.map_err(|e| Failure::new(exit::INVALID_MODEL, e))?;
            emit(&record[idx]).map_err(io)?;
        }
    } else {
        for line in std::io::stdin().lock().lines() {
            emit(&line.map_err(io)?).map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

fn cmd_check(a: CheckArgs) -> CmdResult {
    let model = load_model(&a.model)?;
    let holdout = a
        .holdout
        .as_deref()
        .map(|p| read_csv(p, "text", "label"))
        .transpose()?;
    match crate::gate::gate(&model, a.min_f1_macro, holdout.as_ref()) {
        Ok(pass) => {
            println!(
                "gate passed: model {} {} F1 macro {:.4} ({}) >= minimum {:.4}",
                model.meta.model.name,
                model.meta.model.version,
                pass.f1_macro,
                pass.basis,
                pass.threshold
            );
            Ok(())
        }
        Err(crate::gate::GateError::InvalidThreshold(t)) => Err(Failure::new(
            exit::USAGE,
            format!("--min-f1-macro must be within [0, 1], got {t}"),
        )),
        Err(e @ crate::gate::GateError::Holdout(_)) => Err(Failure::new(exit::INVALID_MODEL, e)),
        Err(e) => Err(Failure::new(
            exit::GATE_REJECTED,
            format!("gate rejected: {e}"),
        )),
    }
}

fn load_settings(a: &ConfigArgs) -> Result<Settings, Failure> {
    Settings::load(a.config.as_deref()).map_err(|e| Failure::new(exit::SETTINGS, e))
}

fn cmd_config(a: ConfigArgs) -> CmdResult {
    let mut s = load_settings(&a)?;
    if s.admin.token.is_some() {
        s.admin.token = Some("<redacted>".into());
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&s).expect("serialisable")
    );
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::FAILURE, e))
}

fn cmd_serve(a: ConfigArgs) -> CmdResult {
    let settings = load_settings(&a)?;
    crate::telemetry::init(&settings.log);
    runtime()?.block_on(async {
        let app = crate::server::Application::build_with_signals(settings)
            .await
            .map_err(|e| {
                // The log is where a service's operators look; one report is
                // enough, unless the log is switched off.
                tracing::error!(error = %e, "start-up failed");
                Failure {
                    logged: tracing::enabled!(tracing::Level::ERROR),
                    ..Failure::new(e.exit_code(), e)
                }
            })?;
        app.run_until_stopped()
            .await
            .map_err(|e| Failure::new(exit::FAILURE, e))
    })
}

fn cmd_healthcheck(a: HealthcheckArgs) -> CmdResult {
    runtime()?.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(a.timeout_ms))
            .build()
            .map_err(|e| Failure::new(exit::FAILURE, e))?;
        match client.get(&a.url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
            Ok(r) => Err(Failure::new(
                exit::UNHEALTHY,
                format!("{} answered {}", a.url, r.status()),
            )),
            Err(e) => Err(Failure::new(exit::UNHEALTHY, format!("{}: {e}", a.url))),
        }
    })
}
