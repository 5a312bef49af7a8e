//! The challenger beside each served model: the champion's statistics plus
//! what `POST /learn` added and `POST /forget` removed ([`Learner`]). Every
//! model of the repository has its own (in its [`ModelEntry`]), holding its
//! own share of `models.max_total_bytes`.
//!
//! [`ModelEntry`]: crate::server::repository::ModelEntry
//!
//! Writers (learn, forget) are serialised by one lock and build the whole
//! new challenger (counts, refit scorer) before publishing it with one
//! atomic swap; readers only load the published snapshot, so they take no
//! lock and never see a half-applied batch. A challenger belongs to the
//! champion it was built on: when the served model changes (reload, poll,
//! promotion), it is reset as the new champion is served, with a log line
//! and `nbserve_challenger_resets_total` (what was learned on the old one
//! is dropped; the learning log keeps it).
//!
//! Shadow scoring tags each served prediction with the challenger's class
//! ([`super::shadow`]), so labelled feedback scores both models live.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};

use crate::artifact::ModelMeta;
use crate::classifier::Classifier;
use crate::learning::{Example, LearnError, Learner, Tally};
use crate::server::learning_log;
use crate::server::loader::ServingModel;
use crate::server::repository::Budget;
use crate::server::shadow::{LiveComparison, LiveWindow, ShadowTag};
use crate::settings::LearningSettings;

/// What readers see of the challenger: one consistent snapshot.
pub struct ChallengerView {
    /// The refit scorer.
    pub classifier: Classifier,
    /// Learned and forgotten so far.
    pub tally: Tally,
    /// Examples learned and not forgotten.
    pub net_examples: u64,
    /// Bytes the learned part holds.
    pub learned_bytes: u64,
    /// The champion's name, version and checksum.
    pub champion: (String, String, String),
    /// When this snapshot was published.
    pub updated_at: DateTime<Utc>,
    /// Which publication this is (every learn or forget makes one).
    pub generation: u64,
    /// The shadow tag of each of its classes.
    tags: Vec<ShadowTag>,
}

/// A learner and the champion it belongs to.
struct Writer {
    learner: Learner,
    champion_checksum: String,
}

/// A learner on `champion`, with what the learning log holds for it.
fn new_learner(
    settings: &LearningSettings,
    champion: &ServingModel,
) -> Result<Learner, LearnError> {
    let meta = &champion.loaded.meta;
    let mut learner = Learner::new(
        meta,
        champion.loaded.statistics.clone(),
        settings.allow_new_classes,
    )?;
    if let Some(path) = &settings.log_path {
        let applied = learning_log::replay(path, &meta.checksum, &mut learner);
        if applied > 0 {
            tracing::info!(
                changes = applied,
                learned = learner.tally().learned,
                forgotten = learner.tally().forgotten,
                "challenger replayed from the learning log"
            );
        }
    }
    Ok(learner)
}

/// Bytes a challenger holds of `models.max_total_bytes`: its learned part
/// and its scorer (vocabulary and tables, estimated as a served model's);
/// the champion's statistics it learns on are the champion's.
fn held_bytes(learner: &Learner, classifier: &Classifier) -> u64 {
    let vocabulary = classifier.vocabulary();
    let terms = vocabulary.len() as u64;
    let tables = terms
        .saturating_mul(classifier.classes().len() as u64)
        .saturating_mul(8)
        .saturating_add(terms / 8);
    learner
        .learned_bytes()
        .saturating_add(vocabulary.heap_bytes() as u64)
        .saturating_add(tables)
}

/// A learn or forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add the examples.
    Learn,
    /// Subtract them.
    Forget,
}

/// Why a change was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum ChallengerError {
    /// The learner refused.
    #[error(transparent)]
    Learn(#[from] LearnError),
    /// The learning log could not take the change.
    #[error("the learning log cannot take the change right now; nothing was changed")]
    Log,
    /// The challenger would not fit beside the served models in
    /// `models.max_total_bytes`.
    #[error("the challenger would hold {needed} bytes (its scorer and learned counts), more than the {available} bytes models.max_total_bytes leaves beside the served models; forget examples, or promote or reset it")]
    OverBudget {
        /// Bytes it would hold.
        needed: u64,
        /// What the models leave.
        available: u64,
    },
    /// The learned part would pass `learning.max_bytes`.
    #[error("the challenger would hold {needed} bytes of learned counts, over learning.max_bytes ({max}); forget examples, or promote or reset it")]
    Full {
        /// Bytes after the change.
        needed: u64,
        /// The budget.
        max: u64,
    },
}

/// The challenger of one served model.
pub struct Challenger {
    /// Its model's slot: where it holds its bytes in `budget`.
    slot: usize,
    /// The repository's memory budget.
    budget: Arc<Budget>,
    writer: tokio::sync::Mutex<Option<Writer>>,
    view: ArcSwapOption<ChallengerView>,
    /// Predictions shadow-scored by the challenger of the current champion.
    scored: AtomicU64,
    /// Those where it chose the champion's class.
    agreed: AtomicU64,
    /// Publications so far.
    generations: AtomicU64,
    /// Challengers dropped because their champion was replaced.
    resets: AtomicU64,
    /// Both models' live quality on labelled shadow-scored predictions.
    live: std::sync::Mutex<LiveWindow>,
    /// The challenger's holdout F1 macro, by generation: computed once per
    /// generation (a holdout pass is milliseconds to seconds).
    holdout: tokio::sync::Mutex<Option<(u64, f64)>>,
    /// What `learning.auto_promote` remembers.
    pub auto: super::auto_promote::AutoPromote,
}

/// How often the challenger agreed with the champion on served predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// Predictions scored by both.
    pub scored: u64,
    /// Predictions where both chose the same class.
    pub agreed: u64,
}

impl Challenger {
    /// No challenger yet for the model in `slot`, whose bytes will be held
    /// in `budget`.
    pub fn new(slot: usize, budget: Arc<Budget>) -> Self {
        Self {
            slot,
            budget,
            writer: Default::default(),
            view: Default::default(),
            scored: Default::default(),
            agreed: Default::default(),
            generations: Default::default(),
            resets: Default::default(),
            live: Default::default(),
            holdout: Default::default(),
            auto: Default::default(),
        }
    }

    /// The published snapshot, lock-free; `None` before anything was learned
    /// on the current champion.
    pub fn view(&self, champion: &ServingModel) -> Option<Arc<ChallengerView>> {
        self.view
            .load_full()
            .filter(|v| v.champion.2 == champion.loaded.meta.checksum)
    }

    /// Scores `text` with the challenger of `champion`, if there is one,
    /// records whether it chose `champion_label` too and returns the tag
    /// to remember the prediction with, and whether it agreed. Lock-free:
    /// one snapshot load and one prediction.
    pub fn shadow(
        &self,
        champion: &ServingModel,
        text: &str,
        champion_label: &str,
    ) -> Option<(ShadowTag, bool)> {
        let view = self.view(champion)?;
        let p = view.classifier.predict(text);
        self.scored.fetch_add(1, Ordering::Relaxed);
        let agreed = view.classifier.classes()[p.label] == champion_label;
        if agreed {
            self.agreed.fetch_add(1, Ordering::Relaxed);
        }
        Some((view.tags[p.label], agreed))
    }

    /// Locks the live window (a poisoned lock still holds whole counts:
    /// every change to it is a few integer updates that cannot panic).
    fn live_window(&self) -> std::sync::MutexGuard<'_, LiveWindow> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Scores both models with the true `label` of a prediction the
    /// champion answered `predicted` and the challenger `tag`, within a
    /// window of `window` labels; false when the tag is of a challenger
    /// that has since been replaced.
    pub fn record_feedback(
        &self,
        tag: ShadowTag,
        label: &str,
        predicted: &str,
        window: usize,
    ) -> bool {
        self.live_window().record(tag, label, predicted, window)
    }

    /// Both models' live F1 macro on the labelled predictions the current
    /// challenger's lineage scored.
    pub fn live(&self) -> LiveComparison {
        self.live_window().comparison()
    }

    /// The F1 macro of `view`'s challenger on the holdout at `path`,
    /// computed once per generation; `None` when it cannot be read or
    /// evaluated (logged).
    pub async fn holdout_f1(
        &self,
        view: &Arc<ChallengerView>,
        path: &std::path::Path,
    ) -> Option<f64> {
        let mut cached = self.holdout.lock().await;
        if let Some((generation, f1)) = *cached {
            if generation == view.generation {
                return Some(f1);
            }
        }
        let (view_, path) = (Arc::clone(view), path.to_owned());
        let f1 = tokio::task::spawn_blocking(move || {
            let data = crate::dataset::Dataset::holdout(&path).map_err(|e| e.to_string())?;
            crate::training::evaluate_on(&view_.classifier, &data)
                .map(|e| e.f1_macro)
                .map_err(|e| e.to_string())
        })
        .await
        .expect("evaluating does not panic")
        .inspect_err(|e| tracing::warn!(error = %e, "challenger: holdout not evaluated"))
        .ok()?;
        *cached = Some((view.generation, f1));
        Some(f1)
    }

    /// Challengers dropped so far because the served model changed under
    /// them (a reload, a poll, a promotion) before the next learn.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    /// Agreement so far on the current champion.
    pub fn agreement(&self) -> Agreement {
        Agreement {
            scored: self.scored.load(Ordering::Relaxed),
            agreed: self.agreed.load(Ordering::Relaxed),
        }
    }

    /// Applies `change` to the challenger of `champion` (a new one when the
    /// champion changed), all or nothing, and publishes the result; what
    /// it then holds is held in the budget (refused when it does not fit).
    pub async fn apply(
        &self,
        champion: Arc<ServingModel>,
        change: Change,
        examples: Vec<Example>,
        settings: &LearningSettings,
    ) -> Result<Arc<ChallengerView>, ChallengerError> {
        let (budget, slot) = (Arc::clone(&self.budget), self.slot);
        let max_bytes = settings.max_bytes;
        let log = settings.log_path.clone();
        let mut writer = self.writer.lock().await;
        let meta = &champion.loaded.meta;
        let current = writer
            .as_ref()
            .filter(|w| w.champion_checksum == meta.checksum)
            .map(|w| w.learner.clone());
        let fresh = current.is_none();
        let learner = match current {
            Some(learner) => learner,
            None => {
                self.reset(&mut writer, &champion);
                new_learner(settings, &champion)?
            }
        };
        let checksum = meta.checksum.clone();
        // Counting and refitting take milliseconds to seconds: off the
        // async workers. The lock is held throughout, so writes stay serial.
        let (learner, classifier) = tokio::task::spawn_blocking(move || {
            let mut learner = learner;
            match change {
                Change::Learn => learner.learn(&examples)?,
                Change::Forget => learner.forget(&examples)?,
            }
            let needed = learner.learned_bytes();
            if change == Change::Learn && needed > max_bytes {
                return Err(ChallengerError::Full {
                    needed,
                    max: max_bytes,
                });
            }
            let classifier = learner.classifier()?;
            let needed = held_bytes(&learner, &classifier);
            budget
                .hold_challenger(slot, needed)
                .map_err(|available| ChallengerError::OverBudget { needed, available })?;
            // Synced before it is acknowledged (or published).
            if let Some(path) = &log {
                learning_log::append(path, change == Change::Forget, &checksum, &examples)
                    .map_err(|e| {
                        tracing::warn!(error = %e, "learning log: a change could not be written");
                        ChallengerError::Log
                    })?;
            }
            Ok((learner, classifier))
        })
        .await
        .expect("learning does not panic")?;
        Ok(self.publish(&mut writer, learner, classifier, meta, fresh))
    }

    /// Drops the challenger of a replaced champion, if there is one:
    /// counted and logged, its share of the budget given back, agreement
    /// and the live window started afresh on `champion`.
    fn reset(&self, writer: &mut Option<Writer>, champion: &ServingModel) {
        let Some(old) = writer.take() else {
            return;
        };
        self.view.store(None);
        self.budget.hold_challenger_anyway(self.slot, 0);
        self.scored.store(0, Ordering::Relaxed);
        self.agreed.store(0, Ordering::Relaxed);
        self.live_window().restart(&champion.loaded.meta.classes);
        self.resets.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            model = %champion.profile.model,
            learned = old.learner.tally().learned,
            forgotten = old.learner.tally().forgotten,
            "challenger reset: the served model changed"
        );
    }

    /// Makes `learner` the challenger of `meta`'s model (`fresh`: the
    /// first one on it, whose live window starts empty).
    fn publish(
        &self,
        writer: &mut Option<Writer>,
        learner: Learner,
        classifier: Classifier,
        meta: &ModelMeta,
        fresh: bool,
    ) -> Arc<ChallengerView> {
        let tags = {
            let mut live = self.live_window();
            if fresh {
                live.restart(&meta.classes);
            }
            live.tags(classifier.classes())
        };
        let view = Arc::new(ChallengerView {
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            tags,
            classifier,
            tally: learner.tally(),
            net_examples: learner.net_examples(),
            learned_bytes: learner.learned_bytes(),
            champion: (
                meta.model.name.clone(),
                meta.model.version.clone(),
                meta.checksum.clone(),
            ),
            updated_at: Utc::now(),
        });
        *writer = Some(Writer {
            learner,
            champion_checksum: meta.checksum.clone(),
        });
        self.view.store(Some(Arc::clone(&view)));
        view
    }

    /// Makes the challenger `champion`'s, once it is served: the
    /// challenger of a replaced champion is reset (see [`Self::reset`]),
    /// and what `learning.log_path` holds for `champion` is replayed when
    /// no challenger of it is in memory yet (after a restart, or when a
    /// champion comes back), so it is seen before the next learn.
    pub async fn restore(&self, champion: &Arc<ServingModel>, settings: &LearningSettings) {
        if !settings.enabled || self.view(champion).is_some() {
            return;
        }
        let mut writer = self.writer.lock().await;
        let checksum = &champion.loaded.meta.checksum;
        if writer
            .as_ref()
            .is_some_and(|w| &w.champion_checksum == checksum)
        {
            return;
        }
        self.reset(&mut writer, champion);
        if settings.log_path.is_none() {
            return;
        }
        let (owned, model) = (settings.clone(), Arc::clone(champion));
        let replayed = tokio::task::spawn_blocking(move || {
            let learner = new_learner(&owned, &model).ok()?;
            if learner.tally() == Tally::default() {
                return None;
            }
            match learner.classifier() {
                Ok(classifier) => Some((learner, classifier)),
                Err(e) => {
                    tracing::warn!(error = %e, "learning log: the replayed challenger cannot be fitted");
                    None
                }
            }
        })
        .await
        .expect("replaying does not panic");
        if let Some((learner, classifier)) = replayed {
            // It is in memory already: held even past the budget, so the
            // loads and changes after it see it.
            let bytes = held_bytes(&learner, &classifier);
            if !self.budget.hold_challenger_anyway(self.slot, bytes) {
                tracing::warn!(
                    model = %champion.profile.model,
                    bytes,
                    "the challenger replayed from the learning log holds more than models.max_total_bytes leaves; it learns nothing more until examples are forgotten"
                );
            }
            self.publish(
                &mut writer,
                learner,
                classifier,
                &champion.loaded.meta,
                true,
            );
        }
    }

    /// A copy of the learner of `champion`, if one learned anything.
    pub async fn learner(&self, champion: &ServingModel) -> Option<Learner> {
        self.writer
            .lock()
            .await
            .as_ref()
            .filter(|w| w.champion_checksum == champion.loaded.meta.checksum)
            .map(|w| w.learner.clone())
    }
}
