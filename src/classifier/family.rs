//! Scoring tables of scikit-learn's `MultinomialNB` and `ComplementNB`
//! (`norm=False`), in the feature-major layout of [`super::NaiveBayes`].

use super::model::{class_log_prior, NeumaierSum};
use super::NbParameters;

/// The tables `(class_log_prior, base, delta)`.
type Tables = (Vec<f64>, Vec<f64>, Vec<f64>);

/// `MultinomialNB`: `feature_log_prob_[c][f] = ln(N_cf + α) − ln(Σ_f (N_cf + α))`
/// and `jll_c = prior_c + Σ_f x_f · feature_log_prob_[c][f]`.
pub(super) fn multinomial_tables(params: &NbParameters) -> Tables {
    let (n_classes, n_features) = (params.n_classes(), params.n_features());
    let prior = class_log_prior(params);
    let mut delta = vec![0.0; n_features * n_classes];
    for (c, row) in params.feature_count.iter().enumerate() {
        let mut total = NeumaierSum::default();
        for &n in row {
            total.add(n as f64 + params.alpha);
        }
        let log_total = total.total().ln();
        for (f, &n) in row.iter().enumerate() {
            delta[f * n_classes + c] = (n as f64 + params.alpha).ln() - log_total;
        }
    }
    (prior.clone(), prior, delta)
}

/// `ComplementNB`: with `comp_cf = Σ_k N_kf + α − N_cf`,
/// `feature_log_prob_[c][f] = −ln(comp_cf / Σ_f comp_cf)` and
/// `jll_c = Σ_f x_f · feature_log_prob_[c][f]` (no prior with two or more classes).
pub(super) fn complement_tables(params: &NbParameters) -> Tables {
    let (n_classes, n_features) = (params.n_classes(), params.n_features());
    let all: Vec<u64> = (0..n_features)
        .map(|f| params.feature_count.iter().map(|row| row[f]).sum())
        .collect();
    let mut delta = vec![0.0; n_features * n_classes];
    for (c, row) in params.feature_count.iter().enumerate() {
        // Same order of operations as scikit-learn: `all + alpha - count`.
        let comp = |f: usize| all[f] as f64 + params.alpha - row[f] as f64;
        let mut total = NeumaierSum::default();
        for f in 0..n_features {
            total.add(comp(f));
        }
        let total = total.total();
        for f in 0..n_features {
            delta[f * n_classes + c] = -(comp(f) / total).ln();
        }
    }
    (class_log_prior(params), vec![0.0; n_classes], delta)
}

#[cfg(test)]
mod tests {
    use super::super::{ModelKind, NaiveBayes};
    use super::*;
    use approx::assert_relative_eq;

    fn params() -> NbParameters {
        // Term counts: class 0 [3, 0, 1], class 1 [0, 2, 2].
        NbParameters {
            alpha: 0.5,
            class_count: vec![2, 3],
            feature_count: vec![vec![3, 0, 1], vec![0, 2, 2]],
        }
    }

    #[test]
    fn multinomial_matches_the_textbook_formula() {
        let p = params();
        let nb = NaiveBayes::with_kind(ModelKind::Multinomial, false, &p).unwrap();
        assert!(nb.uses_counts());
        // Document with counts [2, 0, 1].
        let mut jll = Vec::new();
        nb.joint_log_likelihood_counts(&[(0, 2), (2, 1)], &mut jll);
        for (c, &score) in jll.iter().enumerate() {
            let total: f64 = p.feature_count[c].iter().map(|&n| n as f64 + 0.5).sum();
            let lp = |f: usize| ((p.feature_count[c][f] as f64 + 0.5) / total).ln();
            let expected = (p.class_count[c] as f64 / 5.0).ln() + 2.0 * lp(0) + lp(2);
            assert_relative_eq!(score, expected, epsilon = 1e-12);
        }
    }

    #[test]
    fn complement_matches_the_textbook_formula() {
        let p = params();
        let nb = NaiveBayes::with_kind(ModelKind::Complement, false, &p).unwrap();
        assert!(nb.uses_counts());
        let mut jll = Vec::new();
        nb.joint_log_likelihood_counts(&[(0, 1), (2, 1)], &mut jll);
        for (c, &score) in jll.iter().enumerate() {
            let other = 1 - c;
            let comp: Vec<f64> = (0..3)
                .map(|f| p.feature_count[other][f] as f64 + 0.5)
                .collect();
            let total: f64 = comp.iter().sum();
            let expected = -(comp[0] / total).ln() - (comp[2] / total).ln();
            assert_relative_eq!(score, expected, epsilon = 1e-12);
        }
        // Class 0 holds term 0 three times: a document of it leans to class 0.
        assert!(jll[0] > jll[1]);
    }

    #[test]
    fn counts_above_the_class_size_are_valid_only_for_count_models() {
        let p = params(); // class 0 has 2 documents but term 0 occurs 3 times
        assert!(NaiveBayes::with_kind(ModelKind::Multinomial, false, &p).is_ok());
        assert!(NaiveBayes::with_kind(ModelKind::Bernoulli, false, &p).is_err());
    }
}
