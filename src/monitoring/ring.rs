//! The ring of remembered predictions: one 16-byte [`Slot`] per prediction,
//! found by sequence number (no index), oldest dropped first.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ids::SEQ_BITS;
use super::{FeedbackError, ModelProfile};

/// One remembered prediction in 16 bytes: the id's nonce, and packed into
/// `stamp`: milliseconds since the store's epoch (bits 17–63, 4,000+ years),
/// whether feedback arrived (bit 16) and the predicted class (bits 0–15).
/// Its model is not stored per slot: see [`Ring::models`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Slot {
    pub(super) nonce: u64,
    stamp: u64,
}

impl Slot {
    const ANSWERED: u64 = 1 << 16;

    fn new(nonce: u64, at_ms: u64, predicted: u16) -> Self {
        Self {
            nonce,
            stamp: (at_ms << 17) | u64::from(predicted),
        }
    }
    fn at_ms(self) -> u64 {
        self.stamp >> 17
    }
    fn predicted(self) -> u16 {
        self.stamp as u16
    }
    fn answered(self) -> bool {
        self.stamp & Self::ANSWERED != 0
    }
    fn set_answered(&mut self) {
        self.stamp |= Self::ANSWERED;
    }
}

/// Predictions the ring reserves room for up front (see [`Ring::new`]).
const PREALLOCATE_MAX: usize = 1 << 20;

/// At most `capacity` remembered predictions, none older than `max_age`.
pub(super) struct Ring {
    capacity: usize,
    max_age: Duration,
    /// Slot times count milliseconds from here.
    epoch: Instant,
    /// Prediction `seq` sits at `slots[seq % capacity]` while
    /// `first <= seq < next`. Grows up to `capacity`, then wraps.
    pub(super) slots: Vec<Slot>,
    /// Sequence number of the oldest remembered prediction.
    first: u64,
    /// Sequence number of the next prediction.
    next: u64,
    /// The models of the remembered predictions, as runs: `(first sequence
    /// number it predicted, model)`, oldest first. Usually one entry; a
    /// reload adds one, dropped once its last prediction is.
    pub(super) models: VecDeque<(u64, Arc<ModelProfile>)>,
    /// The shadow tag of each prediction (see [`Ring::push`]), at the same
    /// index as its slot: empty until a prediction carries one, so a server
    /// without shadow scoring pays nothing; then 4 bytes per slot.
    shadow: Vec<u32>,
}

/// No shadow tag, in [`Ring::shadow`].
const NO_SHADOW: u32 = u32::MAX;

/// A remembered prediction that has just received its feedback.
pub(super) struct Answered {
    /// The model that predicted.
    pub(super) model: Arc<ModelProfile>,
    /// Index of the true label among the model's classes.
    pub(super) truth: usize,
    /// Index of the predicted label.
    pub(super) predicted: usize,
    /// Time since the prediction (monotonic clock).
    pub(super) age: Duration,
    /// Its shadow tag, if it was remembered with one.
    pub(super) shadow: Option<u32>,
}

impl Ring {
    pub(super) fn new(capacity: usize, max_age: Duration) -> Self {
        // Settings refuse 0; a store that can remember nothing has no use.
        assert!(capacity > 0, "feedback store capacity must be > 0");
        Self {
            capacity,
            max_age,
            epoch: Instant::now(),
            // Reserved once for the configured capacity (up to a million
            // predictions; beyond that the ring grows on demand), so it is
            // never copied while growing. Pages of the reservation cost
            // memory only once predictions are written to them.
            slots: Vec::with_capacity(capacity.min(PREALLOCATE_MAX)),
            first: 0,
            next: 0,
            models: VecDeque::new(),
            shadow: Vec::new(),
        }
    }

    /// Milliseconds from the ring's epoch to now. Read under the store's
    /// lock, so slot times never decrease along the ring.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether a prediction made at `at_ms` is past `max_age` at `now_ms`.
    fn expired(&self, at_ms: u64, now_ms: u64) -> bool {
        u128::from(now_ms.saturating_sub(at_ms)) > self.max_age.as_millis()
    }

    /// The ring index of prediction `seq`.
    fn slot_index(&self, seq: u64) -> usize {
        (seq % self.capacity as u64) as usize
    }

    /// The model that made prediction `seq` (which must be remembered).
    fn model_of(&self, seq: u64) -> &Arc<ModelProfile> {
        let i = self.models.partition_point(|(start, _)| *start <= seq);
        &self.models[i - 1].1
    }

    /// Remembers a prediction of class `predicted` by `model`, with the
    /// `shadow` tag its caller gives it (what a challenger predicted; not
    /// `u32::MAX`), returned with its feedback; returns its sequence number.
    pub(super) fn push(
        &mut self,
        model: &Arc<ModelProfile>,
        nonce: u64,
        predicted: usize,
        shadow: Option<u32>,
    ) -> u64 {
        let now_ms = self.now_ms();
        // Expire by age, then make room by evicting the oldest.
        self.forget(now_ms, true);
        let seq = self.next;
        debug_assert!(seq < 1 << SEQ_BITS);
        self.next += 1;
        let same_model = self
            .models
            .back()
            .is_some_and(|(_, m)| Arc::ptr_eq(m, model) || m == model);
        if !same_model {
            self.models.push_back((seq, Arc::clone(model)));
        }
        let slot = Slot::new(nonce, now_ms, predicted as u16);
        let index = self.slot_index(seq);
        if shadow.is_some() || !self.shadow.is_empty() {
            // Once tags are kept, every push writes its index's tag, so a
            // reused index never shows the tag of the prediction it held.
            if self.shadow.len() <= index {
                self.shadow.resize(index + 1, NO_SHADOW);
            }
            self.shadow[index] = shadow.unwrap_or(NO_SHADOW);
        }
        if self.slots.len() < self.capacity {
            // Not wrapped yet: sequence numbers and ring indices coincide.
            debug_assert_eq!(self.slots.len() as u64, seq);
            self.slots.push(slot);
        } else {
            self.slots[index] = slot;
        }
        seq
    }

    /// Forgets the predictions past `max_age` now (a push does it too; this
    /// is for when none comes).
    pub(super) fn expire(&mut self) {
        let now_ms = self.now_ms();
        self.forget(now_ms, false);
    }

    /// Advances `first` past expired predictions and, with `room`, past the
    /// oldest while the ring is full; lets go of models no longer needed.
    fn forget(&mut self, now_ms: u64, room: bool) {
        while self.first < self.next {
            let oldest = self.slots[self.slot_index(self.first)];
            let full = room && self.next - self.first >= self.capacity as u64;
            if full || self.expired(oldest.at_ms(), now_ms) {
                self.first += 1;
            } else {
                break;
            }
        }
        // A model whose last remembered prediction is gone is let go.
        while self.models.len() > 1 && self.models[1].0 <= self.first {
            self.models.pop_front();
        }
    }

    /// Marks prediction `seq` answered with the true `label`, if it is
    /// remembered, `nonce` is its own, it has not expired, `label` is one of
    /// its model's classes and it was not answered before (checked in that
    /// order).
    pub(super) fn answer(
        &mut self,
        seq: u64,
        nonce: u64,
        label: &str,
    ) -> Result<Answered, FeedbackError> {
        let now_ms = self.now_ms();
        if !(self.first..self.next).contains(&seq) {
            return Err(FeedbackError::UnknownId);
        }
        let index = self.slot_index(seq);
        let slot = self.slots[index];
        if slot.nonce != nonce || self.expired(slot.at_ms(), now_ms) {
            return Err(FeedbackError::UnknownId);
        }
        let model = Arc::clone(self.model_of(seq));
        let truth = model
            .classes
            .iter()
            .position(|c| c == label)
            .ok_or_else(|| FeedbackError::InvalidLabel(model.classes.join(", ")))?;
        if slot.answered() {
            return Err(FeedbackError::Duplicate);
        }
        self.slots[index].set_answered();
        Ok(Answered {
            model,
            truth,
            predicted: usize::from(slot.predicted()),
            age: Duration::from_millis(now_ms.saturating_sub(slot.at_ms())),
            shadow: self.shadow.get(index).copied().filter(|&t| t != NO_SHADOW),
        })
    }

    /// Sequence number of the oldest remembered prediction (the next one
    /// when none is).
    pub(super) fn first(&self) -> u64 {
        self.first
    }

    /// Predictions currently remembered.
    pub(super) fn len(&self) -> usize {
        (self.next - self.first) as usize
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::super::ids::NONCE_MASK;
    use super::super::tests::model;
    use super::super::FeedbackStore;
    use super::*;

    #[test]
    fn slots_pack_time_class_and_answer() {
        let at = (1 << 47) - 1; // the largest time a slot holds: 4,400+ years
        let mut slot = Slot::new(NONCE_MASK, at, u16::MAX);
        assert_eq!(
            (slot.at_ms(), slot.predicted(), slot.answered()),
            (at, u16::MAX, false)
        );
        slot.set_answered();
        assert_eq!(
            (slot.at_ms(), slot.predicted(), slot.answered()),
            (at, u16::MAX, true)
        );
        assert_eq!(slot.nonce, NONCE_MASK);
    }

    #[test]
    fn memory_is_16_bytes_per_remembered_prediction() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        let s = FeedbackStore::new(100_000, Duration::from_secs(60), 10, None).unwrap();
        let m = model();
        for _ in 0..150_000 {
            s.remember(&m, 0, 0.9, None);
        }
        let g = s.inner.lock().unwrap();
        assert_eq!(g.ring.slots.len(), 100_000);
        assert_eq!(
            g.ring.slots.capacity(),
            100_000,
            "reserved once, never regrown"
        );
    }

    #[test]
    fn shadow_tags_come_back_with_their_feedback_only() {
        let s = FeedbackStore::new(3, Duration::from_secs(60), 100, None).unwrap();
        let m = model();
        let plain = s.remember(&m, 0, 0.9, None).to_string();
        assert!(
            s.inner.lock().unwrap().ring.shadow.is_empty(),
            "nothing kept without tags"
        );
        let tagged = s
            .remember_shadowed(&m, 1, 0.9, None, "", Some(7))
            .to_string();
        // Wraps onto the untagged prediction's index, then onto the tagged one's.
        let later: Vec<String> = (0..2)
            .map(|i| s.remember(&m, i, 0.9, None).to_string())
            .collect();
        assert_eq!(
            s.submit(&plain, "ham").unwrap_err(),
            FeedbackError::UnknownId
        );
        assert_eq!(s.submit(&tagged, "ham").unwrap().shadow, Some(7));
        assert_eq!(s.submit(&later[0], "ham").unwrap().shadow, None);
        let reused = s.remember(&m, 0, 0.9, None).to_string(); // the tagged one's index
        assert_eq!(s.submit(&reused, "ham").unwrap().shadow, None);
        assert_eq!(s.submit(&later[1], "ham").unwrap().shadow, None);
    }

    #[test]
    fn capacity_evicts_oldest_first() {
        let s = FeedbackStore::new(3, Duration::from_secs(60), 100, None).unwrap();
        let m = model();
        let ids: Vec<String> = (0..5)
            .map(|_| s.remember(&m, 0, 0.9, None).to_string())
            .collect();
        assert_eq!(s.remembered(), 3);
        assert_eq!(
            s.submit(&ids[0], "ham").unwrap_err(),
            FeedbackError::UnknownId
        );
        assert_eq!(
            s.submit(&ids[1], "ham").unwrap_err(),
            FeedbackError::UnknownId
        );
        assert!(s.submit(&ids[4], "ham").is_ok());
    }

    #[test]
    fn evicted_predictions_are_unknown_after_their_slots_are_reused() {
        let s = FeedbackStore::new(4, Duration::from_secs(60), 100, None).unwrap();
        let m = model();
        let ids: Vec<Uuid> = (0..11).map(|i| s.remember(&m, i % 2, 0.9, None)).collect();
        assert_eq!(s.remembered(), 4);
        for (i, id) in ids.iter().enumerate() {
            let r = s.submit(&id.to_string(), "ham");
            if i < 7 {
                assert_eq!(r.unwrap_err(), FeedbackError::UnknownId, "prediction {i}");
            } else {
                let r = r.unwrap();
                assert_eq!(r.predicted_label, ["ham", "spam"][i % 2], "prediction {i}");
            }
        }
        // The ring never grew past the capacity.
        assert_eq!(s.inner.lock().unwrap().ring.slots.len(), 4);
    }

    #[test]
    fn feedback_is_judged_against_the_model_that_predicted() {
        let s = FeedbackStore::new(3, Duration::from_secs(60), 100, None).unwrap();
        let old = model();
        let new = Arc::new(ModelProfile {
            model: "spam".into(),
            slot: 0,
            version: "v2".into(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            prior: vec![0.2, 0.3, 0.5],
        });
        let by_old = s.remember(&old, 1, 0.9, None).to_string();
        // A reload of an identical model continues the same run.
        let by_same = s.remember(&model(), 0, 0.9, None).to_string();
        let by_new = s.remember(&new, 2, 0.9, None).to_string();
        assert_eq!(s.inner.lock().unwrap().ring.models.len(), 2);
        assert_eq!(
            s.submit(&by_old, "c").unwrap_err(),
            FeedbackError::InvalidLabel("ham, spam".into())
        );
        let r = s.submit(&by_old, "ham").unwrap();
        assert_eq!(
            (r.model_version.as_str(), r.predicted_label.as_str()),
            ("v1", "spam")
        );
        let r = s.submit(&by_new, "c").unwrap();
        assert_eq!(
            (r.model_version.as_str(), r.predicted_label.as_str()),
            ("v2", "c")
        );
        assert_eq!(s.submit(&by_same, "ham").unwrap().model_version, "v1");
        // Once its predictions are evicted, the old model is let go.
        for _ in 0..2 {
            s.remember(&new, 0, 0.9, None);
        }
        let g = s.inner.lock().unwrap();
        assert_eq!(g.ring.models.len(), 1);
        assert!(Arc::ptr_eq(&g.ring.models[0].1, &new));
    }
}
