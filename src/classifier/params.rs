//! Training parameters and their ranges, each defined once.
//!
//! `train`, `tune`, `retrain` and artifact validation all check the same
//! [`TrainParams`], so a value a command accepts is a value a served model
//! may hold: a model that trains can always be served. Errors name the
//! parameter (`alpha`), never a command-line flag; the command line maps
//! one to the other.

use std::fmt;
use std::ops::RangeInclusive;

use super::{DfBound, GridPoint, VectorizerOptions};

/// Smoothing: below it the scoring tables lose all precision (a log of
/// nearly nothing), above it they overflow or smooth every class to its
/// prior.
pub const ALPHA_RANGE: RangeInclusive<f64> = 1e-10..=1e10;
/// Calibration temperature (probabilities are `softmax(jll / T)`): far
/// below 1 the division overflows and probabilities become NaN; far above it
/// every answer is uniform. The fitted temperature is searched in this range.
pub const TEMPERATURE_RANGE: RangeInclusive<f64> = 1e-2..=1e6;
/// Most terms `max_features` may keep: the vocabulary addresses its terms
/// with 32-bit indices (0 means no limit).
pub const MAX_FEATURES: u64 = u32::MAX as u64;
/// Cross-validation folds: at least two; the upper end is the data's (each
/// fold must keep every class), checked where the data is known.
pub const MIN_FOLDS: u32 = 2;

/// A parameter, as the library names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// Additive smoothing.
    Alpha,
    /// `min_df`.
    MinDf,
    /// `max_df`.
    MaxDf,
    /// `max_features`.
    MaxFeatures,
    /// Held-out share of the stratified split.
    TestSize,
    /// Cross-validation folds.
    Folds,
    /// Calibration temperature.
    Temperature,
}

impl Param {
    /// The parameter's name (`min_df`), as in the artifact and scikit-learn.
    pub fn name(self) -> &'static str {
        match self {
            Param::Alpha => "alpha",
            Param::MinDf => "min_df",
            Param::MaxDf => "max_df",
            Param::MaxFeatures => "max_features",
            Param::TestSize => "test_size",
            Param::Folds => "folds",
            Param::Temperature => "temperature",
        }
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parameter value that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{param} {value}: {problem}")]
pub struct ParamError {
    /// Which parameter.
    pub param: Param,
    /// The value given, as written in messages.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
    /// The value is within its range, but this data cannot support it (more
    /// folds than a class has documents): a data problem, not a usage one.
    pub by_data: bool,
}

impl ParamError {
    /// `value` of `param` is out of its range (`problem` says which).
    pub fn new(param: Param, value: impl fmt::Display, problem: impl Into<String>) -> Self {
        Self {
            param,
            value: value.to_string(),
            problem: problem.into(),
            by_data: false,
        }
    }

    /// `value` of `param` is in range but this data cannot support it.
    pub fn by_data(param: Param, value: impl fmt::Display, problem: impl Into<String>) -> Self {
        Self {
            by_data: true,
            ..Self::new(param, value, problem)
        }
    }
}

/// Every ranged parameter of a fit; `None` where the fit has none (no
/// split, no calibration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainParams {
    /// Smoothing.
    pub alpha: f64,
    /// `min_df`, `max_df`, `max_features`.
    pub vectorizer: VectorizerOptions,
    /// Held-out share, when a random split is used.
    pub test_size: Option<f64>,
    /// Cross-validation folds, when the fit cross-validates.
    pub folds: Option<u32>,
    /// Calibration temperature, when one was fitted.
    pub temperature: Option<f64>,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            vectorizer: VectorizerOptions::default(),
            test_size: None,
            folds: None,
            temperature: None,
        }
    }
}

/// [`TrainParams`] that passed [`TrainParams::check`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidTrainParams(TrainParams);

impl ValidTrainParams {
    /// The checked values.
    pub fn get(&self) -> &TrainParams {
        &self.0
    }
}

impl From<&GridPoint> for TrainParams {
    /// The ranged values of one grid point.
    fn from(p: &GridPoint) -> Self {
        Self {
            alpha: p.alpha,
            vectorizer: p.vectorizer(),
            ..Self::default()
        }
    }
}

impl TrainParams {
    /// Checks every value against its one range.
    pub fn check(self) -> Result<ValidTrainParams, ParamError> {
        check_alpha(self.alpha)?;
        for (param, bound) in [
            (Param::MinDf, self.vectorizer.min_df),
            (Param::MaxDf, self.vectorizer.max_df),
        ] {
            check_df(param, bound)?;
        }
        if self.vectorizer.max_features > MAX_FEATURES {
            return Err(ParamError::new(
                Param::MaxFeatures,
                self.vectorizer.max_features,
                format!("must be at most {MAX_FEATURES} (0 = no limit)"),
            ));
        }
        if let Some(t) = self.test_size {
            if !(t.is_finite() && t > 0.0 && t < 1.0) {
                return Err(ParamError::new(
                    Param::TestSize,
                    number(t),
                    "must be a number strictly between 0 and 1",
                ));
            }
        }
        if let Some(k) = self.folds {
            check_folds(k)?;
        }
        if let Some(t) = self.temperature {
            check_temperature(t)?;
        }
        Ok(ValidTrainParams(self))
    }
}

/// A finite number within `range`, which the message names.
fn check_range(param: Param, value: f64, range: &RangeInclusive<f64>) -> Result<(), ParamError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ParamError::new(
            param,
            number(value),
            format!(
                "must be a finite number in [{:e}, {:e}]",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// A number as messages write it: `1e-12`, not twelve zeros.
pub fn number(value: f64) -> String {
    format!("{value:?}")
}

/// Smoothing within [`ALPHA_RANGE`].
pub fn check_alpha(alpha: f64) -> Result<(), ParamError> {
    check_range(Param::Alpha, alpha, &ALPHA_RANGE)
}

/// A temperature within [`TEMPERATURE_RANGE`].
pub fn check_temperature(temperature: f64) -> Result<(), ParamError> {
    check_range(Param::Temperature, temperature, &TEMPERATURE_RANGE)
}

/// At least [`MIN_FOLDS`] folds.
pub fn check_folds(folds: u32) -> Result<(), ParamError> {
    if folds >= MIN_FOLDS {
        Ok(())
    } else {
        Err(ParamError::new(
            Param::Folds,
            folds,
            format!("cross-validation needs at least {MIN_FOLDS} folds"),
        ))
    }
}

/// A `min_df` / `max_df`: a count, or a proportion in (0, 1].
pub fn check_df(param: Param, bound: DfBound) -> Result<(), ParamError> {
    bound
        .validate()
        .map_err(|problem| ParamError::new(param, bound, problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(edit: impl FnOnce(&mut TrainParams)) -> Result<ValidTrainParams, ParamError> {
        let mut p = TrainParams::default();
        edit(&mut p);
        p.check()
    }

    #[test]
    fn each_range_is_inclusive_at_its_ends_and_refuses_beyond() {
        for alpha in [*ALPHA_RANGE.start(), 0.01, 1.0, *ALPHA_RANGE.end()] {
            assert!(with(|p| p.alpha = alpha).is_ok(), "{alpha}");
        }
        for alpha in [
            1e-12,
            5e-324,
            0.0,
            -1.0,
            1.1e10,
            1e308,
            f64::NAN,
            f64::INFINITY,
        ] {
            let e = with(|p| p.alpha = alpha).unwrap_err();
            assert_eq!(e.param, Param::Alpha, "{alpha}");
            assert!(!e.by_data);
        }
        for t in [*TEMPERATURE_RANGE.start(), 27.68, *TEMPERATURE_RANGE.end()] {
            assert!(with(|p| p.temperature = Some(t)).is_ok(), "{t}");
        }
        for t in [5e-324, 1e-3, 0.0, -2.0, 2e6, f64::NAN, f64::INFINITY] {
            let e = with(|p| p.temperature = Some(t)).unwrap_err();
            assert_eq!(e.param, Param::Temperature, "{t}");
        }
        for t in [0.0, 1.0, -0.5, f64::NAN] {
            let e = with(|p| p.test_size = Some(t)).unwrap_err();
            assert_eq!(e.param, Param::TestSize, "{t}");
        }
        assert!(with(|p| p.test_size = Some(0.2)).is_ok());
        assert_eq!(with(|p| p.folds = Some(1)).unwrap_err().param, Param::Folds);
        assert!(with(|p| p.folds = Some(2)).is_ok());
        let e = with(|p| p.vectorizer.min_df = DfBound::Proportion(0.0)).unwrap_err();
        assert_eq!(e.param, Param::MinDf);
        let e = with(|p| p.vectorizer.max_df = DfBound::Proportion(1.5)).unwrap_err();
        assert_eq!(e.param, Param::MaxDf);
        assert!(with(|p| p.vectorizer.min_df = DfBound::Count(0)).is_ok());
        assert!(with(|p| p.vectorizer.max_features = MAX_FEATURES).is_ok());
        let e = with(|p| p.vectorizer.max_features = MAX_FEATURES + 1).unwrap_err();
        assert_eq!(e.param, Param::MaxFeatures);
    }

    #[test]
    fn errors_name_the_parameter_not_a_flag() {
        let e = with(|p| p.alpha = 1e-12).unwrap_err();
        assert_eq!(
            e.to_string(),
            "alpha 1e-12: must be a finite number in [1e-10, 1e10]"
        );
        let e = with(|p| p.vectorizer.min_df = DfBound::Proportion(2.0)).unwrap_err();
        assert!(e.to_string().starts_with("min_df 2.0: "), "{e}");
        assert!(!e.to_string().contains("--"), "{e}");
    }
}
