//! One fold's models for every grid point, and the scoring of its held-out
//! documents: the same code whether the fold's statistics come from a
//! tokenized corpus or from counts (the total minus the fold's), so both
//! score every document to the same bits.

use crate::classifier::{
    ConfusionMatrix, CvResult, GridPoint, MeanStd, NaiveBayes, TermStats, VectorizerOptions,
};

use super::{select, CvError};

/// One fold's figures for every point: (F1, BA, accuracy, terms).
pub(super) type FoldScores = Vec<(f64, f64, f64, usize)>;

/// Every point's model fitted on one fold's training part.
pub(crate) struct FoldModels {
    /// Per distinct vectorizer selection: term id → feature, or `u32::MAX`.
    indexes: Vec<(VectorizerOptions, Vec<u32>)>,
    /// Per point: its selection in `indexes`, model and vocabulary size.
    models: Vec<(usize, NaiveBayes, usize)>,
    n_classes: usize,
    /// Scratch.
    features: Vec<u32>,
    counts: Vec<(u32, u32)>,
}

impl FoldModels {
    /// Fits every point on `stats` (over `n_terms` term ids) for fold `f`
    /// (0-based; errors name it 1-based).
    pub(crate) fn new(
        stats: &TermStats,
        n_terms: usize,
        n_classes: usize,
        points: &[GridPoint],
        f: usize,
    ) -> Result<Self, CvError> {
        let mut indexes: Vec<(VectorizerOptions, Vec<u32>)> = Vec::new();
        let mut models = Vec::with_capacity(points.len());
        let fold_error = |e: &dyn std::fmt::Display| CvError::Data(format!("fold {}: {e}", f + 1));
        for p in points {
            let options = p.vectorizer();
            let kept = select(stats, p, f)?;
            let slot = match indexes.iter().position(|(o, _)| *o == options) {
                Some(i) => i,
                None => {
                    let mut index = vec![u32::MAX; n_terms];
                    for (i, &t) in kept.iter().enumerate() {
                        index[t as usize] = i as u32;
                    }
                    indexes.push((options, index));
                    indexes.len() - 1
                }
            };
            let params = stats
                .parameters(&kept, p.binary, p.alpha)
                .map_err(|e| fold_error(&e))?;
            let nb =
                NaiveBayes::with_kind(p.model, p.binary, &params).map_err(|e| fold_error(&e))?;
            models.push((slot, nb, kept.len()));
        }
        Ok(Self {
            indexes,
            models,
            n_classes,
            features: Vec::new(),
            counts: Vec::new(),
        })
    }

    /// Vocabulary size of point `p`'s model.
    pub(crate) fn terms(&self, p: usize) -> usize {
        self.models[p].2
    }

    /// The joint log likelihoods of `doc` (ascending `(term id,
    /// occurrences)`) under every point, into `out[point]`.
    pub(crate) fn score(&mut self, doc: &[(u32, u32)], out: &mut Vec<Vec<f64>>) {
        out.resize_with(self.models.len(), Vec::new);
        for ((slot, nb, _), jll) in self.models.iter().zip(out.iter_mut()) {
            let index = &self.indexes[*slot].1;
            // Kept terms are ascending, so so are their new indices.
            self.features.clear();
            self.counts.clear();
            for &(t, n) in doc {
                let i = index[t as usize];
                if i != u32::MAX {
                    self.features.push(i);
                    self.counts.push((i, n));
                }
            }
            jll.clear();
            jll.reserve(self.n_classes);
            if nb.uses_counts() {
                nb.joint_log_likelihood_counts(&self.counts, jll);
            } else {
                nb.joint_log_likelihood(&self.features, jll);
            }
        }
    }
}

/// A point's figures on fold `f` (0-based) from its confusion matrix on
/// the fold's held-out documents.
pub(super) fn matrix_figures(
    matrix: &ConfusionMatrix,
    classes: &[String],
    terms: usize,
    f: usize,
) -> Result<(f64, f64, f64, usize), CvError> {
    let e = matrix
        .evaluate(classes)
        .map_err(|e| CvError::Data(format!("fold {}: {e}", f + 1)))?;
    Ok((e.f1_macro, e.balanced_accuracy, e.accuracy, terms))
}

/// Mean ± std over the folds of every point's figures.
pub(super) fn cv_results(points: &[GridPoint], scores: &[FoldScores]) -> Vec<CvResult> {
    points
        .iter()
        .enumerate()
        .map(|(p, &params)| {
            let pick = |i: usize| -> Vec<f64> {
                scores
                    .iter()
                    .map(|s| match i {
                        0 => s[p].0,
                        1 => s[p].1,
                        2 => s[p].2,
                        _ => s[p].3 as f64,
                    })
                    .collect()
            };
            CvResult {
                params,
                f1_macro: MeanStd::of(&pick(0)),
                balanced_accuracy: MeanStd::of(&pick(1)),
                accuracy: MeanStd::of(&pick(2)),
                vocabulary_size: MeanStd::of(&pick(3)).mean,
            }
        })
        .collect()
}
