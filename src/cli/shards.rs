//! `nbserve count`, `merge` and `cv-score`: training past one machine with
//! counts files as the unit of work (`nbserve::shards`), and `tune --counts`.

use std::path::Path;

use nbserve::classifier::{CountSettings, Counts, FoldBy, FoldSpec};
use nbserve::dataset::Dataset;
use nbserve::shards::{self, ShardColumns, ShardError};
use nbserve::training::counts::{train_counts, tune_counts};
use nbserve::training::{TrainOptions, TuneOptions};
use nbserve::tuning::FoldRule;

use super::args::{ColumnArgs, CountArgs, CvScoreArgs, MergeArgs, TuneArgs};
use super::commands::{fit_options, named_run, read_csv, save_and_report};
use super::exit::Usage;
use super::tune::{grid_from, param_failure, report_search, train_failure, tune_failure};
use super::{CmdResult, Failure};

fn shard_columns(c: &ColumnArgs) -> ShardColumns {
    ShardColumns {
        text: c.text_column.clone(),
        label: c.label_column.clone(),
    }
}

/// One line about counts: documents, classes, terms.
fn describe(counts: &Counts) -> String {
    let classes: Vec<String> = counts
        .classes()
        .iter()
        .zip(counts.class_documents())
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    format!(
        "{} documents ({}), {} terms{}{}",
        counts.documents(),
        if classes.is_empty() {
            "no classes".to_owned()
        } else {
            classes.join(", ")
        },
        counts.terms().len(),
        if counts.settings().binary {
            ", binary"
        } else {
            ""
        },
        counts
            .settings()
            .folds
            .as_ref()
            .map(|f| format!(", {f}"))
            .unwrap_or_default()
    )
}

/// `nbserve count`.
pub(super) fn count(a: CountArgs) -> CmdResult {
    let folds = match a.folds {
        None => None,
        Some(k) => {
            nbserve::classifier::params::check_folds(k).map_err(|e| param_failure(&e))?;
            Some(FoldSpec {
                k,
                by: match &a.fold_column {
                    Some(column) => FoldBy::Column {
                        column: column.clone(),
                    },
                    None => FoldBy::Hash { seed: a.seed },
                },
            })
        }
    };
    let settings = CountSettings::new(a.binary, folds);
    let counts = shards::count_files(&a.csv.data, &shard_columns(&a.csv.columns), settings)?;
    let sha = shards::write_counts(&a.out, &counts)?;
    outln!(
        "counted {} into {} (sha256 {sha})",
        describe(&counts),
        a.out.display()
    );
    Ok(())
}

/// `nbserve merge`: counts into counts, and/or into the model `train`
/// writes on the same rows.
pub(super) fn merge(a: MergeArgs) -> CmdResult {
    // Checked before anything is read.
    let model = match &a.out {
        Some(out) => Some((
            fit_options(&a.fit, false)?,
            named_run(&a.naming, 0.0, 0, out)?,
        )),
        None => None,
    };
    let total = shards::merge_counts(&a.counts)?;
    noteln!("merged {} files: {}", a.counts.len(), describe(&total));
    if let Some(path) = &a.out_counts {
        let sha = shards::write_counts(path, &total)?;
        outln!("counts written to {} (sha256 {sha})", path.display());
    }
    let (Some(out), Some(((kind, vectorizer), run))) = (&a.out, model) else {
        return Ok(());
    };
    let test_path = a
        .test_data
        .as_deref()
        .expect("clap: --out requires --test-data");
    let test = read_csv(test_path, &a.columns.text_column, &a.columns.label_column)?;
    let options = TrainOptions {
        model: kind,
        vectorizer,
        calibrate_folds: None,
        alpha: a.fit.alpha,
        run,
    };
    options
        .params(false)
        .check()
        .map_err(|e| param_failure(&e))?;
    let artifact = train_counts(&total, &test, &options).map_err(train_failure)?;
    save_and_report(&artifact, out)
}

/// `nbserve cv-score`.
pub(super) fn cv_score(a: CvScoreArgs) -> CmdResult {
    let grid = grid_from(&a.grid)?;
    let points = grid.points();
    let (total, _) = shards::read_counts(&a.counts)?;
    check_folds_flag(&total, a.grid.folds, &a.counts)?;
    let scores = shards::score_files(
        &a.counts,
        &points,
        &a.csv.data,
        &shard_columns(&a.csv.columns),
    )?;
    shards::write_scores(&a.out, &scores)?;
    outln!(
        "scored {} held-out documents on {} grid points × {} folds into {}",
        scores.documents.len(),
        points.len(),
        scores.folds,
        a.out.display()
    );
    Ok(())
}

/// `--folds` must be the counts' own.
fn check_folds_flag(total: &Counts, folds: u32, path: &Path) -> Result<(), Failure> {
    match &total.settings().folds {
        Some(spec) if spec.k == folds => Ok(()),
        Some(spec) => Err(Usage(format!(
            "--folds {folds}, but {} is kept in {spec}",
            path.display()
        ))
        .into()),
        None => Err(ShardError::Cv(nbserve::tuning::CvError::Data(format!(
            "{} is not kept per fold: count with --folds to cross-validate",
            path.display()
        )))
        .into()),
    }
}

/// The fold rule of `tune` on CSVs: stratified, by text hash, or a column.
pub(super) fn csv_fold_rule(a: &TuneArgs) -> Result<FoldRule, Failure> {
    Ok(match (&a.fold_column, a.fold_by.as_str()) {
        (Some(column), _) => FoldRule::Given(shards::read_fold_column(
            &a.data,
            &shard_columns(&a.columns),
            column,
            a.grid.folds,
        )?),
        (None, "hash") => FoldRule::Hash,
        _ => FoldRule::Stratified,
    })
}

/// `tune --counts`: the search from counts and the held-out scores of the
/// rows counted into them (`--scores`, or scored here from `--data`).
pub(super) fn tune_from_counts(
    a: &TuneArgs,
    counts_path: &Path,
    mut options: TuneOptions,
) -> CmdResult {
    let (total, sha) = shards::read_counts(counts_path)?;
    check_folds_flag(&total, a.grid.folds, counts_path)?;
    options.fold_rule = match total.settings().folds.as_ref().map(|f| &f.by) {
        Some(FoldBy::Hash { seed }) if *seed != options.run.seed => {
            return Err(Usage(format!(
                "--seed {}, but {} assigns folds by text hash with seed {seed}",
                options.run.seed,
                counts_path.display()
            ))
            .into())
        }
        Some(FoldBy::Column { .. }) => FoldRule::Given(Vec::new()),
        _ => FoldRule::Hash,
    };
    let started = std::time::Instant::now();
    let scores = if a.scores.is_empty() {
        let points = options.grid.points();
        shards::score_files(counts_path, &points, &a.data, &shard_columns(&a.columns))?
    } else {
        let scores = shards::read_scores(&a.scores)?;
        if scores.counts_sha256 != sha {
            return Err(ShardError::Scores {
                path: a.scores[0].clone(),
                message: format!("scored against other counts than {}", counts_path.display()),
            }
            .into());
        }
        scores
    };
    let test_path = a
        .held_out
        .test_data
        .as_deref()
        .expect("clap: --counts requires --test-data");
    let test: Dataset = read_csv(test_path, &a.columns.text_column, &a.columns.label_column)?;
    let artifact = tune_counts(&total, &scores, &test, &options).map_err(tune_failure)?;
    report_search(&artifact, started);
    save_and_report(&artifact, &a.out)
}
