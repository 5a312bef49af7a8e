//! The live evaluation: a sliding window of the last labelled predictions,
//! scored by the same [`ConfusionMatrix`] as offline evaluation.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;

use super::ModelProfile;
use crate::classifier::{ConfusionMatrix, Evaluation};

/// Live figures over the feedback window.
#[derive(Debug, Clone, Serialize)]
pub struct LiveQuality {
    /// Labelled predictions in the window.
    pub samples: u64,
    /// The evaluation of the window (`None` while empty).
    pub evaluation: Option<Evaluation>,
}

/// The last `size` (true, predicted) class pairs and their confusion matrix.
pub(super) struct LabelledWindow {
    size: usize,
    pairs: VecDeque<(u16, u16)>,
    /// The model whose classes the pairs index.
    model: Option<Arc<ModelProfile>>,
    matrix: ConfusionMatrix,
}

impl LabelledWindow {
    pub(super) fn new(size: usize) -> Self {
        Self {
            size,
            pairs: VecDeque::new(),
            model: None,
            matrix: ConfusionMatrix::new(0),
        }
    }

    /// Adds one labelled prediction of `model`, dropping the oldest when full.
    pub(super) fn push(&mut self, model: &Arc<ModelProfile>, truth: usize, predicted: usize) {
        // A reload that changes the class list starts a new window.
        if self.model.as_ref().map(|m| &m.classes) != Some(&model.classes) {
            self.pairs.clear();
            self.matrix = ConfusionMatrix::new(model.classes.len());
            self.model = Some(Arc::clone(model));
        }
        if self.pairs.len() >= self.size {
            if let Some((t, p)) = self.pairs.pop_front() {
                self.matrix.remove(t as usize, p as usize);
            }
        }
        self.pairs.push_back((truth as u16, predicted as u16));
        let _ = self.matrix.add(truth, predicted);
    }

    /// The evaluation of the window.
    pub(super) fn quality(&self) -> LiveQuality {
        LiveQuality {
            samples: self.matrix.total(),
            evaluation: self
                .model
                .as_ref()
                .and_then(|m| self.matrix.evaluate(&m.classes).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::model;
    use super::super::FeedbackStore;

    #[test]
    fn window_slides() {
        let s = FeedbackStore::new(100, Duration::from_secs(60), 2, None).unwrap();
        let m = model();
        for truth in ["spam", "ham", "ham"] {
            let id = s.remember(&m, 0, 0.9, None).to_string();
            s.submit(&id, truth).unwrap();
        }
        let q = s.live_quality(0);
        assert_eq!(q.samples, 2);
        assert_eq!(q.evaluation.unwrap().accuracy, 1.0);
    }
}
