//! Probability quality and temperature scaling.
//!
//! The Brier score and the expected calibration error (ECE) say whether
//! predicted probabilities mean what they say. Naive Bayes is notoriously
//! over-confident (its features are not independent), so one temperature
//! `T` can be fitted on held-out joint log likelihoods: calibrated
//! probabilities are `softmax(jll / T)`. Dividing by a positive constant
//! never changes the arg-max, so labels stay exactly scikit-learn's.

/// Bins of top probability for [`expected_calibration_error`].
pub const ECE_BINS: usize = 10;

/// scikit-learn's `brier_score_loss` (`scale_by_half="auto"`): the mean over
/// documents of `Σ_c (p_c − y_c)²`, halved for two classes (so a binary
/// score is the usual `mean (p − y)²` in [0, 1]).
pub fn brier_score(probabilities: &[Vec<f64>], truth: &[usize]) -> f64 {
    let Some(n_classes) = probabilities.first().map(Vec::len) else {
        return 0.0;
    };
    let total: f64 = probabilities
        .iter()
        .zip(truth)
        .map(|(p, &t)| {
            p.iter()
                .enumerate()
                .map(|(c, &v)| {
                    let y = if c == t { 1.0 } else { 0.0 };
                    (v - y) * (v - y)
                })
                .sum::<f64>()
        })
        .sum();
    let scale = if n_classes == 2 { 0.5 } else { 1.0 };
    scale * total / probabilities.len() as f64
}

/// Expected calibration error over [`ECE_BINS`] equal-width bins of the top
/// probability: `Σ_b (n_b / N) · |accuracy_b − mean confidence_b|`, where a
/// document is correct when its arg-max is its true class.
pub fn expected_calibration_error(probabilities: &[Vec<f64>], truth: &[usize]) -> f64 {
    let mut gap = [0.0f64; ECE_BINS];
    for (p, &t) in probabilities.iter().zip(truth) {
        let label = super::argmax(p);
        let confidence = p[label];
        let bin = ((confidence * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        gap[bin] += if label == t { 1.0 } else { 0.0 } - confidence;
    }
    gap.iter().map(|g| g.abs()).sum::<f64>() / probabilities.len().max(1) as f64
}

/// Mean negative log likelihood of the true classes under `softmax(jll / T)`.
pub fn log_loss(jll: &[Vec<f64>], truth: &[usize], temperature: f64) -> f64 {
    let total: f64 = jll
        .iter()
        .zip(truth)
        .map(|(scores, &t)| {
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max) / temperature;
            let sum: f64 = scores.iter().map(|&s| (s / temperature - max).exp()).sum();
            max + sum.ln() - scores[t] / temperature
        })
        .sum();
    total / jll.len().max(1) as f64
}

/// Softmax of `jll / T` per document.
pub fn probabilities(jll: &[Vec<f64>], temperature: Option<f64>) -> Vec<Vec<f64>> {
    let t = temperature.unwrap_or(1.0);
    jll.iter()
        .map(|scores| {
            let mut v: Vec<f64> = scores.iter().map(|s| s / t).collect();
            super::normalize_log_probs(&mut v);
            v.iter_mut().for_each(|x| *x = x.exp());
            v
        })
        .collect()
}

pub use super::params::TEMPERATURE_RANGE;

/// The temperature with minimum [`log_loss`] on held-out joint log
/// likelihoods: golden-section search on `ln T` over [`TEMPERATURE_RANGE`]
/// (the loss is convex in `1/T`, hence unimodal in `ln T`), the range every
/// served temperature must lie in.
pub fn fit_temperature(jll: &[Vec<f64>], truth: &[usize]) -> f64 {
    let f = |u: f64| log_loss(jll, truth, u.exp());
    let inv_phi = (5f64.sqrt() - 1.0) / 2.0;
    let (lo, hi) = (*TEMPERATURE_RANGE.start(), *TEMPERATURE_RANGE.end());
    let (mut a, mut b) = (lo.ln(), hi.ln());
    let mut c = b - inv_phi * (b - a);
    let mut d = a + inv_phi * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    while b - a > 1e-7 {
        if fc <= fd {
            b = d;
            d = c;
            fd = fc;
            c = b - inv_phi * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + inv_phi * (b - a);
            fd = f(d);
        }
    }
    // `exp(ln x)` may round just past the ends.
    ((a + b) / 2.0).exp().clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn brier_matches_hand_computation() {
        let p = vec![vec![0.9, 0.1], vec![0.3, 0.7], vec![0.6, 0.4]];
        let t = [0, 1, 1];
        // binary: (0.1² + 0.3² + 0.6²) / 3
        assert_relative_eq!(
            brier_score(&p, &t),
            (0.01 + 0.09 + 0.36) / 3.0,
            epsilon = 1e-12
        );
        let p3 = vec![vec![0.5, 0.25, 0.25]];
        assert_relative_eq!(
            brier_score(&p3, &[1]),
            0.25 + 0.5625 + 0.0625,
            epsilon = 1e-12
        );
    }

    #[test]
    fn ece_bins_top_probability() {
        // Two documents at 0.95 (bin 9), one right, one wrong: gap |1 − 1.9| = 0.9;
        // one at 0.65 (bin 6), right: gap 0.35. ECE = (0.9 + 0.35) / 3.
        let p = vec![vec![0.95, 0.05], vec![0.05, 0.95], vec![0.65, 0.35]];
        let t = [0, 0, 0];
        assert_relative_eq!(
            expected_calibration_error(&p, &t),
            (0.9 + 0.35) / 3.0,
            epsilon = 1e-12
        );
        // Certain and right: perfectly calibrated.
        assert_eq!(expected_calibration_error(&[vec![1.0, 0.0]], &[0]), 0.0);
    }

    #[test]
    fn temperature_recovers_the_scale_of_overconfident_scores() {
        // Scores drawn as true log-odds × 20: the fitted T should be near 20.
        let mut jll = Vec::new();
        let mut truth = Vec::new();
        let mut state = 12345u64;
        for _ in 0..4000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let logit = (u - 0.5) * 8.0;
            let p1 = 1.0 / (1.0 + (-logit).exp());
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (state >> 11) as f64 / (1u64 << 53) as f64;
            truth.push(usize::from(v < p1));
            jll.push(vec![0.0, logit * 20.0]);
        }
        let t = fit_temperature(&jll, &truth);
        assert!((17.0..23.0).contains(&t), "T = {t}");
        assert!(log_loss(&jll, &truth, t) < log_loss(&jll, &truth, 1.0));
        let before = expected_calibration_error(&probabilities(&jll, None), &truth);
        let after = expected_calibration_error(&probabilities(&jll, Some(t)), &truth);
        assert!(after < before / 2.0, "ECE {before} -> {after}");
    }
}
