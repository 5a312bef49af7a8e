//! The arguments of `nbserve count`, `merge` and `cv-score` (training from
//! counts), apart from the rest of the command line's.

use std::path::PathBuf;

use clap::Args;

use super::args::{ColumnArgs, CsvArgs, FitArgs, GridArgs, NameArgs};

/// `nbserve count` arguments.
#[derive(Debug, Args)]
pub struct CountArgs {
    /// One counts file for them all.
    #[command(flatten)]
    pub csv: CsvArgs,
    /// Where to write the counts.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep document counts only (binary features, as `train --binary`); else
    /// occurrences too, for any model.
    #[arg(long)]
    pub binary: bool,
    /// Keep the counts per cross-validation fold (for `tune --counts`).
    #[arg(long)]
    pub folds: Option<u32>,
    /// With --folds: seeds the text hash that assigns folds (as `tune --seed`).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// With --folds: take each row's fold (0-based) from this column instead.
    #[arg(long, requires = "folds")]
    pub fold_column: Option<String>,
}

/// `nbserve merge` arguments.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Counts files (`nbserve count`, or merged ones), in any order.
    #[arg(required = true)]
    pub counts: Vec<PathBuf>,
    /// Write the merged counts here (for a tree of merges).
    #[arg(long, required_unless_present = "out")]
    pub out_counts: Option<PathBuf>,
    /// Write the model `train` would write on the counted rows here.
    #[arg(long, requires = "test_data")]
    pub out: Option<PathBuf>,
    /// Labelled CSV the model is evaluated on (as `train --test-data`).
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    #[command(flatten)]
    pub columns: ColumnArgs,
    /// The model (features are binary when the counts are, or for Bernoulli NB).
    #[command(flatten)]
    pub fit: FitArgs,
    #[command(flatten)]
    pub naming: NameArgs,
}

/// `nbserve cv-score` arguments.
#[derive(Debug, Args)]
pub struct CvScoreArgs {
    /// The total counts, kept per fold (`count --folds`, merged).
    #[arg(long)]
    pub counts: PathBuf,
    /// CSVs counted into them, in row order.
    #[command(flatten)]
    pub csv: CsvArgs,
    #[command(flatten)]
    pub grid: GridArgs,
    /// Where to write the scores.
    #[arg(long)]
    pub out: PathBuf,
}
