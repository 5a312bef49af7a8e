//! Seeded stratified train/test split.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Why a split cannot be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SplitError {
    /// The test share must leave documents on both sides.
    #[error("test size must be a number strictly between 0 and 1, got {0}")]
    InvalidTestSize(f64),
    /// Every class needs a document on each side of the split.
    #[error("class {0:?} has {1} document(s); a stratified split needs at least 2 per class")]
    ClassTooSmall(String, usize),
}

/// Indices of the training and test documents, each in ascending order.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Training document indices.
    pub train: Vec<usize>,
    /// Test document indices.
    pub test: Vec<usize>,
}

/// Splits documents so each class keeps its share on both sides.
///
/// Per class, `round(test_size × n)` documents (at least one, at most n − 1)
/// go to the test side, chosen by a ChaCha8 shuffle seeded with `seed`, so the
/// same data and seed always give the same split on any platform.
pub fn stratified_split(
    labels: &[usize],
    class_names: &[String],
    test_size: f64,
    seed: u64,
) -> Result<Split, SplitError> {
    if !(test_size.is_finite() && test_size > 0.0 && test_size < 1.0) {
        return Err(SplitError::InvalidTestSize(test_size));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); class_names.len()];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (c, mut members) in by_class.into_iter().enumerate() {
        let n = members.len();
        if n < 2 {
            return Err(SplitError::ClassTooSmall(class_names[c].clone(), n));
        }
        members.shuffle(&mut rng);
        let n_test = ((test_size * n as f64).round() as usize).clamp(1, n - 1);
        test.extend_from_slice(&members[..n_test]);
        train.extend_from_slice(&members[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok(Split { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn keeps_class_shares_and_partitions_all_documents() {
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i % 4 == 0)).collect();
        let s = stratified_split(&labels, &names(), 0.2, 42).unwrap();
        assert_eq!(s.train.len() + s.test.len(), 100);
        let test_b = s.test.iter().filter(|&&i| labels[i] == 1).count();
        assert_eq!(test_b, 5); // 20% of 25
        assert_eq!(s.test.len(), 20);
        let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let labels: Vec<usize> = (0..200).map(|i| i % 2).collect();
        let a = stratified_split(&labels, &names(), 0.25, 7).unwrap();
        let b = stratified_split(&labels, &names(), 0.25, 7).unwrap();
        let c = stratified_split(&labels, &names(), 0.25, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn rejects_bad_sizes_and_tiny_classes() {
        let labels = vec![0, 0, 1, 1];
        for bad in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(matches!(
                stratified_split(&labels, &names(), bad, 1),
                Err(SplitError::InvalidTestSize(_))
            ));
        }
        assert_eq!(
            stratified_split(&[0, 0, 1], &names(), 0.5, 1).unwrap_err(),
            SplitError::ClassTooSmall("b".into(), 1)
        );
    }
}
