//! `tune`: cross-validated search over a grid, then the chosen point
//! trained like [`super::train`].

use super::*;

/// Options for [`tune`].
#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// The grid.
    pub grid: Grid,
    /// Folds.
    pub folds: u32,
    /// How documents are assigned to folds; a [`FoldRule::Given`] lists
    /// the fold of every row of the data (before any split).
    pub fold_rule: FoldRule,
    /// Split, naming and creation time.
    pub run: RunOptions,
}

/// Why `tune` failed.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// A parameter value out of its range (a usage error).
    #[error(transparent)]
    Usage(ParamError),
    /// The grid has no point.
    #[error("the grid is empty")]
    EmptyGrid,
    /// Data or model problem, including a value this data cannot support.
    #[error(transparent)]
    Train(#[from] TrainError),
}

impl From<ParamError> for TuneError {
    fn from(e: ParamError) -> Self {
        if e.by_data {
            TuneError::Train(e.into())
        } else {
            TuneError::Usage(e)
        }
    }
}

impl From<CvError> for TuneError {
    fn from(e: CvError) -> Self {
        match e {
            CvError::Param(p) => p.into(),
            e => TuneError::Train(e.into()),
        }
    }
}

/// Splits like `train`, cross-validates the grid on the training part,
/// refits the winner on the whole training part with a temperature fitted on
/// its out-of-fold scores, and evaluates it on the held-out part.
pub fn tune(
    data: &Dataset,
    test: Option<&Dataset>,
    options: &TuneOptions,
    tokenize_progress: impl FnMut(usize, usize),
    cv_progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Artifact, TuneError> {
    let points = options.grid.points();
    if points.is_empty() {
        return Err(TuneError::EmptyGrid);
    }
    TrainParams {
        test_size: test.is_none().then_some(options.run.test_size),
        folds: Some(options.folds),
        ..TrainParams::default()
    }
    .check()?;
    let classes = data.classes();
    servable_names(&classes, &options.run)?;
    let seed = options.run.seed;
    let parts = parts(data, test, &classes, options.run.test_size, seed)?;
    let rule = match (&options.fold_rule, &parts.train_rows) {
        (FoldRule::Given(all), Some(rows)) => {
            FoldRule::Given(rows.iter().map(|&r| all[r]).collect())
        }
        (rule, _) => rule.clone(),
    };
    let cv = CrossValidation::with_folds(&parts.train, &classes, seed, rule, tokenize_progress);
    let (results, oof) = cv.run(&points, options.folds, cv_progress)?;
    let best = best(&results);
    let point = results[best].params;
    let fitted = Fitted::chosen(
        options,
        results,
        best,
        cv.refit(&point)?,
        cv.calibration_from(&oof[best], options.folds),
    );
    Ok(seal_artifact(
        Provenance::of(data, test, &parts),
        classes,
        fitted,
    )?)
}
