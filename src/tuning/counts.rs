//! Cross-validation from counts: every fold's models are the total counts
//! minus that fold's (no recount), and the held-out scoring pass re-reads
//! the documents shard by shard, each shard scored on its own
//! ([`FoldScorer`]) into [`CvScores`] that add up.
//!
//! With the same fold assignment, the figures are those of
//! [`super::CrossValidation::run`] on the documents themselves, to the bit:
//! the fold statistics are the same integers, the models the same code
//! ([`FoldModels`]) and every document is scored in the same order of terms.

use serde::{Deserialize, Serialize};

use crate::artifact::Calibration;
use crate::classifier::{
    argmax, tokenizer, ConfusionMatrix, Counts, CvResult, GridPoint, Vocabulary,
};

use super::fold::{cv_results, matrix_figures, FoldModels, FoldScores};
use super::{calibration_of, check_points, CvError};

/// One document's out-of-fold scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoredDocument {
    /// Its class (index into [`CvScores::classes`]).
    pub label: usize,
    /// Its fold (0-based).
    pub fold: u32,
    /// Joint log likelihoods per grid point, then per class.
    pub jll: Vec<Vec<f64>>,
}

/// The held-out scores of some documents against one total: per fold and
/// grid point a confusion matrix, and each document's out-of-fold joint
/// log likelihoods (for the temperature). Shards' scores [`CvScores::add`]
/// up, in the order of their documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvScores {
    /// sha256 (hex) of the total counts file the models came from.
    pub counts_sha256: String,
    /// The total's classes.
    pub classes: Vec<String>,
    /// Folds.
    pub folds: u32,
    /// The grid, in order.
    pub points: Vec<GridPoint>,
    /// `[fold][point]`: the confusion matrix `[true][predicted]`.
    pub confusion: Vec<Vec<Vec<Vec<u64>>>>,
    /// `[fold][point]`: the fold model's vocabulary size.
    pub terms: Vec<Vec<usize>>,
    /// The documents scored, in order.
    pub documents: Vec<ScoredDocument>,
}

impl CvScores {
    /// Checks that every array has the shape the folds, points and classes
    /// say (a file is read from outside).
    pub fn check(&self) -> Result<(), String> {
        let (k, p, c) = (self.folds as usize, self.points.len(), self.classes.len());
        let square = |m: &Vec<Vec<u64>>| m.len() == c && m.iter().all(|r| r.len() == c);
        if self.confusion.len() != k
            || self
                .confusion
                .iter()
                .any(|f| f.len() != p || !f.iter().all(square))
        {
            return Err(format!(
                "confusion matrices are not {k} folds × {p} points × {c} × {c} classes"
            ));
        }
        if self.terms.len() != k || self.terms.iter().any(|t| !t.is_empty() && t.len() != p) {
            return Err(format!("vocabulary sizes are not {k} folds × {p} points"));
        }
        let bad = self.documents.iter().position(|d| {
            d.label >= c
                || d.fold as usize >= k
                || d.jll.len() != p
                || d.jll.iter().any(|j| j.len() != c)
        });
        if let Some(i) = bad {
            return Err(format!(
                "document {i} does not fit {k} folds, {p} points and {c} classes"
            ));
        }
        Ok(())
    }

    /// Adds `other`'s documents after `self`'s; both must come from the
    /// same total and grid.
    pub fn add(&mut self, other: CvScores) -> Result<(), CvError> {
        let same = self.counts_sha256 == other.counts_sha256
            && self.classes == other.classes
            && self.folds == other.folds
            && self.points == other.points;
        if !same {
            return Err(CvError::Data(
                "scores of different counts or grids cannot be added".into(),
            ));
        }
        for (a, b) in self.confusion.iter_mut().zip(other.confusion) {
            for (ma, mb) in a.iter_mut().zip(b) {
                for (ra, rb) in ma.iter_mut().zip(mb) {
                    for (x, y) in ra.iter_mut().zip(rb) {
                        *x += y;
                    }
                }
            }
        }
        // Terms depend on the total and the fold only: equal on every shard
        // that had the fold scored; a shard without it has none recorded.
        for (a, b) in self.terms.iter_mut().zip(other.terms) {
            if a.is_empty() {
                *a = b;
            }
        }
        self.documents.extend(other.documents);
        Ok(())
    }

    /// The cross-validated figures of every point (as
    /// [`super::CrossValidation::run`] reports them), and the out-of-fold
    /// joint log likelihoods and labels of the documents in order.
    pub fn results(&self) -> Result<Vec<CvResult>, CvError> {
        let mut per_fold: Vec<FoldScores> = Vec::with_capacity(self.folds as usize);
        for (f, (matrices, terms)) in self.confusion.iter().zip(&self.terms).enumerate() {
            let mut scores = Vec::with_capacity(self.points.len());
            for (p, counts) in matrices.iter().enumerate() {
                let matrix = ConfusionMatrix::from_counts(counts.clone());
                let terms = terms.get(p).copied().unwrap_or(0);
                scores.push(matrix_figures(&matrix, &self.classes, terms, f)?);
            }
            per_fold.push(scores);
        }
        Ok(cv_results(&self.points, &per_fold))
    }

    /// The temperature of point `p`, fitted on the out-of-fold scores.
    pub fn calibration(&self, p: usize, seed: u64) -> Calibration {
        let jll: Vec<Vec<f64>> = self.documents.iter().map(|d| d.jll[p].clone()).collect();
        let truth: Vec<usize> = self.documents.iter().map(|d| d.label).collect();
        calibration_of(&jll, &truth, self.folds, seed)
    }
}

/// Cross-validation of a grid on counts kept per fold.
pub struct CountsCv<'a> {
    total: &'a Counts,
    counts_sha256: String,
    points: Vec<GridPoint>,
    /// The total's terms, for looking up a document's tokens.
    lookup: Vocabulary,
    folds: u32,
}

impl<'a> CountsCv<'a> {
    /// Checks the grid against `total` (whose file hashes to
    /// `counts_sha256`), which must be kept per fold.
    pub fn new(
        total: &'a Counts,
        counts_sha256: String,
        points: &[GridPoint],
    ) -> Result<Self, CvError> {
        let folds = total
            .settings()
            .folds
            .as_ref()
            .map(|f| f.k)
            .ok_or_else(|| {
                CvError::Data(
                    "these counts are not kept per fold: count with --folds to cross-validate"
                        .into(),
                )
            })?;
        if points.iter().any(|p| !p.binary) && total.settings().binary {
            return Err(CvError::Data(
                crate::classifier::CountsError::NotCounts.to_string(),
            ));
        }
        check_points(points, total.documents() as usize)?;
        let lookup = Vocabulary::from_sorted(total.terms()).expect("counts hold sorted terms");
        Ok(Self {
            total,
            counts_sha256,
            points: points.to_vec(),
            lookup,
            folds,
        })
    }

    /// Folds.
    pub fn folds(&self) -> u32 {
        self.folds
    }

    /// Scores with no document yet, to add shards' scores to.
    pub fn empty_scores(&self) -> CvScores {
        let (k, p) = (self.folds as usize, self.points.len());
        let c = self.total.classes().len();
        CvScores {
            counts_sha256: self.counts_sha256.clone(),
            classes: self.total.classes().to_vec(),
            folds: self.folds,
            points: self.points.clone(),
            confusion: vec![vec![vec![vec![0; c]; c]; p]; k],
            terms: vec![Vec::new(); k],
            documents: Vec::new(),
        }
    }

    /// The models of fold `f`: every point fitted on the total minus fold
    /// `f`'s counts.
    pub fn fold(&self, f: usize) -> Result<FoldScorer<'_>, CvError> {
        let stats = self
            .total
            .stats(Some(f))
            .map_err(|e| CvError::Data(e.to_string()))?;
        let c = self.total.classes().len();
        let models = FoldModels::new(&stats, self.total.terms().len(), c, &self.points, f)?;
        Ok(FoldScorer {
            cv: self,
            fold: f,
            matrices: vec![ConfusionMatrix::new(c); self.points.len()],
            models,
            documents: Vec::new(),
            lowercase: String::new(),
            tokens: Vec::new(),
            doc: Vec::new(),
        })
    }
}

/// Scores the held-out documents of one fold.
pub struct FoldScorer<'a> {
    cv: &'a CountsCv<'a>,
    fold: usize,
    models: FoldModels,
    matrices: Vec<ConfusionMatrix>,
    /// (position, document).
    documents: Vec<(u64, ScoredDocument)>,
    lowercase: String,
    tokens: Vec<u32>,
    doc: Vec<(u32, u32)>,
}

impl FoldScorer<'_> {
    /// The fold scored.
    pub fn fold(&self) -> usize {
        self.fold
    }

    /// Scores one held-out document of this fold, at `position` in the
    /// order documents are read; `Err(label)` when its label is none of
    /// the total's classes (the document was not counted into it).
    pub fn score(&mut self, position: u64, text: &str, label: &str) -> Result<(), String> {
        let class = self
            .cv
            .total
            .classes()
            .binary_search_by(|c| c.as_str().cmp(label))
            .map_err(|_| label.to_owned())?;
        tokenizer::lowercase_into(text, &mut self.lowercase);
        self.tokens.clear();
        let (lookup, tokens) = (&self.cv.lookup, &mut self.tokens);
        tokenizer::for_each_token(&self.lowercase, |t| {
            if let Some(id) = lookup.get(t) {
                tokens.push(id);
            }
        });
        self.tokens.sort_unstable();
        self.doc.clear();
        for &t in &self.tokens {
            match self.doc.last_mut() {
                Some((last, n)) if *last == t => *n += 1,
                _ => self.doc.push((t, 1)),
            }
        }
        let mut jll = Vec::with_capacity(self.cv.points.len());
        self.models.score(&self.doc, &mut jll);
        for (m, j) in self.matrices.iter_mut().zip(&jll) {
            m.add(class, argmax(j))
                .expect("labels and predictions are classes");
        }
        self.documents.push((
            position,
            ScoredDocument {
                label: class,
                fold: self.fold as u32,
                jll,
            },
        ));
        Ok(())
    }

    /// Adds this fold's figures and documents to `scores` (documents of
    /// several folds are put back in order by [`merge_in_order`]).
    pub fn finish(self, scores: &mut CvScores, positioned: &mut Vec<(u64, ScoredDocument)>) {
        let f = self.fold;
        scores.confusion[f] = self.matrices.iter().map(|m| m.counts().to_vec()).collect();
        scores.terms[f] = (0..self.cv.points.len())
            .map(|p| self.models.terms(p))
            .collect();
        positioned.extend(self.documents);
    }
}

/// Puts the documents of every fold back in the order they were read.
pub fn merge_in_order(scores: &mut CvScores, mut positioned: Vec<(u64, ScoredDocument)>) {
    positioned.sort_by_key(|(position, _)| *position);
    scores
        .documents
        .extend(positioned.into_iter().map(|(_, d)| d));
}
