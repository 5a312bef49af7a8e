//! Model-quality evaluation: F1 macro, balanced accuracy, accuracy, per-class
//! scores and the confusion matrix, with scikit-learn's definitions
//! (`zero_division=0`; averages over the classes present in `y_true ∪ y_pred`,
//! balanced accuracy over the classes present in `y_true`).
//!
//! Not to be confused with Prometheus metrics, which live in `server::metrics`.

use serde::{Deserialize, Serialize};

/// Per-class precision, recall, F1 and support.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassScores {
    /// The class label.
    pub label: String,
    /// TP / (TP + FP), 0 when nothing was predicted as this class.
    pub precision: f64,
    /// TP / (TP + FN), 0 when the class has no true documents.
    pub recall: f64,
    /// Harmonic mean of precision and recall, 0 when both are 0.
    pub f1: f64,
    /// True documents of this class.
    pub support: u64,
}

/// The outcome of comparing predictions with true labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// Documents evaluated.
    pub documents: u64,
    /// Unweighted mean of per-class F1 (the main metric).
    pub f1_macro: f64,
    /// Mean per-class recall.
    pub balanced_accuracy: f64,
    /// Share of documents predicted correctly.
    pub accuracy: f64,
    /// Scores for every class of the model.
    pub per_class: Vec<ClassScores>,
    /// `confusion_matrix[true][predicted]`, rows and columns in class order.
    pub confusion_matrix: Vec<Vec<u64>>,
    /// Brier score of the served probabilities (calibrated when the model
    /// has a temperature); absent in schema-1 artifacts and live figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brier_score: Option<f64>,
    /// Expected calibration error (10 bins of top probability) of the
    /// served probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ece: Option<f64>,
    /// Brier score before calibration (only for a calibrated model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brier_score_uncalibrated: Option<f64>,
    /// ECE before calibration (only for a calibrated model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ece_uncalibrated: Option<f64>,
}

/// Why an evaluation cannot be computed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EvaluationError {
    /// Nothing to evaluate.
    #[error("no documents to evaluate")]
    Empty,
    /// A label index is outside the class list.
    #[error("label index {0} is out of range for {1} classes")]
    LabelOutOfRange(usize, usize),
    /// Parallel arrays differ in length.
    #[error("{0} true labels but {1} predictions")]
    LengthMismatch(usize, usize),
}

/// A running confusion matrix; evaluation is derived from it, so the offline
/// evaluation and the live (feedback) evaluation share one implementation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionMatrix {
    counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    /// An empty matrix for `n_classes` classes.
    pub fn new(n_classes: usize) -> Self {
        Self {
            counts: vec![vec![0; n_classes]; n_classes],
        }
    }

    /// A matrix of counts `[true][predicted]` (a square; rows of another
    /// length are cut or padded with zeros).
    pub fn from_counts(mut counts: Vec<Vec<u64>>) -> Self {
        let n = counts.len();
        for row in &mut counts {
            row.resize(n, 0);
        }
        Self { counts }
    }

    /// Builds a matrix from parallel label-index slices.
    pub fn from_labels(
        y_true: &[usize],
        y_pred: &[usize],
        n_classes: usize,
    ) -> Result<Self, EvaluationError> {
        if y_true.len() != y_pred.len() {
            return Err(EvaluationError::LengthMismatch(y_true.len(), y_pred.len()));
        }
        let mut m = Self::new(n_classes);
        for (&t, &p) in y_true.iter().zip(y_pred) {
            m.add(t, p)?;
        }
        Ok(m)
    }

    /// Records one (true, predicted) pair.
    pub fn add(&mut self, truth: usize, predicted: usize) -> Result<(), EvaluationError> {
        let n = self.counts.len();
        for i in [truth, predicted] {
            if i >= n {
                return Err(EvaluationError::LabelOutOfRange(i, n));
            }
        }
        self.counts[truth][predicted] += 1;
        Ok(())
    }

    /// Removes one previously recorded pair (for sliding windows).
    pub fn remove(&mut self, truth: usize, predicted: usize) {
        let cell = &mut self.counts[truth][predicted];
        *cell = cell.saturating_sub(1);
    }

    /// Total pairs recorded.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// The raw counts, `[true][predicted]`.
    pub fn counts(&self) -> &[Vec<u64>] {
        &self.counts
    }

    /// Scores this matrix; `labels` names the classes in index order.
    pub fn evaluate(&self, labels: &[String]) -> Result<Evaluation, EvaluationError> {
        let n = self.counts.len();
        let total = self.total();
        if total == 0 {
            return Err(EvaluationError::Empty);
        }
        let mut per_class = Vec::with_capacity(n);
        let (mut f1_sum, mut f1_n) = (0.0, 0usize);
        let (mut recall_sum, mut recall_n) = (0.0, 0usize);
        let mut correct = 0u64;
        for c in 0..n {
            let tp = self.counts[c][c];
            let support: u64 = self.counts[c].iter().sum();
            let predicted: u64 = self.counts.iter().map(|row| row[c]).sum();
            correct += tp;
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            if support > 0 || predicted > 0 {
                f1_sum += f1;
                f1_n += 1;
            }
            if support > 0 {
                recall_sum += recall;
                recall_n += 1;
            }
            per_class.push(ClassScores {
                label: labels.get(c).cloned().unwrap_or_else(|| c.to_string()),
                precision,
                recall,
                f1,
                support,
            });
        }
        Ok(Evaluation {
            documents: total,
            f1_macro: f1_sum / f1_n as f64,
            balanced_accuracy: recall_sum / recall_n as f64,
            accuracy: correct as f64 / total as f64,
            per_class,
            confusion_matrix: self.counts.clone(),
            brier_score: None,
            ece: None,
            brier_score_uncalibrated: None,
            ece_uncalibrated: None,
        })
    }
}

/// Evaluates predictions against true labels (class indices into `labels`).
pub fn evaluate(
    y_true: &[usize],
    y_pred: &[usize],
    labels: &[String],
) -> Result<Evaluation, EvaluationError> {
    ConfusionMatrix::from_labels(y_true, y_pred, labels.len())?.evaluate(labels)
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl Evaluation {
    /// A fixed-width table for terminals.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let width = self
            .per_class
            .iter()
            .map(|c| c.label.len())
            .max()
            .unwrap_or(5)
            .max(9);
        let _ = writeln!(
            s,
            "{:>width$}  {:>9}  {:>9}  {:>9}  {:>9}",
            "class", "precision", "recall", "f1", "support"
        );
        for c in &self.per_class {
            let _ = writeln!(
                s,
                "{:>width$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>9}",
                c.label, c.precision, c.recall, c.f1, c.support
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "{:>width$}  {:>9.4}", "F1 macro", self.f1_macro);
        let _ = writeln!(
            s,
            "{:>width$}  {:>9.4}",
            "bal. acc.", self.balanced_accuracy
        );
        let _ = writeln!(s, "{:>width$}  {:>9.4}", "accuracy", self.accuracy);
        let _ = writeln!(s, "{:>width$}  {:>9}", "documents", self.documents);
        for (name, value, before) in [
            ("Brier", self.brier_score, self.brier_score_uncalibrated),
            ("ECE", self.ece, self.ece_uncalibrated),
        ] {
            match (value, before) {
                (Some(v), Some(b)) => {
                    let _ = writeln!(s, "{name:>width$}  {v:>9.4}  (uncalibrated {b:.4})");
                }
                (Some(v), None) => {
                    let _ = writeln!(s, "{name:>width$}  {v:>9.4}");
                }
                _ => {}
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "confusion matrix (rows: true, columns: predicted)");
        let _ = write!(s, "{:>width$}", "");
        for c in &self.per_class {
            let _ = write!(s, "  {:>9}", c.label);
        }
        let _ = writeln!(s);
        for (c, row) in self.per_class.iter().zip(&self.confusion_matrix) {
            let _ = write!(s, "{:>width$}", c.label);
            for v in row {
                let _ = write!(s, "  {v:>9}");
            }
            let _ = writeln!(s);
        }
        s
    }

    /// True when every number is finite and within [0, 1] and the shapes agree.
    pub fn is_consistent(&self) -> bool {
        let n = self.per_class.len();
        let unit = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
        // A multi-class Brier score lies in [0, 2].
        let brier = |x: &Option<f64>| x.is_none_or(|x| x.is_finite() && (0.0..=2.0).contains(&x));
        let ece = |x: &Option<f64>| x.is_none_or(unit);
        brier(&self.brier_score)
            && brier(&self.brier_score_uncalibrated)
            && ece(&self.ece)
            && ece(&self.ece_uncalibrated)
            && unit(self.f1_macro)
            && unit(self.balanced_accuracy)
            && unit(self.accuracy)
            && self
                .per_class
                .iter()
                .all(|c| unit(c.precision) && unit(c.recall) && unit(c.f1))
            && self.confusion_matrix.len() == n
            && self.confusion_matrix.iter().all(|r| r.len() == n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn binary_case_computed_by_hand() {
        // true:  0 0 0 0 1 1 1 1 1 1
        // pred:  0 0 0 1 1 1 1 1 0 0
        // class 0: TP 3, FN 1, FP 2 -> P 3/5, R 3/4, F1 2/3
        // class 1: TP 4, FN 2, FP 1 -> P 4/5, R 4/6, F1 8/11
        let t = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
        let p = [0, 0, 0, 1, 1, 1, 1, 1, 0, 0];
        let e = evaluate(&t, &p, &labels(&["ham", "spam"])).unwrap();
        assert_eq!(e.confusion_matrix, vec![vec![3, 1], vec![2, 4]]);
        assert_relative_eq!(e.per_class[0].precision, 0.6);
        assert_relative_eq!(e.per_class[0].recall, 0.75);
        assert_relative_eq!(e.per_class[0].f1, 2.0 / 3.0, epsilon = 1e-12);
        assert_relative_eq!(e.per_class[1].f1, 8.0 / 11.0, epsilon = 1e-12);
        assert_relative_eq!(e.f1_macro, (2.0 / 3.0 + 8.0 / 11.0) / 2.0, epsilon = 1e-12);
        assert_relative_eq!(
            e.balanced_accuracy,
            (0.75 + 4.0 / 6.0) / 2.0,
            epsilon = 1e-12
        );
        assert_relative_eq!(e.accuracy, 0.7);
        assert_eq!(e.per_class[1].support, 6);
        assert!(e.is_consistent());
    }

    #[test]
    fn three_classes_with_a_never_predicted_class() {
        // Class 2 is true twice but never predicted: precision 0 by zero_division=0.
        let t = [0, 1, 2, 2];
        let p = [0, 1, 0, 1];
        let e = evaluate(&t, &p, &labels(&["a", "b", "c"])).unwrap();
        assert_eq!(e.per_class[2].precision, 0.0);
        assert_eq!(e.per_class[2].f1, 0.0);
        // a: P 1/2 R 1 F1 2/3; b: same; c: 0.
        assert_relative_eq!(e.f1_macro, (2.0 / 3.0 * 2.0) / 3.0, epsilon = 1e-12);
        assert_relative_eq!(e.balanced_accuracy, 2.0 / 3.0, epsilon = 1e-12);
    }

    #[test]
    fn classes_absent_from_truth_and_predictions_are_not_averaged() {
        let t = [0, 1];
        let p = [0, 1];
        let e = evaluate(&t, &p, &labels(&["a", "b", "unused"])).unwrap();
        assert_eq!(e.f1_macro, 1.0);
        assert_eq!(e.balanced_accuracy, 1.0);
    }

    #[test]
    fn errors_on_empty_mismatched_and_out_of_range() {
        let l = labels(&["a", "b"]);
        assert_eq!(evaluate(&[], &[], &l).unwrap_err(), EvaluationError::Empty);
        assert_eq!(
            evaluate(&[0], &[0, 1], &l).unwrap_err(),
            EvaluationError::LengthMismatch(1, 2)
        );
        assert_eq!(
            evaluate(&[0], &[2], &l).unwrap_err(),
            EvaluationError::LabelOutOfRange(2, 2)
        );
    }

    #[test]
    fn remove_undoes_add() {
        let mut m = ConfusionMatrix::new(2);
        m.add(0, 1).unwrap();
        m.add(1, 1).unwrap();
        m.remove(0, 1);
        assert_eq!(m.counts(), &[vec![0, 0], vec![0, 1]]);
        assert_eq!(m.total(), 1);
    }
}
