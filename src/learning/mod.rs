//! Learning in place: a challenger made of a champion's sufficient
//! statistics (schema 3, [`Artifact::with_statistics`]) plus the labelled
//! examples learned since, minus those forgotten.
//!
//! Counts add and subtract exactly, and the challenger is pruned and
//! fitted by the code `train` fits with ([`fit_counts`]), so learning a set
//! of examples gives the model `train` would give on the champion's rows
//! and those examples, and forgetting them gives the champion back. A
//! champion's calibration temperature is kept as it is (a temperature is
//! fitted on documents, which the statistics do not hold).
//!
//! Only what was learned can be forgotten: each learned example is kept in
//! a ledger by a hash of its label and text, so a forget of anything else
//! (including a row of the champion's own corpus, whose text is not kept)
//! is refused and changes nothing.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::artifact::{Artifact, Calibration, ModelMeta, TrainingParams};
use crate::classifier::{
    Classifier, CountSettings, Counter, Counts, CountsError, GridPoint, NaiveBayes, NbParameters,
    Vocabulary,
};
use crate::dataset::Dataset;
use crate::training::counts::refit_counts;
use crate::training::{RunOptions, TrainError, TrainOptions};
use crate::tuning::fit_counts;

/// One labelled example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The document.
    pub text: String,
    /// Its class.
    pub label: String,
}

impl Example {
    /// An example of `label`.
    pub fn new(text: impl Into<String>, label: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            label: label.into(),
        }
    }

    /// What the ledger knows it by: sha256 of the label's length (8 bytes
    /// LE), the label and the text, so no two examples share a key by
    /// moving bytes between label and text.
    fn key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((self.label.len() as u64).to_le_bytes());
        h.update(self.label.as_bytes());
        h.update(self.text.as_bytes());
        h.finalize().into()
    }
}

/// Why a learn or forget was refused (nothing changed) or the challenger
/// cannot be fitted.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// The champion's artifact carries no statistics.
    #[error(
        "the model's artifact has no statistics (it predates schema 3): it cannot learn in \
         place; retrain it with `nbserve train --statistics`"
    )]
    NoStatistics,
    /// An example to forget was never learned (or is already forgotten).
    #[error("example {index} was never learned (or was already forgotten); nothing was changed")]
    NotLearned {
        /// Its position in the batch.
        index: usize,
    },
    /// A label outside the champion's classes, with new classes not allowed.
    #[error(
        "example {index} has a label that is not one of the model's classes; nothing was changed"
    )]
    UnknownLabel {
        /// Its position in the batch.
        index: usize,
    },
    /// The statistics do not fit to the model they were stored with.
    #[error("the statistics do not reproduce the model: {0}")]
    Mismatch(String),
    /// Counts that cannot be combined (a sum past 2^64).
    #[error(transparent)]
    Counts(#[from] CountsError),
    /// Fitting or evaluating the challenger failed.
    #[error(transparent)]
    Fit(#[from] TrainError),
}

/// What the challenger has taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Examples learned, in total.
    pub learned: u64,
    /// Examples forgotten, in total.
    pub forgotten: u64,
}

/// A champion's statistics and what was learned and forgotten since.
///
/// Learning and forgetting are transactional: a refused batch changes
/// nothing. Cloning is cheap for the champion's part (shared).
#[derive(Debug, Clone)]
pub struct Learner {
    base: Arc<Counts>,
    /// Net learned: the counts of the examples in `ledger`.
    learned: Counts,
    /// Examples learned and not forgotten, by [`Example::key`], with their
    /// multiplicity.
    ledger: HashMap<[u8; 32], u64>,
    /// The champion's classes.
    classes: Vec<String>,
    allow_new_classes: bool,
    point: GridPoint,
    training: TrainingParams,
    name: String,
    version: String,
    calibration: Option<Calibration>,
    tally: Tally,
}

impl Learner {
    /// A learner on top of a loaded champion (its description and decoded
    /// statistics). `allow_new_classes`: labels outside the champion's
    /// classes are learned as new classes instead of refused.
    pub fn new(
        meta: &ModelMeta,
        statistics: Option<Arc<Counts>>,
        allow_new_classes: bool,
    ) -> Result<Self, LearnError> {
        let base = statistics.ok_or(LearnError::NoStatistics)?;
        let training = meta.training.clone();
        let options = training.vectorizer.options();
        let point = GridPoint {
            model: training.model_kind(),
            binary: training.vectorizer.binary,
            alpha: training.alpha,
            min_df: options.min_df,
            max_df: options.max_df,
            max_features: options.max_features,
        };
        let learned = Counts::empty(CountSettings {
            folds: None,
            ..base.settings().clone()
        });
        Ok(Self {
            base,
            learned,
            ledger: HashMap::new(),
            classes: meta.classes.clone(),
            allow_new_classes,
            point,
            training,
            name: meta.model.name.clone(),
            version: meta.model.version.clone(),
            calibration: meta.calibration.clone(),
            tally: Tally::default(),
        })
    }

    /// A learner on top of `champion`, after checking that its statistics
    /// prune and fit to exactly its vocabulary and parameters.
    pub fn from_artifact(champion: &Artifact, allow_new_classes: bool) -> Result<Self, LearnError> {
        let loaded = champion
            .clone()
            .into_loaded()
            .map_err(|e| LearnError::Mismatch(e.to_string()))?;
        let learner = Self::new(&loaded.meta, loaded.statistics, allow_new_classes)?;
        let (vocabulary, parameters) = learner.fit()?;
        if vocabulary.len() != champion.vocabulary.len()
            || vocabulary
                .iter()
                .zip(&champion.vocabulary)
                .any(|(a, b)| a != b)
        {
            return Err(LearnError::Mismatch("the vocabulary differs".into()));
        }
        if parameters != champion.parameters {
            return Err(LearnError::Mismatch("the fitted counts differ".into()));
        }
        Ok(learner)
    }

    /// What was learned and forgotten.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Examples learned and not forgotten.
    pub fn net_examples(&self) -> u64 {
        self.ledger.values().sum()
    }

    /// Bytes the learned part holds beyond the champion's statistics (the
    /// learned counts and the ledger), for a byte budget.
    pub fn learned_bytes(&self) -> u64 {
        self.learned.heap_bytes() + self.ledger.capacity() as u64 * (32 + 8 + 1)
    }

    /// Counts `examples` with the champion's settings, refusing labels
    /// outside its classes unless new classes are allowed.
    fn count(&self, examples: &[Example]) -> Result<Counts, LearnError> {
        let mut counter = Counter::new(self.learned.settings().clone());
        for (index, e) in examples.iter().enumerate() {
            if !self.allow_new_classes && !self.classes.contains(&e.label) {
                return Err(LearnError::UnknownLabel { index });
            }
            counter.add(&e.text, &e.label, 0)?;
        }
        Ok(counter.finish(Vec::new()))
    }

    /// Adds `examples` (all or none).
    pub fn learn(&mut self, examples: &[Example]) -> Result<(), LearnError> {
        let batch = self.count(examples)?;
        // O(what was learned), not O(the champion's vocabulary): a sum
        // past 2^64 with the champion's counts would need 2^64 examples.
        self.learned = self.learned.merge(&batch)?;
        for e in examples {
            *self.ledger.entry(e.key()).or_insert(0) += 1;
        }
        self.tally.learned += examples.len() as u64;
        Ok(())
    }

    /// Subtracts `examples` (all or none): each must have been learned, as
    /// many times as it appears, and not forgotten since.
    pub fn forget(&mut self, examples: &[Example]) -> Result<(), LearnError> {
        let mut wanted: HashMap<[u8; 32], u64> = HashMap::new();
        for (index, e) in examples.iter().enumerate() {
            let key = e.key();
            let n = wanted.entry(key).or_insert(0);
            *n += 1;
            if self.ledger.get(&key).copied().unwrap_or(0) < *n {
                return Err(LearnError::NotLearned { index });
            }
        }
        let mut counter = Counter::new(self.learned.settings().clone());
        for e in examples {
            counter.add(&e.text, &e.label, 0)?;
        }
        // Within what was learned, by the ledger: this cannot underflow.
        self.learned = self.learned.subtract(&counter.finish(Vec::new()))?;
        for (key, n) in wanted {
            let left = self.ledger.get_mut(&key).expect("checked above");
            *left -= n;
            if *left == 0 {
                self.ledger.remove(&key);
            }
        }
        self.tally.forgotten += examples.len() as u64;
        Ok(())
    }

    /// The challenger's statistics: the champion's plus the net learned.
    pub fn total(&self) -> Result<Counts, LearnError> {
        Ok(self.base.merge(&self.learned)?)
    }

    /// Prunes and fits the challenger as `train` would on the same rows.
    pub fn fit(&self) -> Result<(Vocabulary, NbParameters), LearnError> {
        Ok(fit_counts(&self.total()?, &self.point).map_err(TrainError::from)?)
    }

    /// The challenger as a scorer (the champion's temperature kept).
    pub fn classifier(&self) -> Result<Classifier, LearnError> {
        let total = self.total()?;
        let (vocabulary, parameters) = fit_counts(&total, &self.point).map_err(TrainError::from)?;
        let nb = NaiveBayes::with_kind(self.point.model, self.point.binary, &parameters)
            .map_err(TrainError::from)?;
        Ok(Classifier::new(total.classes().to_vec(), vocabulary, nb)
            .map_err(TrainError::from)?
            .with_temperature(self.calibration.as_ref().map(|c| c.temperature)))
    }

    /// The challenger as an ordinary artifact, evaluated on `test`, with
    /// its statistics (schema 3), so it can be served and learn in turn.
    /// Its version is the champion's with what was learned and forgotten.
    pub fn artifact(
        &self,
        test: &Dataset,
        created_at: DateTime<Utc>,
    ) -> Result<Artifact, LearnError> {
        let total = self.total()?;
        let options = TrainOptions {
            model: self.point.model,
            vectorizer: self.point.vectorizer(),
            calibrate_folds: None,
            alpha: self.point.alpha,
            run: RunOptions {
                test_size: self.training.test_size.unwrap_or(0.2),
                seed: self.training.seed.unwrap_or(0),
                name: self.name.clone(),
                version: Some(format!(
                    "{}+learned.{}.forgot.{}",
                    self.version, self.tally.learned, self.tally.forgotten
                )),
                created_at,
            },
        };
        let artifact = refit_counts(&total, test, &options, self.calibration.clone())?;
        Ok(artifact.with_statistics(&total))
    }
}
