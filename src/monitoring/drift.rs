//! Label-free drift signals over the most recent predictions: the share of
//! each predicted label against the training prior, mean confidence, mean
//! out-of-vocabulary share.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;

use super::ModelProfile;

/// Label-free drift signals over recent predictions.
#[derive(Debug, Clone, Serialize)]
pub struct DriftSignals {
    /// Predictions in the recent window.
    pub recent_predictions: u64,
    /// Share of each label among them.
    pub predicted_label_share: Vec<(String, f64)>,
    /// Jensen–Shannon divergence (base 2, in [0, 1]) vs. the training prior.
    pub label_js_divergence: f64,
    /// Mean probability of the predicted class.
    pub mean_confidence: f64,
    /// Mean out-of-vocabulary share (documents with tokens only).
    pub mean_oov_ratio: f64,
}

struct Recent {
    label: u16,
    confidence: f64,
    oov: Option<f64>,
}

/// The last `size` predictions of one model, with running sums.
pub(super) struct DriftWindow {
    size: usize,
    recent: VecDeque<Recent>,
    /// The model of the predictions in `recent`.
    model: Option<Arc<ModelProfile>>,
    label_counts: Vec<u64>,
    confidence_sum: f64,
    oov_sum: f64,
    oov_n: u64,
}

impl DriftWindow {
    pub(super) fn new(size: usize) -> Self {
        Self {
            size,
            recent: VecDeque::new(),
            model: None,
            label_counts: Vec::new(),
            confidence_sum: 0.0,
            oov_sum: 0.0,
            oov_n: 0,
        }
    }

    /// Adds one prediction of `model`, dropping the oldest when full; a
    /// prediction by another model starts the window afresh.
    pub(super) fn push(
        &mut self,
        model: &Arc<ModelProfile>,
        predicted: usize,
        confidence: f64,
        oov: Option<f64>,
    ) {
        // A NaN would stay in the running sum for good (NaN − NaN is NaN).
        let confidence = if confidence.is_finite() {
            confidence
        } else {
            0.0
        };
        if self.model.as_ref() != Some(model) {
            *self = Self::new(self.size);
            self.label_counts = vec![0; model.classes.len()];
            self.model = Some(Arc::clone(model));
        }
        if self.recent.len() >= self.size {
            if let Some(old) = self.recent.pop_front() {
                self.label_counts[old.label as usize] -= 1;
                self.confidence_sum -= old.confidence;
                if let Some(o) = old.oov {
                    self.oov_sum -= o;
                    self.oov_n -= 1;
                }
            }
        }
        self.label_counts[predicted] += 1;
        self.confidence_sum += confidence;
        if let Some(o) = oov {
            self.oov_sum += o;
            self.oov_n += 1;
        }
        self.recent.push_back(Recent {
            label: predicted as u16,
            confidence,
            oov,
        });
    }

    /// The signals, `None` before the first prediction.
    pub(super) fn signals(&self) -> Option<DriftSignals> {
        let model = self.model.as_ref()?;
        let n = self.recent.len() as u64;
        if n == 0 {
            return None;
        }
        let shares: Vec<f64> = self
            .label_counts
            .iter()
            .map(|&c| c as f64 / n as f64)
            .collect();
        Some(DriftSignals {
            recent_predictions: n,
            label_js_divergence: js_divergence(&shares, &model.prior),
            predicted_label_share: model.classes.iter().cloned().zip(shares).collect(),
            mean_confidence: self.confidence_sum / n as f64,
            mean_oov_ratio: if self.oov_n == 0 {
                0.0
            } else {
                self.oov_sum / self.oov_n as f64
            },
        })
    }
}

/// Jensen–Shannon divergence in bits (0 = same distribution, 1 = disjoint).
pub fn js_divergence(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(&x, _)| x > 0.0)
            .map(|(&x, &y)| x * (x / y).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| 0.5 * (a + b)).collect();
    (0.5 * kl(p, &m) + 0.5 * kl(q, &m)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::model;
    use super::super::FeedbackStore;
    use super::*;

    #[test]
    fn drift_is_zero_at_prior_and_positive_away_from_it() {
        assert!(js_divergence(&[0.7, 0.3], &[0.7, 0.3]).abs() < 1e-12);
        assert!((js_divergence(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        let s = FeedbackStore::new(100, Duration::from_secs(60), 10, None).unwrap();
        let m = model();
        for _ in 0..10 {
            s.remember(&m, 1, 0.8, Some(0.5));
        }
        let d = s.drift(0).unwrap();
        assert!(d.label_js_divergence > 0.1);
        assert!((d.mean_confidence - 0.8).abs() < 1e-12);
        assert!((d.mean_oov_ratio - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_non_finite_confidence_does_not_poison_the_mean() {
        let s = FeedbackStore::new(100, Duration::from_secs(60), 2, None).unwrap();
        let m = model();
        s.remember(&m, 1, f64::NAN, None);
        s.remember(&m, 1, 0.5, None);
        assert_eq!(s.drift(0).unwrap().mean_confidence, 0.25);
        // Once the bad one leaves the window, the mean is exact again.
        s.remember(&m, 1, 0.5, None);
        assert_eq!(s.drift(0).unwrap().mean_confidence, 0.5);
    }
}
