//! The command line's arguments (clap derive): one struct per subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use nbserve::dataset::{LABEL_COLUMN, TEXT_COLUMN};
use nbserve::retraining::merge::DEFAULT_MAX_LOG_BYTES;

pub use super::shard_args::{CountArgs, CvScoreArgs, MergeArgs};

/// Train, gate and serve a naive Bayes text classifier (Bernoulli, Complement or Multinomial).
#[derive(Debug, Parser)]
#[command(name = "nbserve", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model from a labelled CSV and write the artifact.
    Train(TrainArgs),
    /// Choose model and vectorizer parameters by cross-validation, then train.
    Tune(TuneArgs),
    /// Write the stratified train/test split `train` would use, as two CSVs.
    Split(SplitArgs),
    /// Score a model on a labelled CSV.
    Evaluate(EvaluateArgs),
    /// Predict the label of texts (argument, `--data` CSV, or one per stdin line).
    Predict(PredictArgs),
    /// Run the deployment gate: exit 0 if the model may be served, 5 if not.
    Check(CheckArgs),
    /// Serve the configured model over HTTP.
    #[command(
        after_help = "Every setting is also an NBSERVE__SECTION__KEY environment variable: --help lists them.",
        after_long_help = super::serve::settings_help()
    )]
    Serve(ServeArgs),
    /// Exit 0 when the server's /health answers 200 (for container health checks).
    Healthcheck(HealthcheckArgs),
    /// Print the resolved settings as JSON (exit 3 on an unknown or invalid key).
    Config(ConfigArgs),
    /// Point an MLflow registry alias at a version that passes the gate (exit 5 if not).
    Promote(PromoteArgs),
    /// Merge data and feedback, tune, gate against the minimum and the model in
    /// service on a fixed holdout, and promote (exit 0) or reject (exit 5).
    Retrain(RetrainArgs),
    /// Put the previous kept version back in model.path (gated; exit 5 if refused).
    Rollback(RollbackArgs),
    /// Count labelled CSVs (streamed) into a counts file: the unit of work of
    /// training past one machine.
    Count(CountArgs),
    /// Merge counts files into counts (--out-counts) or into the model `train`
    /// would write on their rows (--out, --test-data).
    Merge(MergeArgs),
    /// The held-out scoring pass of cross-validation from counts, for some CSVs
    /// counted into them (for `tune --counts --scores`).
    CvScore(CvScoreArgs),
    /// Print a reference page of the book (Markdown) from the code.
    #[command(hide = true)]
    Reference(ReferenceArgs),
}

/// `nbserve reference`: which page.
#[derive(Debug, Args)]
pub struct ReferenceArgs {
    /// The page to print.
    #[arg(value_enum)]
    pub page: ReferencePage,
}

/// The generated reference pages (docs/reference/<page>.md).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReferencePage {
    /// Every setting: key, environment variable, default, type, meaning.
    Settings,
    /// Every route of the OpenAPI document, and its schemas.
    Endpoints,
    /// Every error code: status, code, meaning.
    Errors,
    /// Every Prometheus metric: name, type, labels, help.
    Metrics,
    /// Every exit code.
    ExitCodes,
}

/// The columns of a labelled CSV.
#[derive(Debug, Args)]
pub struct ColumnArgs {
    /// Column holding the text.
    #[arg(long, default_value = TEXT_COLUMN)]
    pub text_column: String,
    /// Column holding the label.
    #[arg(long, default_value = LABEL_COLUMN)]
    pub label_column: String,
}

#[derive(Debug, Args)]
pub struct DataArgs {
    /// Labelled CSV file.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub columns: ColumnArgs,
}

/// Labelled CSVs read as one dataset.
#[derive(Debug, Args)]
pub struct CsvArgs {
    /// Labelled CSV files: several are one dataset, their rows in order (a
    /// file without rows is fine when another has some).
    #[arg(long, num_args = 1.., required = true)]
    pub data: Vec<PathBuf>,
    #[command(flatten)]
    pub columns: ColumnArgs,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub csv: CsvArgs,
    /// Where to write the artifact.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub fit: FitArgs,
    /// Binary features for multinomial/complement (Bernoulli NB is always binary).
    #[arg(long)]
    pub binary: bool,
    /// Fit a probability temperature on out-of-fold scores of the training part.
    #[arg(long)]
    pub calibrate: bool,
    /// Cross-validation folds for --calibrate.
    #[arg(long, default_value_t = 5)]
    pub folds: u32,
    /// Store the counts of every document fitted, pruned terms included,
    /// in the artifact (schema 3): what a server needs to learn and forget
    /// in place. Makes the file larger.
    #[arg(long)]
    pub statistics: bool,
    #[command(flatten)]
    pub held_out: HeldOutArgs,
    #[command(flatten)]
    pub tracking: TrackingArgs,
    /// Its gate.min_f1_macro is what the trained model is compared with (a warning when below).
    #[command(flatten)]
    pub settings: ConfigArgs,
}

/// The model and vectorizer options of one fit (`train`, `merge`).
#[derive(Debug, Args)]
pub struct FitArgs {
    /// Additive smoothing (> 0).
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// bernoulli, multinomial or complement (scikit-learn's BernoulliNB, MultinomialNB, ComplementNB).
    #[arg(long, default_value = "bernoulli")]
    pub model: String,
    /// Drop terms in fewer documents: an integer is a count, a float in (0, 1] a share.
    #[arg(long, default_value = "1")]
    pub min_df: String,
    /// Drop terms in more documents: an integer is a count, a float in (0, 1] a share.
    #[arg(long, default_value = "1.0")]
    pub max_df: String,
    /// Keep only this many most frequent terms (0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_features: u64,
}

/// The model's name and version in its artifact.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// Model name recorded in the artifact (default: the output file's stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Model version recorded in the artifact (default: creation time).
    #[arg(long)]
    pub model_version: Option<String>,
}

/// The held-out evaluation and naming options `train` and `tune` share.
#[derive(Debug, Args)]
pub struct HeldOutArgs {
    /// Held-out share for the stratified split.
    #[arg(long, default_value_t = 0.2)]
    pub test_size: f64,
    /// Split seed (also seeds cross-validation folds).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Train on all of --data and evaluate on this labelled CSV instead of a split.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    #[command(flatten)]
    pub naming: NameArgs,
}

/// MLflow tracking options of commands that fit a model.
#[derive(Debug, Args)]
pub struct TrackingArgs {
    /// MLflow tracking server (http://host:port); when set, the run is tracked.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    pub mlflow_uri: Option<String>,
    /// MLflow experiment of the run (created when missing).
    #[arg(long, env = "MLFLOW_EXPERIMENT_NAME", default_value = "nbserve")]
    pub mlflow_experiment: String,
    /// Git commit recorded on the run.
    #[arg(long, env = "GITHUB_SHA")]
    pub git_commit: Option<String>,
    /// Register a new version of this MLflow registered model from the run.
    #[arg(long, value_name = "NAME")]
    pub register: Option<String>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// MLflow tracking server (http://host:port).
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    pub mlflow_uri: String,
    /// Registered model name (default: the served model's, when its
    /// source is models:/NAME@ALIAS).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Version to point the alias at.
    #[arg(long)]
    pub version: String,
    /// Alias to move (default: the served model's models:/NAME@ALIAS alias,
    /// else champion).
    #[arg(long)]
    pub alias: Option<String>,
    /// Minimum F1 macro (default: the served model's gate minimum).
    #[arg(long)]
    pub min_f1_macro: Option<f64>,
    /// Settings file for the gate (and the served model's source).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The model of the server's repository to act on (a `*.json` of
    /// model.repository or a `[models.NAME]` table; default: the default
    /// model): its source, its own versioned store and its own gate.
    #[arg(long, value_name = "NAME")]
    pub served_model: Option<String>,
}

/// The tuning grid options `tune` and `retrain` share; every value option
/// is a comma-separated list.
#[derive(Debug, Args)]
pub struct GridArgs {
    /// Models to try: bernoulli, multinomial, complement.
    #[arg(long, value_delimiter = ',', default_value = "bernoulli")]
    pub model: Vec<String>,
    /// Binary features for multinomial/complement (Bernoulli NB is always binary).
    #[arg(long)]
    pub binary: bool,
    /// Smoothing values (> 0).
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1")]
    pub alpha: Vec<f64>,
    /// min_df values (integer = documents, float in (0, 1] = share).
    #[arg(long, value_delimiter = ',', default_value = "1,2,5")]
    pub min_df: Vec<String>,
    /// max_df values (integer = documents, float in (0, 1] = share).
    #[arg(long, value_delimiter = ',', default_value = "1.0")]
    pub max_df: Vec<String>,
    /// max_features values (0 = no limit).
    #[arg(long, value_delimiter = ',', default_value = "0,20000")]
    pub max_features: Vec<u64>,
    /// Stratified cross-validation folds.
    #[arg(long, default_value_t = 5)]
    pub folds: u32,
}

/// `nbserve tune` arguments.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Labelled CSV files (several are one dataset); with --counts, re-read
    /// only for the held-out scoring pass.
    #[arg(long, num_args = 1.., required_unless_present = "scores")]
    pub data: Vec<PathBuf>,
    #[command(flatten)]
    pub columns: ColumnArgs,
    /// Where to write the artifact of the chosen model.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub grid: GridArgs,
    /// Folds: `stratified` by class and shuffled by --seed, or `hash`: by a
    /// hash of the text seeded by --seed, as `count --folds` assigns them.
    #[arg(long, default_value = "stratified", value_parser = ["stratified", "hash"])]
    pub fold_by: String,
    /// Take each row's fold (0-based) from this column, as `count --fold-column`.
    #[arg(long, conflicts_with = "fold_by")]
    pub fold_column: Option<String>,
    /// Cross-validate from these counts (`count --folds`, merged): each fold's
    /// models are the total minus the fold's counts; --data is re-read only
    /// to score the held-out rows. Needs --test-data.
    #[arg(long, conflicts_with_all = ["fold_by", "fold_column"], requires = "test_data")]
    pub counts: Option<PathBuf>,
    /// With --counts: the held-out scores of every shard (`nbserve cv-score`),
    /// in row order, instead of scoring --data here.
    #[arg(long, num_args = 1.., requires = "counts")]
    pub scores: Vec<PathBuf>,
    #[command(flatten)]
    pub held_out: HeldOutArgs,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

/// `nbserve retrain` arguments.
#[derive(Debug, Args)]
pub struct RetrainArgs {
    /// Settings file: model.path, model.dir, model.max_bytes, model.mlflow_uri, gate.min_f1_macro.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The model of the server's repository to act on (a `*.json` of
    /// model.repository or a `[models.NAME]` table; default: the default
    /// model): its source, its own versioned store and its own gate.
    #[arg(long, value_name = "NAME")]
    pub served_model: Option<String>,
    /// Labelled base CSV (repeatable; read in order).
    #[arg(long, required_unless_present = "base_counts")]
    pub data: Vec<PathBuf>,
    /// Stored counts of the base corpus (`nbserve count`, merged): the field
    /// labels are added to them instead of re-reading the corpus, and the model
    /// in service's parameters and temperature are refitted, without a search.
    #[arg(long, conflicts_with_all = ["model", "binary", "alpha", "min_df", "max_df", "max_features", "folds"])]
    pub base_counts: Option<PathBuf>,
    /// Feedback log, JSON lines (repeatable; read after the CSVs, in order).
    #[arg(long)]
    pub feedback_log: Vec<PathBuf>,
    /// Fixed labelled holdout CSV: never trained on; both gates score on it.
    #[arg(long)]
    pub holdout: PathBuf,
    /// Column holding the text (--data and --holdout).
    #[arg(long, default_value = TEXT_COLUMN)]
    pub text_column: String,
    /// Column holding the label (--data and --holdout).
    #[arg(long, default_value = LABEL_COLUMN)]
    pub label_column: String,
    /// Also train on feedback labels that are none of the holdout's, the model in service's
    /// or --data's labels (skipped as unknown_label without it).
    #[arg(long)]
    pub allow_new_classes: bool,
    /// Bytes of feedback log read at most: the lines before the last N bytes of the logs
    /// (the oldest, logs given oldest first) are skipped as over_budget.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_LOG_BYTES)]
    pub max_log_bytes: u64,
    /// Largest holdout F1 macro drop from the model in service that still passes.
    #[arg(long, default_value_t = 0.005)]
    pub max_regression: f64,
    /// Kept versions in model.dir/versions (the one in service included; at least 2).
    #[arg(long, default_value_t = 5)]
    pub keep: usize,
    /// Minimum holdout F1 macro (default: the settings' gate.min_f1_macro).
    #[arg(long)]
    pub min_f1_macro: Option<f64>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Model name (default: the registered name of a models:/ path, else model.path's stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Model version (default: creation time, YYYY.MM.DD-HHMMSS.mmm).
    #[arg(long)]
    pub model_version: Option<String>,
    #[command(flatten)]
    pub grid: GridArgs,
    /// Cross-validation fold seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub tracking: TrackingArgs,
    /// Registry alias to move to the new version (default: the alias of a models:/NAME@ALIAS path).
    #[arg(long)]
    pub alias: Option<String>,
    /// Wait this long for another retrain or rollback to release the lock.
    #[arg(long, default_value_t = 600)]
    pub lock_wait_secs: u64,
}

/// `nbserve rollback` arguments.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Settings file: model.path, model.dir, model.max_bytes, gate.*.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The model of the server's repository to act on (a `*.json` of
    /// model.repository or a `[models.NAME]` table; default: the default
    /// model): its source, its own versioned store and its own gate.
    #[arg(long, value_name = "NAME")]
    pub served_model: Option<String>,
    /// Kept version to put back (version, file name or sequence number;
    /// default: the one in service before the current one).
    #[arg(long)]
    pub to: Option<String>,
    /// Wait this long for another retrain or rollback to release the lock.
    #[arg(long, default_value_t = 600)]
    pub lock_wait_secs: u64,
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Training part output.
    #[arg(long)]
    pub train_out: PathBuf,
    /// Test part output.
    #[arg(long)]
    pub test_out: PathBuf,
    /// Held-out share.
    #[arg(long, default_value_t = 0.2)]
    pub test_size: f64,
    /// Split seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Model artifact.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model artifact.
    #[arg(long)]
    pub model: PathBuf,
    /// Text to classify; without it, reads --data or one document per stdin line.
    pub text: Option<String>,
    /// CSV whose text column to classify (documents may span lines).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Column holding the text in --data.
    #[arg(long, default_value = TEXT_COLUMN)]
    pub text_column: String,
    /// One JSON object per document: label, probabilities, log_probabilities.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Model artifact.
    #[arg(long)]
    pub model: PathBuf,
    /// Minimum F1 macro.
    #[arg(long)]
    pub min_f1_macro: f64,
    /// Re-evaluate on this labelled CSV instead of trusting the stored evaluation.
    #[arg(long)]
    pub holdout: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Settings file (TOML or YAML); environment variables NBSERVE__* override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `nbserve serve` arguments: the settings file, and flags for the settings
/// set most often, which beat every other layer.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub settings: ConfigArgs,
    /// Address to bind (server.host).
    #[arg(long)]
    pub host: Option<String>,
    /// Port to bind, 0 = any free port (server.port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Model to serve: a file, or models:/NAME@ALIAS or models:/NAME/VERSION (model.path).
    #[arg(long, value_name = "PATH_OR_URI")]
    pub model: Option<String>,
}

impl ServeArgs {
    /// The flags given, as (setting, value) overrides.
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        let port = self.port.map(|p| p.to_string());
        [
            ("server.host", self.host.clone()),
            ("server.port", port),
            ("model.path", self.model.clone()),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect()
    }
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Health endpoint to probe.
    #[arg(long, default_value = "http://127.0.0.1:8080/health")]
    pub url: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}
