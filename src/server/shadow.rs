//! The live comparison of the champion and its challenger: for each served
//! prediction the challenger also scored, its class is remembered with the
//! prediction (a [shadow tag](ShadowTag)); when the prediction's true label
//! arrives by `/feedback`, both models' answers go into one sliding window
//! of `feedback.window` labelled predictions, so their live F1 macro is
//! measured on the same texts.
//!
//! The window spans every generation of the challenger of one champion
//! (each learn or forget publishes a new one): the quality asked of a
//! challenger before promotion is that of its lineage. It starts again,
//! empty, when the challenger does (the champion changed).

use std::collections::VecDeque;

use serde::Serialize;
use utoipa::ToSchema;

use crate::classifier::ConfusionMatrix;

/// What a prediction is remembered with: the challenger's lineage (16 bits,
/// wrapping) and its class, as an index into the lineage's classes
/// (16 bits), in one `u32` below `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowTag(pub u32);

impl ShadowTag {
    fn new(lineage: u16, class: u16) -> Self {
        Self((u32::from(lineage) << 16) | u32::from(class))
    }
    fn lineage(self) -> u16 {
        (self.0 >> 16) as u16
    }
    fn class(self) -> usize {
        (self.0 & 0xFFFF) as usize
    }
}

/// Live F1 macro of both models on the same labelled predictions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct LiveComparison {
    /// Labelled predictions in the window (both models scored each).
    pub labels: u64,
    /// The champion's F1 macro on them (`null` while there are none).
    pub champion_f1_macro: Option<f64>,
    /// The challenger's F1 macro on them (`null` while there are none).
    pub challenger_f1_macro: Option<f64>,
}

/// The window, behind the challenger's lock for it.
pub(super) struct LiveWindow {
    lineage: u16,
    /// The lineage's classes, append-only: the champion's, then any class
    /// a generation learned, so a tag's index never changes meaning.
    classes: Vec<String>,
    /// (truth, champion's, challenger's) class indices, oldest first.
    triples: VecDeque<(u16, u16, u16)>,
    champion: ConfusionMatrix,
    challenger: ConfusionMatrix,
}

impl Default for LiveWindow {
    fn default() -> Self {
        Self {
            lineage: 0,
            classes: Vec::new(),
            triples: VecDeque::new(),
            champion: ConfusionMatrix::new(0),
            challenger: ConfusionMatrix::new(0),
        }
    }
}

impl LiveWindow {
    /// Starts a new lineage on a champion of `classes`: tags of the old one
    /// are ignored from now on.
    pub(super) fn restart(&mut self, classes: &[String]) {
        self.lineage = self.lineage.wrapping_add(1);
        self.classes = classes.to_vec();
        self.triples.clear();
        self.champion = ConfusionMatrix::new(classes.len());
        self.challenger = ConfusionMatrix::new(classes.len());
    }

    /// The tag of each class of a generation whose classes are `classes`
    /// (new ones join the lineage's list).
    pub(super) fn tags(&mut self, classes: &[String]) -> Vec<ShadowTag> {
        let before = self.classes.len();
        let tags = classes
            .iter()
            .map(|c| {
                let i = match self.classes.iter().position(|k| k == c) {
                    Some(i) => i,
                    None => {
                        self.classes.push(c.clone());
                        self.classes.len() - 1
                    }
                };
                // Classes are u16 throughout the feedback store.
                ShadowTag::new(self.lineage, i as u16)
            })
            .collect();
        if self.classes.len() > before {
            self.champion = grown(&self.champion, self.classes.len());
            self.challenger = grown(&self.challenger, self.classes.len());
        }
        tags
    }

    /// Records the true `label` of a prediction the champion answered
    /// `predicted` and the challenger `tag`, in a window of `size`; false
    /// when the tag is of an older lineage (or a label is unknown to it).
    pub(super) fn record(
        &mut self,
        tag: ShadowTag,
        label: &str,
        predicted: &str,
        size: usize,
    ) -> bool {
        let find = |name: &str| self.classes.iter().position(|c| c == name);
        let (Some(truth), Some(champion)) = (find(label), find(predicted)) else {
            return false;
        };
        let challenger = tag.class();
        if tag.lineage() != self.lineage || challenger >= self.classes.len() || size == 0 {
            return false;
        }
        if self.triples.len() >= size {
            if let Some((t, a, b)) = self.triples.pop_front() {
                self.champion.remove(t.into(), a.into());
                self.challenger.remove(t.into(), b.into());
            }
        }
        self.triples
            .push_back((truth as u16, champion as u16, challenger as u16));
        // In range: all three index `classes`, which the matrices span.
        let _ = self.champion.add(truth, champion);
        let _ = self.challenger.add(truth, challenger);
        true
    }

    /// Both models' live F1 macro.
    pub(super) fn comparison(&self) -> LiveComparison {
        let f1 = |m: &ConfusionMatrix| m.evaluate(&self.classes).ok().map(|e| e.f1_macro);
        LiveComparison {
            labels: self.triples.len() as u64,
            champion_f1_macro: f1(&self.champion),
            challenger_f1_macro: f1(&self.challenger),
        }
    }
}

/// `m` with rows and columns added up to `n` classes.
fn grown(m: &ConfusionMatrix, n: usize) -> ConfusionMatrix {
    let mut counts = m.counts().to_vec();
    counts.resize(n, Vec::new());
    ConfusionMatrix::from_counts(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn both_models_are_scored_on_the_same_labels() {
        let mut w = LiveWindow::default();
        w.restart(&names(&["ham", "spam"]));
        let tags = w.tags(&names(&["ham", "spam"]));
        // truth, champion, challenger
        for (t, a, b) in [
            ("spam", "ham", 1),
            ("spam", "spam", 1),
            ("ham", "ham", 0),
            ("ham", "spam", 0),
        ] {
            assert!(w.record(tags[b], t, a, 10));
        }
        let c = w.comparison();
        assert_eq!(c.labels, 4);
        // Champion: ham P 1/2 R 1/2, spam P 1/2 R 1/2.
        assert_eq!(c.champion_f1_macro, Some(0.5));
        assert_eq!(c.challenger_f1_macro, Some(1.0));
    }

    #[test]
    fn the_window_slides_and_old_lineages_are_ignored() {
        let mut w = LiveWindow::default();
        w.restart(&names(&["ham", "spam"]));
        let old = w.tags(&names(&["ham", "spam"]));
        assert!(w.record(old[0], "spam", "spam", 2));
        assert!(w.record(old[1], "spam", "spam", 2));
        assert!(w.record(old[1], "ham", "ham", 2)); // pushes the first out
        assert_eq!(w.comparison().challenger_f1_macro, Some(1.0 / 3.0));
        w.restart(&names(&["ham", "spam"]));
        assert!(!w.record(old[1], "spam", "spam", 2), "an old lineage's tag");
        assert_eq!(w.comparison().labels, 0);
        assert_eq!(w.comparison().champion_f1_macro, None);
    }

    #[test]
    fn a_learned_class_keeps_earlier_tags_meaning() {
        let mut w = LiveWindow::default();
        w.restart(&names(&["ham", "spam"]));
        let first = w.tags(&names(&["ham", "spam"]));
        // A later generation learned "eggs", sorted first.
        let second = w.tags(&names(&["eggs", "ham", "spam"]));
        assert_eq!((second[1], second[2]), (first[0], first[1]));
        assert!(w.record(first[1], "spam", "spam", 10));
        assert!(w.record(second[0], "ham", "ham", 10));
        let c = w.comparison();
        assert_eq!(c.champion_f1_macro, Some(1.0));
        // Challenger: spam 1, ham 0 (missed), eggs 0 (wrongly predicted).
        assert_eq!(c.challenger_f1_macro, Some(1.0 / 3.0));
    }
}
