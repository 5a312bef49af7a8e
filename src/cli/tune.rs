//! `nbserve tune`: cross-validated choice of model and vectorizer parameters.

use std::io::IsTerminal;

use nbserve::artifact::Artifact;
use nbserve::classifier::params::check_folds;
use nbserve::classifier::{Grid, ModelKind, Param, ParamError, TrainParams};
use nbserve::training::{tune as run_tune, TrainError, TrainingFacts, TuneError, TuneOptions};
use nbserve::tuning::FoldRule;

use super::args::{GridArgs, TuneArgs};
use super::commands::{
    parse_df, parse_model, read_train_data, run_name, run_options, track_and_save,
};
use super::tracking::Tracker;
use super::{CmdResult, Failure};

/// Runs the search and writes the chosen, calibrated model; with a tracking
/// URI, inside an MLflow run that ends FAILED when anything after its start fails.
pub(super) fn tune(a: TuneArgs) -> CmdResult {
    let grid = grid_from(&a.grid)?;
    let options = TuneOptions {
        grid,
        folds: a.grid.folds,
        fold_rule: FoldRule::Stratified,
        run: run_options(&a.held_out, &a.out)?,
    };
    if let Some(counts) = &a.counts {
        return super::shards::tune_from_counts(&a, counts, options);
    }
    let tracker = Tracker::start(&a.tracking, &run_name(&options.run), "nbserve tune")?;
    let outcome = tune_tracked(&a, &options, tracker.as_ref());
    if let Some(t) = tracker {
        t.finish(&outcome);
    }
    outcome
}

/// The grid and fold options, checked (exit 2 naming a bad value).
pub(super) fn grid_from(a: &GridArgs) -> Result<Grid, Failure> {
    let grid = Grid {
        models: a
            .model
            .iter()
            .map(|m| parse_model(m))
            .collect::<Result<_, _>>()?,
        binary: a.binary,
        alphas: a.alpha.clone(),
        min_dfs: a
            .min_df
            .iter()
            .map(|v| parse_df("--min-df", v))
            .collect::<Result<_, _>>()?,
        max_dfs: a
            .max_df
            .iter()
            .map(|v| parse_df("--max-df", v))
            .collect::<Result<_, _>>()?,
        max_features: a.max_features.clone(),
    };
    for point in grid.points() {
        TrainParams::from(&point)
            .check()
            .map_err(|e| param_failure(&e))?;
    }
    check_folds(a.folds).map_err(|e| param_failure(&e))?;
    Ok(grid)
}

/// The command-line flag that sets `param` (the calibration temperature
/// has none: it is fitted, and only an artifact can hold a bad one).
fn flag(param: Param) -> &'static str {
    match param {
        Param::Alpha => "--alpha",
        Param::MinDf => "--min-df",
        Param::MaxDf => "--max-df",
        Param::MaxFeatures => "--max-features",
        Param::TestSize => "--test-size",
        Param::Folds => "--folds",
        Param::Temperature => "temperature",
    }
}

/// A parameter error as the command line reports it, naming the flag
/// (`--alpha 1e-12: must be ...`).
pub(super) fn param_failure(e: &ParamError) -> Failure {
    let message = format!("{} {}: {}", flag(e.param), e.value, e.problem);
    Failure::from(e.clone()).worded(message)
}

/// A failed fit, its parameter errors naming flags.
pub(super) fn train_failure(e: TrainError) -> Failure {
    match e {
        TrainError::Param(e) => param_failure(&e),
        e => e.into(),
    }
}

/// A failed search, its parameter errors naming flags.
pub(super) fn tune_failure(e: TuneError) -> Failure {
    match e {
        TuneError::Usage(e) | TuneError::Train(TrainError::Param(e)) => param_failure(&e),
        e => e.into(),
    }
}

fn tune_tracked(a: &TuneArgs, options: &TuneOptions, tracker: Option<&Tracker>) -> CmdResult {
    let mut options = options.clone();
    options.fold_rule = super::shards::csv_fold_rule(a)?;
    let (data, test) = read_train_data(&a.data, &a.columns, &a.held_out)?;
    let points = options.grid.points().len();
    noteln!(
        "cross-validating {points} grid points on {} folds ({} fits)",
        a.grid.folds,
        points * a.grid.folds as usize
    );
    let terminal = std::io::stderr().is_terminal();
    let progress = |done: usize, total: usize| {
        if terminal {
            note!("\r  fitted {done}/{total}");
            if done == total {
                noteln!();
            }
        }
    };
    let started = std::time::Instant::now();
    let artifact =
        run_tune(&data, test.as_ref(), &options, |_, _| {}, &progress).map_err(tune_failure)?;
    report_search(&artifact, started);
    let facts =
        TrainingFacts::measured("nbserve tune", a.data.iter().map(|p| p.as_path()), started);
    track_and_save(artifact, &a.out, tracker, &facts, &a.tracking)
}

/// Prints the search's table and choice.
pub(super) fn report_search(artifact: &Artifact, started: std::time::Instant) {
    let report = artifact.tuning.as_ref().expect("tune stores its search");
    outln!(
        "{}-fold cross-validation, mean ± std over folds ({:.1} s):",
        report.folds,
        started.elapsed().as_secs_f64()
    );
    out!("{}", report.to_table());
    let p = report.results[report.best].params;
    outln!(
        "chosen: --model {} {}--alpha {} --min-df {} --max-df {} --max-features {}",
        p.model,
        if p.binary && p.model != ModelKind::Bernoulli {
            "--binary "
        } else {
            ""
        },
        p.alpha,
        p.min_df,
        p.max_df,
        p.max_features
    );
}
