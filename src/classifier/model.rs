//! The naive Bayes family with scikit-learn's definitions: `BernoulliNB`
//! (the default), `MultinomialNB` and `ComplementNB`.
//!
//! Bernoulli: `feature_log_prob[c][f] = ln(N_cf + α) − ln(N_c + 2α)` and the joint log
//! likelihood of a binary document `x` is
//! `prior_c + Σ_f x_f·ln p_cf + (1 − x_f)·ln(1 − p_cf)`.
//! Rearranged as `(prior_c + Σ_f ln(1 − p_cf)) + Σ_{f ∈ x} (ln p_cf − ln(1 − p_cf))`,
//! the first bracket is a per-class constant computed once, so scoring costs
//! O(features present × classes) instead of O(vocabulary × classes).
//!
//! Multinomial and Complement NB are linear in the term counts already:
//! `jll_c = prior_c + Σ_f x_f·w_cf` (Complement NB has no prior with two or
//! more classes), so the same `base + Σ delta` scorer serves all three.

use serde::{Deserialize, Serialize};

use super::params::{check_alpha, ParamError};

/// Why a model cannot be trained or built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// A parameter out of its range (smoothing).
    #[error(transparent)]
    Param(#[from] ParamError),
    /// Training needs at least one document.
    #[error("no training documents")]
    NoDocuments,
    /// A classifier needs two classes to choose between.
    #[error("training data has {0} class(es); at least 2 are needed")]
    TooFewClasses(usize),
    /// Parameter arrays disagree in shape.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A count is impossible (more documents with a feature than in the class).
    #[error("invalid counts: {0}")]
    Counts(String),
    /// The scoring tables derived from the parameters are not finite.
    #[error("the scoring tables are not finite (alpha or counts out of range)")]
    NonFinite,
    /// A sample document scores to probabilities that are not finite.
    #[error("scoring {0} gives probabilities that are not finite numbers")]
    NonFiniteScores(&'static str),
}

/// Which naive Bayes model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// scikit-learn `BernoulliNB` on binary features (the default).
    #[default]
    Bernoulli,
    /// scikit-learn `MultinomialNB`.
    Multinomial,
    /// scikit-learn `ComplementNB` (`norm=False`).
    Complement,
}

impl ModelKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [ModelKind; 3] = [
        ModelKind::Bernoulli,
        ModelKind::Multinomial,
        ModelKind::Complement,
    ];

    /// The lowercase name used on the command line and in the artifact.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Bernoulli => "bernoulli",
            ModelKind::Multinomial => "multinomial",
            ModelKind::Complement => "complement",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| {
                format!("unknown model {s:?} (expected bernoulli, multinomial or complement)")
            })
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The sufficient statistics of a fitted naive Bayes: what the artifact stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NbParameters {
    /// Additive (Laplace/Lidstone) smoothing.
    pub alpha: f64,
    /// Training documents per class.
    pub class_count: Vec<u64>,
    /// `feature_count[c][f]`: training documents of class `c` containing
    /// feature `f` (binary features), or its occurrences in them (counts).
    pub feature_count: Vec<Vec<u64>>,
}

/// Checks that `alpha` is usable as a smoothing parameter (within
/// [`super::params::ALPHA_RANGE`]).
pub fn validate_alpha(alpha: f64) -> Result<(), ModelError> {
    Ok(check_alpha(alpha)?)
}

impl NbParameters {
    /// Counts class and feature occurrences. `docs[i]` holds the distinct
    /// feature indices of document `i`, `labels[i]` its class index.
    pub fn fit(
        docs: &[Vec<u32>],
        labels: &[usize],
        n_classes: usize,
        n_features: usize,
        alpha: f64,
    ) -> Result<Self, ModelError> {
        validate_alpha(alpha)?;
        if docs.is_empty() {
            return Err(ModelError::NoDocuments);
        }
        if docs.len() != labels.len() {
            return Err(ModelError::Shape(format!(
                "{} documents but {} labels",
                docs.len(),
                labels.len()
            )));
        }
        let mut class_count = vec![0u64; n_classes];
        let mut feature_count = vec![vec![0u64; n_features]; n_classes];
        for (doc, &label) in docs.iter().zip(labels) {
            class_count[label] += 1;
            let row = &mut feature_count[label];
            for &f in doc {
                row[f as usize] += 1;
            }
        }
        let present = class_count.iter().filter(|&&n| n > 0).count();
        if present < 2 {
            return Err(ModelError::TooFewClasses(present));
        }
        Ok(Self {
            alpha,
            class_count,
            feature_count,
        })
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.class_count.len()
    }

    /// Number of features (0 when there are no classes).
    pub fn n_features(&self) -> usize {
        self.feature_count.first().map_or(0, Vec::len)
    }

    /// Checks shapes and counts against an expected number of features, for
    /// binary features (a feature count cannot exceed its class's documents).
    pub fn validate(&self, n_features: usize) -> Result<(), ModelError> {
        self.validate_as(n_features, true)
    }

    /// [`NbParameters::validate`] for binary features or term counts.
    pub fn validate_as(&self, n_features: usize, binary: bool) -> Result<(), ModelError> {
        validate_alpha(self.alpha)?;
        if self.class_count.len() < 2 {
            return Err(ModelError::TooFewClasses(self.class_count.len()));
        }
        if self.feature_count.len() != self.class_count.len() {
            return Err(ModelError::Shape(format!(
                "feature_count has {} rows for {} classes",
                self.feature_count.len(),
                self.class_count.len()
            )));
        }
        for (c, row) in self.feature_count.iter().enumerate() {
            if row.len() != n_features {
                return Err(ModelError::Shape(format!(
                    "feature_count row {c} has {} entries for a vocabulary of {n_features}",
                    row.len()
                )));
            }
            let impossible = binary
                .then(|| row.iter().position(|&n| n > self.class_count[c]))
                .flatten();
            if let Some(f) = impossible {
                return Err(ModelError::Counts(format!(
                    "feature {f} occurs in more documents of class {c} than the class has"
                )));
            }
        }
        if self.class_count.contains(&0) {
            return Err(ModelError::Counts(
                "a class has no training documents".into(),
            ));
        }
        // Totals the scoring tables are built from must not wrap.
        let overflow = || ModelError::Counts("counts add up past 2^64".into());
        checked_total(self.class_count.iter().copied()).ok_or_else(overflow)?;
        for row in &self.feature_count {
            checked_total(row.iter().copied()).ok_or_else(overflow)?;
        }
        for f in 0..n_features {
            checked_total(self.feature_count.iter().map(|row| row[f])).ok_or_else(overflow)?;
        }
        Ok(())
    }
}

/// The sum of `values`, `None` if it overflows a `u64`.
fn checked_total(mut values: impl Iterator<Item = u64>) -> Option<u64> {
    values.try_fold(0u64, u64::checked_add)
}

/// A naive Bayes ready to score: per-class constants and per-feature deltas.
#[derive(Debug, Clone)]
pub struct NaiveBayes {
    kind: ModelKind,
    /// Scored on term counts (every occurrence adds its delta), not presence.
    counts: bool,
    n_classes: usize,
    class_log_prior: Vec<f64>,
    /// Bernoulli: `prior_c + Σ_f ln(1 − p_cf)`; Multinomial: `prior_c`;
    /// Complement: 0.
    base: Vec<f64>,
    /// Feature-major `[f * n_classes + c]`, so the deltas of one feature for
    /// every class sit in one cache line. Bernoulli: `ln p_cf − ln(1 − p_cf)`;
    /// Multinomial and Complement: `feature_log_prob_[c][f]`.
    delta: Vec<f64>,
}

impl NaiveBayes {
    /// A Bernoulli NB from validated parameters (binary features).
    pub fn new(params: &NbParameters) -> Result<Self, ModelError> {
        Self::with_kind(ModelKind::Bernoulli, true, params)
    }

    /// Precomputes the scoring tables of `kind` from validated parameters;
    /// `binary` says whether documents are scored on presence or term counts
    /// (Bernoulli NB always binarizes, as scikit-learn's `binarize=0.0`).
    pub fn with_kind(
        kind: ModelKind,
        binary: bool,
        params: &NbParameters,
    ) -> Result<Self, ModelError> {
        let binary = binary || kind == ModelKind::Bernoulli;
        params.validate_as(params.n_features(), binary)?;
        let (class_log_prior, base, delta) = match kind {
            ModelKind::Bernoulli => bernoulli_tables(params),
            ModelKind::Multinomial => super::family::multinomial_tables(params),
            ModelKind::Complement => super::family::complement_tables(params),
        };
        // Extreme alpha or counts can still make a log infinite or NaN; such
        // a model would answer `null` probabilities.
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if !(finite(&class_log_prior) && finite(&base) && finite(&delta)) {
            return Err(ModelError::NonFinite);
        }
        Ok(Self {
            kind,
            counts: !binary,
            n_classes: params.n_classes(),
            class_log_prior,
            base,
            delta,
        })
    }

    /// Which model this is.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// True when documents are scored on term counts rather than presence.
    pub fn uses_counts(&self) -> bool {
        self.counts
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.delta.len() / self.n_classes
    }

    /// `ln P(c)` for each class.
    pub fn class_log_prior(&self) -> &[f64] {
        &self.class_log_prior
    }

    /// The log-odds contribution of feature `f` to class `c`: `ln p − ln(1 − p)`.
    #[inline]
    pub fn feature_delta(&self, f: usize, c: usize) -> f64 {
        self.delta[f * self.n_classes + c]
    }

    /// Joint log likelihood of a document given its distinct feature indices
    /// (binary features; see [`NaiveBayes::joint_log_likelihood_counts`]).
    pub fn joint_log_likelihood(&self, features: &[u32], out: &mut Vec<f64>) {
        out.clear();
        out.extend_from_slice(&self.base);
        for &f in features {
            self.add_feature(f, out);
        }
    }

    /// The per-class constant a binary document's joint log likelihood
    /// starts from (see [`NaiveBayes::joint_log_likelihood`]).
    pub fn base(&self) -> &[f64] {
        &self.base
    }

    /// Adds the deltas of feature `f` to `jll` (one value per class): one
    /// step of [`NaiveBayes::joint_log_likelihood`], for a caller that scores
    /// features as it finds them instead of in a pass of its own.
    #[inline]
    pub fn add_feature(&self, f: u32, jll: &mut [f64]) {
        let row = &self.delta[f as usize * self.n_classes..][..self.n_classes];
        // Two classes (spam or not) is the common case: two adds, no loop.
        if let ([a, b], [da, db]) = (&mut *jll, row) {
            *a += da;
            *b += db;
            return;
        }
        for (acc, d) in jll.iter_mut().zip(row) {
            *acc += d;
        }
    }

    /// The deltas as one `[class 0, class 1]` pair per feature, for a
    /// two-class model (spam or not, the common case): a caller scoring
    /// many features keeps its two sums in registers and reads each pair
    /// with one bounds check. `None` for any other number of classes.
    pub fn two_class_deltas(&self) -> Option<&[[f64; 2]]> {
        (self.n_classes == 2).then(|| self.delta.as_chunks::<2>().0)
    }

    /// Joint log likelihood of a document holding every feature once: the
    /// longest sum any binary document can reach (for load-time checks).
    pub fn joint_log_likelihood_all(&self, out: &mut Vec<f64>) {
        out.clear();
        out.resize(self.n_classes, 0.0);
        for row in self.delta.chunks_exact(self.n_classes) {
            for (acc, d) in out.iter_mut().zip(row) {
                *acc += d;
            }
        }
        for (acc, b) in out.iter_mut().zip(&self.base) {
            *acc += b;
        }
    }

    /// Joint log likelihood of a document given `(feature, occurrences)`
    /// pairs in ascending feature order, for models scored on term counts:
    /// `Σ n·w` summed in that order and the class constant added last, as
    /// scikit-learn's sparse product does, so long documents (sums of
    /// thousands of terms) round the same way.
    pub fn joint_log_likelihood_counts(&self, counts: &[(u32, u32)], out: &mut Vec<f64>) {
        out.clear();
        out.resize(self.n_classes, 0.0);
        for &(f, n) in counts {
            let row = &self.delta[f as usize * self.n_classes..][..self.n_classes];
            for (acc, d) in out.iter_mut().zip(row) {
                *acc += f64::from(n) * d;
            }
        }
        for (acc, b) in out.iter_mut().zip(&self.base) {
            *acc += b;
        }
    }
}

/// `ln(N_c) − ln(Σ N)` per class, as scikit-learn's `class_log_prior_`.
pub(super) fn class_log_prior(params: &NbParameters) -> Vec<f64> {
    let total: u64 = params.class_count.iter().sum();
    params
        .class_count
        .iter()
        .map(|&n| (n as f64).ln() - (total as f64).ln())
        .collect()
}

/// The Bernoulli scoring tables: `(class_log_prior, base, delta)`.
fn bernoulli_tables(params: &NbParameters) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n_features = params.n_features();
    let n_classes = params.n_classes();
    let class_log_prior = class_log_prior(params);
    let mut base = Vec::with_capacity(n_classes);
    let mut delta = vec![0.0; n_features * n_classes];
    for c in 0..n_classes {
        let denom = (params.class_count[c] as f64 + 2.0 * params.alpha).ln();
        let mut neg_sum = NeumaierSum::default();
        for (f, &count) in params.feature_count[c].iter().enumerate() {
            let log_p = (count as f64 + params.alpha).ln() - denom;
            // Same expression as scikit-learn (`np.log(1 - np.exp(flp))`), so
            // the rounding matches to the last bits.
            let log_not_p = (1.0 - log_p.exp()).ln();
            neg_sum.add(log_not_p);
            delta[f * n_classes + c] = log_p - log_not_p;
        }
        base.push(class_log_prior[c] + neg_sum.total());
    }
    (class_log_prior, base, delta)
}

/// Turns joint log likelihoods into normalised log probabilities in place
/// (log-sum-exp around the maximum, so the result is finite for any finite input).
pub fn normalize_log_probs(jll: &mut [f64]) {
    let max = jll.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = jll.iter().map(|&v| (v - max).exp()).sum();
    let log_norm = max + sum.ln();
    for v in jll.iter_mut() {
        *v -= log_norm;
    }
}

/// Index of the largest value; the first one on ties, as `numpy.argmax`.
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate().skip(1) {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Compensated summation: the per-class constant adds one small term per
/// feature of the vocabulary, and a naive running sum would drift further
/// from NumPy's pairwise sum than the parity tolerance allows.
#[derive(Default)]
pub(super) struct NeumaierSum {
    sum: f64,
    compensation: f64,
}

impl NeumaierSum {
    pub(super) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub(super) fn total(&self) -> f64 {
        self.sum + self.compensation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn toy() -> NbParameters {
        // Features: 0 = "free", 1 = "meeting", 2 = "money".
        let docs = vec![vec![0, 2], vec![0], vec![1], vec![1, 2]];
        let labels = vec![1, 1, 0, 0];
        NbParameters::fit(&docs, &labels, 2, 3, 1.0).unwrap()
    }

    #[test]
    fn counts_documents_per_class_and_feature() {
        let p = toy();
        assert_eq!(p.class_count, vec![2, 2]);
        assert_eq!(p.feature_count, vec![vec![0, 2, 1], vec![2, 0, 1]]);
    }

    #[test]
    fn scoring_matches_the_direct_formula() {
        let p = toy();
        let nb = NaiveBayes::new(&p).unwrap();
        let x = [0u32, 2];
        let mut jll = Vec::new();
        nb.joint_log_likelihood(&x, &mut jll);
        for (c, &score) in jll.iter().enumerate() {
            let mut direct = (p.class_count[c] as f64 / 4.0).ln();
            for f in 0..3 {
                let prob = (p.feature_count[c][f] as f64 + 1.0) / (p.class_count[c] as f64 + 2.0);
                direct += if x.contains(&(f as u32)) {
                    prob.ln()
                } else {
                    (1.0 - prob).ln()
                };
            }
            assert_relative_eq!(score, direct, epsilon = 1e-12);
        }
        normalize_log_probs(&mut jll);
        assert_eq!(argmax(&jll), 1);
        let total: f64 = jll.iter().map(|v| v.exp()).sum();
        assert_relative_eq!(total, 1.0, epsilon = 1e-12);
    }

    #[test]
    fn rejects_bad_alpha_empty_data_and_single_class() {
        for alpha in [0.0, -1.0, f64::NAN, 1e-12] {
            assert!(
                matches!(
                    NbParameters::fit(&[vec![0]], &[0], 2, 1, alpha),
                    Err(ModelError::Param(ParamError {
                        param: super::super::Param::Alpha,
                        ..
                    }))
                ),
                "{alpha}"
            );
        }
        assert_eq!(
            NbParameters::fit(&[], &[], 2, 1, 1.0).unwrap_err(),
            ModelError::NoDocuments
        );
        assert_eq!(
            NbParameters::fit(&[vec![0], vec![]], &[0, 0], 2, 1, 1.0).unwrap_err(),
            ModelError::TooFewClasses(1)
        );
    }

    #[test]
    fn validate_catches_shape_and_count_errors() {
        let mut p = toy();
        p.feature_count[1].pop();
        assert!(matches!(p.validate(3), Err(ModelError::Shape(_))));
        let mut p = toy();
        p.feature_count[0][0] = 99;
        assert!(matches!(p.validate(3), Err(ModelError::Counts(_))));
    }

    #[test]
    fn normalize_is_finite_for_extreme_scores() {
        let mut v = vec![-1e6, 0.0, -3.0];
        normalize_log_probs(&mut v);
        assert!(v.iter().all(|x| x.is_finite()));
        assert_eq!(argmax(&v), 1);
    }

    #[test]
    fn argmax_prefers_first_on_ties() {
        assert_eq!(argmax(&[1.0, 1.0]), 0);
    }
}
