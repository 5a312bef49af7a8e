//! Kept prediction texts (`feedback.keep_text`): the text of each remembered
//! prediction, by sequence number, within a byte budget, oldest dropped
//! first, so a feedback line can carry the text it labels.

use std::collections::VecDeque;

/// Texts of remembered predictions, in sequence order, at most `budget`
/// bytes of text in all.
pub(super) struct TextStore {
    budget: usize,
    /// Bytes of text held (the sum of the entries' lengths).
    bytes: usize,
    /// `(sequence number, text)`, ascending. A text taken by its feedback
    /// leaves an empty entry (no allocation) until it reaches the front.
    entries: VecDeque<(u64, Box<str>)>,
}

impl TextStore {
    pub(super) fn new(budget: usize) -> Self {
        Self {
            budget,
            bytes: 0,
            entries: VecDeque::new(),
        }
    }

    /// Keeps `text` for prediction `seq` (greater than every `seq` kept
    /// before), dropping the oldest texts until it fits. A text larger than
    /// the whole budget is not kept (nor does it drop anything).
    pub(super) fn keep(&mut self, seq: u64, text: Box<str>) {
        debug_assert!(self.entries.back().is_none_or(|(s, _)| *s < seq));
        if text.len() > self.budget {
            return;
        }
        while self.bytes + text.len() > self.budget {
            self.pop_front();
        }
        self.bytes += text.len();
        self.entries.push_back((seq, text));
    }

    /// Frees the texts of predictions before `first` (evicted from the ring
    /// or expired).
    pub(super) fn forget_before(&mut self, first: u64) {
        while self.entries.front().is_some_and(|(s, _)| *s < first) {
            self.pop_front();
        }
    }

    /// Takes the text of prediction `seq`, if it is still kept: feedback is
    /// accepted once per prediction, so the text is not needed again.
    pub(super) fn take(&mut self, seq: u64) -> Option<String> {
        let i = self.entries.partition_point(|(s, _)| *s < seq);
        match self.entries.get_mut(i) {
            Some((s, text)) if *s == seq && !text.is_empty() => {
                let text = std::mem::take(text);
                self.bytes -= text.len();
                Some(text.into_string())
            }
            _ => None,
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, text)) = self.entries.pop_front() {
            self.bytes -= text.len();
        }
    }

    /// Bytes of text held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries held (texts, and placeholders of taken ones).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_drops_the_oldest_texts_first() {
        let mut t = TextStore::new(10);
        t.keep(0, "aaaa".into());
        t.keep(1, "bbbb".into());
        assert_eq!(t.bytes(), 8);
        t.keep(2, "cccc".into()); // 12 > 10: "aaaa" goes
        assert_eq!(t.bytes(), 8);
        assert_eq!(t.take(0), None);
        assert_eq!(t.take(1).as_deref(), Some("bbbb"));
        assert_eq!(t.take(1), None, "taken once");
        assert_eq!(t.bytes(), 4);
        // Exactly the budget fits; the taken placeholder is dropped with it.
        t.keep(3, "dddddddddd".into());
        assert_eq!(t.bytes(), 10);
        assert_eq!(t.len(), 1);
        assert_eq!(t.take(2), None);
        assert_eq!(t.take(3).as_deref(), Some("dddddddddd"));
    }

    #[test]
    fn a_text_over_the_budget_is_not_kept_and_drops_nothing() {
        let mut t = TextStore::new(5);
        t.keep(0, "abc".into());
        t.keep(1, "abcdef".into());
        assert_eq!(t.take(1), None);
        assert_eq!(t.take(0).as_deref(), Some("abc"));
    }

    #[test]
    fn evicted_predictions_free_their_texts() {
        let mut t = TextStore::new(1000);
        for seq in 0..10 {
            t.keep(seq, "0123456789".into());
        }
        t.forget_before(7);
        assert_eq!((t.len(), t.bytes()), (3, 30));
        assert_eq!(t.take(6), None);
        assert_eq!(t.take(7).as_deref(), Some("0123456789"));
        // A sequence number between kept ones (not kept: over budget) is none.
        assert_eq!(t.take(100), None);
    }

    #[test]
    fn the_bound_holds_under_any_sequence_of_texts() {
        let budget = 1000;
        let mut t = TextStore::new(budget);
        let mut rng = 12345u64;
        for seq in 0..20_000u64 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (rng >> 33) as usize % 300 + 1;
            t.keep(seq, "x".repeat(len).into());
            if seq % 7 == 0 {
                t.take(seq / 2);
            }
            if seq % 1000 == 0 {
                t.forget_before(seq / 2);
            }
            let held: usize = t.entries.iter().map(|(_, s)| s.len()).sum();
            assert_eq!(held, t.bytes());
            assert!(t.bytes() <= budget, "{} bytes held", t.bytes());
        }
    }
}
