//! `models.max_total_bytes`: the memory budget across loaded models.
//!
//! Each model holds its estimated resident bytes (vocabulary and scoring
//! tables, [`crate::artifact::MemoryEstimate`]) while it is served. A load
//! reserves its estimate before its tables are built, against what every
//! *other* model holds or is loading: a reload replaces the model's own
//! holding, so it is not counted twice (during the reload both versions
//! are briefly in memory; the budget is of what stays loaded). A schema-3
//! model's decoded statistics are added to its holding once decoded
//! ([`Grow`]), and each model's challenger (learning in place) holds its
//! own share beside the models.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::server::loader::{Admission, Grow, LoadError};

/// What each model slot holds and is loading.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    /// Bytes of the model being served.
    serving: u64,
    /// Bytes of a load in progress (one at a time per model).
    loading: u64,
    /// Bytes the model's challenger holds (its scorer and learned part).
    challenger: u64,
}

/// The budget, shared by every model of the repository.
#[derive(Debug)]
pub struct Budget {
    max_total_bytes: u64,
    slots: Mutex<Vec<Held>>,
}

/// What a load of the model in `slot` must fit beside: every other model's
/// holding or load in progress, and every challenger (its own too: a
/// challenger outlives a reload of its champion until its next change).
fn held_beside_load(slots: &[Held], slot: usize) -> u64 {
    slots
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let model = if i == slot {
                0
            } else {
                h.serving.max(h.loading)
            };
            model.saturating_add(h.challenger)
        })
        .fold(0, u64::saturating_add)
}

/// What the challenger of `slot` must fit beside: every model and every
/// other challenger.
fn held_beside_challenger(slots: &[Held], slot: usize) -> u64 {
    slots
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let challenger = if i == slot { 0 } else { h.challenger };
            h.serving.max(h.loading).saturating_add(challenger)
        })
        .fold(0, u64::saturating_add)
}

/// Grows `slots` to hold `slot` (a model discovered after start).
fn slot_of(slots: &mut Vec<Held>, slot: usize) -> &mut Held {
    if slots.len() <= slot {
        slots.resize(slot + 1, Held::default());
    }
    &mut slots[slot]
}

impl Budget {
    /// A budget of `max_total_bytes` for `slots` models.
    pub fn new(max_total_bytes: u64, slots: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total_bytes,
            slots: Mutex::new(vec![Held::default(); slots]),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Held>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The budget.
    pub fn max_total_bytes(&self) -> u64 {
        self.max_total_bytes
    }

    /// Bytes the served models hold.
    pub fn serving_bytes(&self) -> u64 {
        self.lock().iter().map(|h| h.serving).sum()
    }

    /// Reserves `bytes` for a load of the model in `slot` (named `model`
    /// for the refusal), or refuses it when the other models' holdings
    /// leave too little.
    pub fn reserve(
        self: &Arc<Self>,
        slot: usize,
        model: &str,
        bytes: u64,
    ) -> Result<Reservation, LoadError> {
        let mut slots = self.lock();
        slot_of(&mut slots, slot);
        let held = held_beside_load(&slots, slot);
        if held.saturating_add(bytes) > self.max_total_bytes {
            return Err(LoadError::OverBudget {
                model: model.to_owned(),
                needed: bytes,
                held,
                max_total_bytes: self.max_total_bytes,
            });
        }
        slots[slot].loading = bytes;
        Ok(Reservation {
            budget: Arc::clone(self),
            slot,
            model: model.to_owned(),
            bytes,
            committed: false,
        })
    }

    /// Bytes every challenger holds (what the tests check; loads and
    /// changes read the slots themselves under the lock).
    #[cfg(test)]
    fn challenger_bytes(&self) -> u64 {
        self.lock()
            .iter()
            .map(|h| h.challenger)
            .fold(0, u64::saturating_add)
    }

    /// Bytes the challenger of the model in `slot` holds.
    #[cfg(test)]
    fn challenger_bytes_of(&self, slot: usize) -> u64 {
        self.lock().get(slot).map_or(0, |h| h.challenger)
    }

    /// Makes the challenger of the model in `slot` hold `bytes`. Growing
    /// past what the models and the other challengers leave is refused
    /// with what they leave (it keeps its holding); shrinking never is.
    pub fn hold_challenger(&self, slot: usize, bytes: u64) -> Result<(), u64> {
        let mut slots = self.lock();
        let beside = held_beside_challenger(&slots, slot);
        let held = slot_of(&mut slots, slot);
        if bytes > held.challenger && beside.saturating_add(bytes) > self.max_total_bytes {
            return Err(self.max_total_bytes.saturating_sub(beside));
        }
        held.challenger = bytes;
        Ok(())
    }

    /// Makes the challenger of `slot` hold `bytes` it already holds in
    /// memory (one rebuilt from the learning log): counted even past the
    /// budget, so later loads and changes see it; true when it fits.
    pub fn hold_challenger_anyway(&self, slot: usize, bytes: u64) -> bool {
        let mut slots = self.lock();
        let beside = held_beside_challenger(&slots, slot);
        slot_of(&mut slots, slot).challenger = bytes;
        beside.saturating_add(bytes) <= self.max_total_bytes
    }

    /// The model in `slot` was unloaded: it holds nothing.
    pub fn release(&self, slot: usize) {
        if let Some(h) = self.lock().get_mut(slot) {
            h.serving = 0;
        }
    }
}

/// Bytes reserved for a load: held by the model once it is served
/// ([`Reservation::commit`]), given back if the load fails.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    slot: usize,
    /// The model's name, for a refusal.
    model: String,
    bytes: u64,
    committed: bool,
}

impl Reservation {
    /// The load is served: its bytes replace what the model held.
    pub fn commit(mut self) {
        let mut slots = self.budget.lock();
        let h = &mut slots[self.slot];
        h.serving = self.bytes;
        h.loading = 0;
        self.committed = true;
    }
}

impl Grow for Reservation {
    fn grow(&mut self, bytes: u64) -> Result<(), LoadError> {
        let mut slots = self.budget.lock();
        let held = held_beside_load(&slots, self.slot);
        let needed = self.bytes.saturating_add(bytes);
        if held.saturating_add(needed) > self.budget.max_total_bytes {
            return Err(LoadError::OverBudget {
                model: self.model.clone(),
                needed,
                held,
                max_total_bytes: self.budget.max_total_bytes,
            });
        }
        slots[self.slot].loading = needed;
        self.bytes = needed;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.committed {
            self.budget.lock()[self.slot].loading = 0;
        }
    }
}

/// The budget's admission for one model's load.
pub struct BudgetAdmission {
    /// The budget.
    pub budget: Arc<Budget>,
    /// The model's slot.
    pub slot: usize,
    /// The model's name.
    pub model: String,
}

impl Admission for BudgetAdmission {
    type Hold = Reservation;
    fn admit(self, resident_bytes: u64) -> Result<Reservation, LoadError> {
        self.budget.reserve(self.slot, &self.model, resident_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_past_the_budget_are_refused_and_reloads_replace_their_own() {
        let budget = Budget::new(100, 3);
        budget.reserve(0, "a", 60).unwrap().commit();
        // 60 held by a: b may take 40, not 41.
        let e = budget.reserve(1, "b", 41).unwrap_err();
        assert_eq!(
            e.to_string(),
            "model b needs an estimated 41 bytes, and the other loaded models hold 60 \
             of models.max_total_bytes (100 bytes)"
        );
        let b = budget.reserve(1, "b", 40).unwrap();
        // A load in progress counts against the others too.
        assert!(budget.reserve(2, "c", 1).is_err());
        drop(b);
        assert_eq!(budget.serving_bytes(), 60, "a failed load holds nothing");
        // A reload of a replaces its own 60.
        budget.reserve(0, "a", 100).unwrap().commit();
        assert_eq!(budget.serving_bytes(), 100);
        budget.release(0);
        assert_eq!(budget.serving_bytes(), 0);
        budget.reserve(2, "c", 100).unwrap().commit();
    }

    #[test]
    fn statistics_grow_a_reservation_and_the_challenger_holds_its_share() {
        let budget = Budget::new(100, 2);
        let mut a = budget.reserve(0, "a", 30).unwrap();
        // Its statistics, once decoded: 30 + 50 fit, 30 + 50 + 21 do not.
        a.grow(50).unwrap();
        let e = a.grow(21).unwrap_err();
        assert!(
            e.to_string().contains("needs an estimated 101 bytes"),
            "{e}"
        );
        a.commit();
        assert_eq!(budget.serving_bytes(), 80);
        // The challenger takes what the models leave, no more.
        assert_eq!(budget.hold_challenger(0, 21), Err(20));
        budget.hold_challenger(0, 20).unwrap();
        assert_eq!(budget.challenger_bytes(), 20);
        // ... and counts against a load, its own model's reload included;
        // shrinking is never refused.
        assert!(budget.reserve(1, "b", 1).is_err());
        assert!(budget.reserve(0, "a", 81).is_err());
        budget.hold_challenger(0, 5).unwrap();
        budget.reserve(1, "b", 15).unwrap().commit();
        // Full after a reload: it may not grow, it may shrink.
        budget.reserve(0, "a", 80).unwrap().commit();
        assert_eq!(budget.hold_challenger(0, 6), Err(5));
        budget.hold_challenger(0, 4).unwrap();
        assert_eq!(budget.challenger_bytes(), 4);
    }

    #[test]
    fn each_models_challenger_holds_its_own_share() {
        let budget = Budget::new(100, 2);
        budget.reserve(0, "a", 40).unwrap().commit();
        budget.reserve(1, "b", 40).unwrap().commit();
        budget.hold_challenger(0, 12).unwrap();
        // b's challenger fits beside both models and a's challenger.
        assert_eq!(budget.hold_challenger(1, 9), Err(8));
        budget.hold_challenger(1, 8).unwrap();
        assert_eq!(
            (budget.challenger_bytes_of(0), budget.challenger_bytes_of(1)),
            (12, 8)
        );
        // Replacing one's holding never counts its own old share.
        budget.hold_challenger(0, 12).unwrap();
        // A challenger rebuilt in memory is counted even past the budget.
        assert!(!budget.hold_challenger_anyway(1, 30));
        assert_eq!(budget.challenger_bytes(), 42);
        assert!(budget.reserve(0, "a", 19).is_err());
        assert!(budget.hold_challenger_anyway(1, 0));
    }
}
