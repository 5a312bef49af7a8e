//! A parameter grid and the cross-validation report stored in the artifact:
//! plain data, shared by the search (`tuning`) and the artifact.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{DfBound, ModelKind, VectorizerOptions};

/// One combination of parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridPoint {
    /// The naive Bayes model.
    pub model: ModelKind,
    /// Binary features (always true for Bernoulli NB).
    pub binary: bool,
    /// Smoothing.
    pub alpha: f64,
    /// `min_df`.
    pub min_df: DfBound,
    /// `max_df`.
    pub max_df: DfBound,
    /// `max_features`, 0 = no limit.
    pub max_features: u64,
}

impl GridPoint {
    /// The vectorizer options of this point.
    pub fn vectorizer(&self) -> VectorizerOptions {
        VectorizerOptions {
            min_df: self.min_df,
            max_df: self.max_df,
            max_features: self.max_features,
            binary: self.binary,
        }
    }
}

/// A grid: every combination of the listed values.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Models.
    pub models: Vec<ModelKind>,
    /// Binary features for Multinomial / Complement NB.
    pub binary: bool,
    /// Smoothing values (> 0).
    pub alphas: Vec<f64>,
    /// `min_df` values.
    pub min_dfs: Vec<DfBound>,
    /// `max_df` values.
    pub max_dfs: Vec<DfBound>,
    /// `max_features` values, 0 = no limit.
    pub max_features: Vec<u64>,
}

impl Grid {
    /// Every point, models outermost, `max_features` innermost.
    pub fn points(&self) -> Vec<GridPoint> {
        let mut out = Vec::new();
        for &model in &self.models {
            for &alpha in &self.alphas {
                for &min_df in &self.min_dfs {
                    for &max_df in &self.max_dfs {
                        for &max_features in &self.max_features {
                            out.push(GridPoint {
                                model,
                                binary: self.binary || model == ModelKind::Bernoulli,
                                alpha,
                                min_df,
                                max_df,
                                max_features,
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

/// Mean and (population) standard deviation over folds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Standard deviation (`ddof=0`, as scikit-learn's `cv_results_`).
    pub std: f64,
}

impl MeanStd {
    /// Mean and standard deviation of `values` (not empty).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        Self {
            mean,
            std: var.sqrt(),
        }
    }
}

/// Cross-validated scores of one grid point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvResult {
    /// The parameters.
    pub params: GridPoint,
    /// F1 macro over the held-out folds.
    pub f1_macro: MeanStd,
    /// Balanced accuracy over the held-out folds.
    pub balanced_accuracy: MeanStd,
    /// Accuracy over the held-out folds.
    pub accuracy: MeanStd,
    /// Mean vocabulary size of the fold models.
    pub vocabulary_size: f64,
}

/// The search as stored in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningReport {
    /// Stratified folds.
    pub folds: u32,
    /// Seed of the folds.
    pub seed: u64,
    /// The criterion: mean `f1_macro` (ties: the smaller vocabulary).
    pub scoring: String,
    /// One entry per grid point, in grid order.
    pub results: Vec<CvResult>,
    /// Index of the chosen point in `results`.
    pub best: usize,
}

impl TuningReport {
    /// The table `tune` prints; the chosen point is marked `*`.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  {:<11} {:>6} {:>7} {:>6} {:>6} {:>8} {:>8}  {:<17}  {:<17}  {:<17}",
            "model",
            "binary",
            "alpha",
            "min_df",
            "max_df",
            "max_feat",
            "terms",
            "F1 macro",
            "bal. accuracy",
            "accuracy"
        );
        for (i, r) in self.results.iter().enumerate() {
            let p = &r.params;
            let ms = |m: MeanStd| format!("{:.4} ± {:.4}", m.mean, m.std);
            let _ = writeln!(
                s,
                "{} {:<11} {:>6} {:>7} {:>6} {:>6} {:>8} {:>8.0}  {:<17}  {:<17}  {:<17}",
                if i == self.best { "*" } else { " " },
                p.model.name(),
                p.binary,
                p.alpha,
                p.min_df.to_string(),
                p.max_df.to_string(),
                p.max_features,
                r.vocabulary_size,
                ms(r.f1_macro),
                ms(r.balanced_accuracy),
                ms(r.accuracy)
            );
        }
        s
    }
}

/// The index of the best result: highest mean F1 macro, then the smaller
/// vocabulary, then the earlier grid point.
pub fn best(results: &[CvResult]) -> usize {
    let mut best = 0;
    for (i, r) in results.iter().enumerate().skip(1) {
        let b = &results[best];
        let better = r.f1_macro.mean > b.f1_macro.mean
            || (r.f1_macro.mean == b.f1_macro.mean && r.vocabulary_size < b.vocabulary_size);
        if better {
            best = i;
        }
    }
    best
}
