//! Training data for a retrain: base CSVs and feedback logs merged into one
//! labelled set, with the fixed holdout's texts kept out of it and field
//! labels held to the classes the deployment already has.
//!
//! Memory: logs are streamed ([`log`]); each distinct text is held once,
//! indexed by a 128-bit digest instead of a second copy; labels are held
//! once each and rows point at them.

mod log;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::artifact::{name_problem, MAX_CLASSES, MAX_NAME_BYTES};
use crate::dataset::Dataset;

use log::{for_each_line, Raw};
pub use log::{parse_line, FeedbackLogError, Line, OpenLog, MAX_LINE_BYTES};

/// Default byte budget of the feedback logs (`--max-log-bytes`): beyond it
/// the oldest lines are skipped (`over_budget`). A retrain's peak memory
/// grows in proportion to the log it keeps (the texts, their tokens and the
/// cross-validation scores), so the budget is what keeps a retrain on a
/// large log inside the retrain CronJob's memory limit (docs/retrain.md has
/// the measurement).
pub const DEFAULT_MAX_LOG_BYTES: u64 = 100 * 1024 * 1024;

/// At most this many distinct unknown labels are named in the report (the
/// rest are only counted).
const NAMED_UNKNOWN_LABELS: usize = 10;

/// Feedback-log lines skipped, by reason; every line read is either taken
/// as an example or counted here once.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Skipped {
    /// A label and no text (feedback whose text the server did not keep).
    pub without_text: u64,
    /// Not a JSON object with a string `text` and a non-empty string
    /// `label`: not JSON, wrong types, cut short, invalid UTF-8, a line
    /// over [`MAX_LINE_BYTES`].
    pub malformed: u64,
    /// A label longer than a served model's labels may be
    /// ([`MAX_NAME_BYTES`]).
    pub label_too_long: u64,
    /// A new label when the training labels already number
    /// [`MAX_CLASSES`], the most a served model may have.
    pub too_many_labels: u64,
    /// A label that is neither a holdout label, a class of the model in
    /// service nor a base-data label (without `--allow-new-classes`).
    pub unknown_label: u64,
    /// Before the last `--max-log-bytes` bytes of the logs.
    pub over_budget: u64,
}

/// What went into the training data and what was left out, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DataCounts {
    /// Rows of the `--data` CSVs.
    pub base_rows: u64,
    /// Bytes of the feedback logs (their sizes when opened).
    pub feedback_bytes: u64,
    /// The byte budget of the logs (`--max-log-bytes`).
    pub max_log_bytes: u64,
    /// Lines of the feedback logs.
    pub feedback_lines: u64,
    /// Feedback lines taken as labelled examples.
    pub feedback_examples: u64,
    /// Feedback lines without text (skipped; `skipped.without_text`).
    pub without_text: u64,
    /// Malformed feedback lines of every kind (skipped): `skipped.malformed`
    /// + `label_too_long` + `too_many_labels`.
    pub malformed: u64,
    /// Skipped feedback lines by reason.
    pub skipped: Skipped,
    /// Lines per unknown label, for the first few such labels.
    pub unknown_labels: BTreeMap<String, u64>,
    /// Rows or examples repeating an earlier text with the same label (dropped).
    pub duplicates: u64,
    /// Texts seen again with another label (the later label kept).
    pub relabelled: u64,
    /// Training texts that are also in the holdout (removed from training).
    pub holdout_overlap: u64,
    /// Documents trained on.
    pub training_documents: u64,
    /// Documents in the holdout.
    pub holdout_documents: u64,
    /// Training documents per label.
    pub class_counts: BTreeMap<String, u64>,
    /// Of the training documents, those in the base counts (`--base-counts`):
    /// counted before, not read again.
    pub base_counts_documents: u64,
}

/// The merged training data and how it was made.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Training documents, each text once; `sha256` fingerprints the
    /// merged content (texts and labels in order), not a file.
    pub train: Dataset,
    /// The counts.
    pub counts: DataCounts,
}

/// Why the inputs cannot make a training set fit for the holdout.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MergeError {
    /// Nothing to train on.
    #[error("the merged training data is empty")]
    Empty,
    /// Every training text is also in the holdout.
    #[error("the holdout overlaps the training data entirely: all {0} training texts are in the holdout, nothing is left to train on")]
    HoldoutCoversAll(u64),
    /// One label only.
    #[error("every merged training document has the label {0:?}; at least 2 classes are needed")]
    OneClass(String),
    /// The holdout has a label the training data lacks.
    #[error("the holdout has the label {label:?}, which the merged training data lacks (labels: {known})")]
    UnknownHoldoutLabel {
        /// The label.
        label: String,
        /// The training labels, comma-separated.
        known: String,
    },
    /// A CSV (base data or holdout) has a label holding a control character.
    #[error("{input}: a label holds a control character; a served model's labels hold none")]
    LabelControl {
        /// The CSV.
        input: String,
    },
    /// A CSV (base data or holdout) has a label no served model may have.
    #[error("{input}: a label of {bytes} bytes; a served model's labels are at most {MAX_NAME_BYTES} bytes")]
    LabelTooLong {
        /// The CSV.
        input: String,
        /// The label's length.
        bytes: usize,
    },
    /// The holdout and base data have more labels than a served model may.
    #[error("{input}: its labels bring the classes past {MAX_CLASSES}, the most a served model may have")]
    TooManyClasses {
        /// The CSV.
        input: String,
    },
}

/// The classes an artifact file names, read without loading the model (only
/// the label rule needs them, before training); `None` unless they are a
/// list a served model may have: 2 to [`MAX_CLASSES`] labels of at most
/// [`MAX_NAME_BYTES`] without control characters. Whether the model is valid is judged later, when it
/// is scored.
pub fn model_classes(bytes: &[u8]) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct Classes {
        classes: Vec<String>,
    }
    let classes = serde_json::from_slice::<Classes>(bytes).ok()?.classes;
    let servable = (2..=MAX_CLASSES).contains(&classes.len())
        && classes.iter().all(|c| name_problem(c).is_none());
    servable.then_some(classes)
}

/// A 128-bit digest of a text: the merge's index holds these instead of a
/// second copy of every text (two distinct texts sharing one is as likely as
/// a random 128-bit collision).
type TextKey = [u8; 16];

fn text_key(text: &str) -> TextKey {
    let digest = Sha256::digest(text.as_bytes());
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// One distinct training text.
#[derive(Debug)]
struct Row {
    text: String,
    /// Index into [`Merger::labels`].
    label: u16,
    /// Also in the holdout: removed from training at the end.
    held: bool,
}

/// Merges `--data` CSVs then feedback logs, in that order: for a repeated
/// text the last label wins (`relabelled`), a repeated text with the same
/// label is dropped (`duplicates`), so feedback overrides a base row with
/// its text. Texts in the holdout are removed at the end
/// (`holdout_overlap`). Each text keeps the position of its first
/// appearance.
///
/// **Labels.** A base-data label is the operator's own and always taken (it
/// may add a class). A feedback label must be a holdout label, a class of
/// the model in service or a base-data label, unless `allow_new_classes`;
/// any other is skipped as `unknown_label`, so field labels cannot add a
/// class. A label no served model could have — over [`MAX_NAME_BYTES`],
/// holding a control character, or past [`MAX_CLASSES`] labels — is a bad
/// CSV (an error) but only a skipped feedback line (`label_too_long`,
/// `malformed`, `too_many_labels`).
#[derive(Debug)]
pub struct Merger {
    held: HashSet<TextKey>,
    /// Labels a feedback line may have without `allow_new_classes`.
    known: HashSet<String>,
    allow_new_classes: bool,
    /// Every label a row may point at (the holdout's first).
    labels: Vec<String>,
    /// How many of `labels` are the holdout's.
    holdout_labels: usize,
    rows: Vec<Row>,
    index: HashMap<TextKey, u32>,
    counts: DataCounts,
}

impl Merger {
    /// A merge for `holdout` (named `holdout_name` in errors) and the
    /// classes of the model in service, when it could be read.
    pub fn new(
        holdout: &Dataset,
        holdout_name: &str,
        current_classes: Option<&[String]>,
        allow_new_classes: bool,
    ) -> Result<Self, MergeError> {
        let mut merger = Self {
            held: holdout.texts.iter().map(|t| text_key(t)).collect(),
            known: current_classes
                .unwrap_or_default()
                .iter()
                .cloned()
                .collect(),
            allow_new_classes,
            labels: Vec::new(),
            holdout_labels: 0,
            rows: Vec::new(),
            index: HashMap::new(),
            counts: DataCounts {
                holdout_documents: holdout.len() as u64,
                ..DataCounts::default()
            },
        };
        // Interned first, so new feedback labels can never crowd them out.
        for label in &holdout.labels {
            merger.csv_label(label, holdout_name)?;
        }
        merger.holdout_labels = merger.labels.len();
        Ok(merger)
    }

    /// Adds the rows of a base CSV (named `name` in errors), in order.
    pub fn add_base(&mut self, data: Dataset, name: &str) -> Result<(), MergeError> {
        self.counts.base_rows += data.len() as u64;
        for (text, label) in data.texts.into_iter().zip(&data.labels) {
            let label = self.csv_label(label, name)?;
            self.add(text, label);
        }
        Ok(())
    }

    /// Reads `logs` in order, streaming: when their sizes add up to more
    /// than `max_bytes`, the lines before the last `max_bytes` bytes (the
    /// oldest, logs being given oldest first) are skipped as `over_budget`.
    pub fn add_logs(&mut self, logs: Vec<OpenLog>, max_bytes: u64) -> Result<(), FeedbackLogError> {
        let total: u64 = logs.iter().map(OpenLog::size).sum();
        self.counts.feedback_bytes += total;
        self.counts.max_log_bytes = max_bytes;
        let mut skip = total.saturating_sub(max_bytes);
        for log in logs {
            let size = log.size();
            let (path, reader) = log.reader();
            self.add_log_reader(reader, skip)
                .map_err(|source| FeedbackLogError { path, source })?;
            skip = skip.saturating_sub(size);
        }
        Ok(())
    }

    /// Reads one log's lines, skipping those that start before byte `skip`.
    fn add_log_reader(&mut self, reader: impl std::io::BufRead, skip: u64) -> std::io::Result<()> {
        for_each_line(reader, MAX_LINE_BYTES, skip, |raw| self.add_line(raw))
    }

    fn add_line(&mut self, raw: Raw<'_>) {
        self.counts.feedback_lines += 1;
        let skipped = &mut self.counts.skipped;
        let reason = match raw {
            Raw::OverBudget => &mut skipped.over_budget,
            Raw::TooLong => &mut skipped.malformed,
            Raw::Line(line) => match parse_line(line) {
                Line::WithoutText => &mut skipped.without_text,
                Line::Malformed => &mut skipped.malformed,
                Line::Example { text, label } => return self.add_example(text, label),
            },
        };
        *reason += 1;
    }

    /// A feedback example: trained on, or skipped for its label.
    fn add_example(&mut self, text: String, label: String) {
        let skipped = &mut self.counts.skipped;
        if label.len() > MAX_NAME_BYTES {
            skipped.label_too_long += 1;
        } else if name_problem(&label).is_some() {
            // A control character: no server writes one, no model serves one.
            skipped.malformed += 1;
        } else if !self.allow_new_classes && !self.known.contains(&label) {
            skipped.unknown_label += 1;
            let named = &mut self.counts.unknown_labels;
            if let Some(n) = named.get_mut(&label) {
                *n += 1;
            } else if named.len() < NAMED_UNKNOWN_LABELS {
                named.insert(label, 1);
            }
        } else if let Some(label) = self.intern(&label) {
            self.counts.feedback_examples += 1;
            self.add(text, label);
        } else {
            self.counts.skipped.too_many_labels += 1;
        }
    }

    /// A CSV's label: checked, known from now on, interned.
    fn csv_label(&mut self, label: &str, input: &str) -> Result<u16, MergeError> {
        if label.len() > MAX_NAME_BYTES {
            return Err(MergeError::LabelTooLong {
                input: input.to_owned(),
                bytes: label.len(),
            });
        }
        if name_problem(label).is_some() {
            return Err(MergeError::LabelControl {
                input: input.to_owned(),
            });
        }
        let index = self
            .intern(label)
            .ok_or_else(|| MergeError::TooManyClasses {
                input: input.to_owned(),
            })?;
        if !self.known.contains(label) {
            self.known.insert(label.to_owned());
        }
        Ok(index)
    }

    /// The index of `label`, added if new and there is room for it.
    fn intern(&mut self, label: &str) -> Option<u16> {
        if let Some(i) = self.labels.iter().position(|l| l == label) {
            return Some(i as u16);
        }
        if self.labels.len() >= MAX_CLASSES {
            return None;
        }
        self.labels.push(label.to_owned());
        Some((self.labels.len() - 1) as u16)
    }

    fn add(&mut self, text: String, label: u16) {
        let key = text_key(&text);
        match self.index.entry(key) {
            Entry::Occupied(e) => {
                let row = &mut self.rows[*e.get() as usize];
                if row.label == label {
                    self.counts.duplicates += 1;
                } else {
                    row.label = label;
                    self.counts.relabelled += 1;
                }
            }
            Entry::Vacant(e) => {
                e.insert(self.rows.len() as u32);
                self.rows.push(Row {
                    text,
                    label,
                    held: self.held.contains(&key),
                });
            }
        }
    }

    /// Makes the labels of base counts known: feedback may carry them.
    pub fn know_labels(&mut self, labels: &[String]) {
        self.known.extend(labels.iter().cloned());
    }

    /// The training set, once every input is in: holdout texts removed,
    /// checked to have at least two classes and every holdout label.
    pub fn finish(self) -> Result<Merged, MergeError> {
        self.finish_over(&BTreeMap::new())
    }

    /// [`Merger::finish`] for rows trained on together with documents
    /// counted before (`base`: documents per label), which the checks and
    /// the counts include. The base's texts are gone: they are neither
    /// deduplicated against the rows nor checked against the holdout.
    pub fn finish_over(self, base: &BTreeMap<String, u64>) -> Result<Merged, MergeError> {
        let base_total: u64 = base.values().sum();
        let Self {
            labels,
            holdout_labels,
            mut rows,
            mut counts,
            index,
            held,
            ..
        } = self;
        drop((index, held));
        let skipped = &counts.skipped;
        counts.without_text = skipped.without_text;
        counts.malformed = skipped.malformed + skipped.label_too_long + skipped.too_many_labels;
        if rows.is_empty() && base_total == 0 {
            return Err(MergeError::Empty);
        }
        let before = rows.len() as u64;
        rows.retain(|r| !r.held);
        counts.holdout_overlap = before - rows.len() as u64;
        if rows.is_empty() && base_total == 0 {
            return Err(MergeError::HoldoutCoversAll(before));
        }
        let mut per_label = vec![0u64; labels.len()];
        for r in &rows {
            per_label[r.label as usize] += 1;
        }
        counts.class_counts = base.clone();
        counts.class_counts.retain(|_, n| *n > 0);
        for (l, &n) in labels.iter().zip(&per_label).filter(|(_, &n)| n > 0) {
            *counts.class_counts.entry(l.clone()).or_insert(0) += n;
        }
        counts.base_counts_documents = base_total;
        if counts.class_counts.len() == 1 {
            let only = counts.class_counts.keys().next().expect("one class");
            return Err(MergeError::OneClass(only.clone()));
        }
        // The holdout's labels were interned first, in order of appearance.
        if let Some(label) = labels[..holdout_labels]
            .iter()
            .find(|l| !counts.class_counts.contains_key(*l))
        {
            return Err(MergeError::UnknownHoldoutLabel {
                label: label.clone(),
                known: counts
                    .class_counts
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        counts.training_documents = rows.len() as u64 + base_total;
        let mut hash = Sha256::new();
        for r in &rows {
            let (t, l) = (&r.text, &labels[r.label as usize]);
            // Lengths first, so no text/label split can collide with another.
            hash.update((t.len() as u64).to_le_bytes());
            hash.update(t.as_bytes());
            hash.update((l.len() as u64).to_le_bytes());
            hash.update(l.as_bytes());
        }
        let (texts, row_labels) = rows
            .into_iter()
            .map(|r| (r.text, labels[r.label as usize].clone()))
            .unzip();
        Ok(Merged {
            train: Dataset {
                texts,
                labels: row_labels,
                sha256: hex::encode(hash.finalize()),
            },
            counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rows: &[(&str, &str)]) -> Dataset {
        Dataset {
            texts: rows.iter().map(|r| r.0.to_owned()).collect(),
            labels: rows.iter().map(|r| r.1.to_owned()).collect(),
            sha256: String::new(),
        }
    }

    /// JSON lines as the server writes them for `/examples`.
    fn log(rows: &[(&str, &str)]) -> String {
        rows.iter()
            .map(|(t, l)| {
                format!(
                    "{}\n",
                    serde_json::json!({"source": "example", "text": t, "label": l})
                )
            })
            .collect()
    }

    const HAM_SPAM: &[(&str, &str)] = &[("held ham", "ham"), ("held spam", "spam")];

    /// Merges with the policy's defaults: holdout `holdout`, no model in
    /// service, new classes refused.
    fn merge(base: &[Dataset], logs: &[String], holdout: &Dataset) -> Result<Merged, MergeError> {
        merge_with(base, logs, holdout, None, false)
    }

    fn merge_with(
        base: &[Dataset],
        logs: &[String],
        holdout: &Dataset,
        current: Option<&[String]>,
        allow_new_classes: bool,
    ) -> Result<Merged, MergeError> {
        let mut m = Merger::new(holdout, "holdout.csv", current, allow_new_classes)?;
        for (i, b) in base.iter().enumerate() {
            m.add_base(b.clone(), &format!("base{i}.csv"))?;
        }
        for l in logs {
            m.add_log_reader(l.as_bytes(), 0).unwrap();
        }
        m.finish()
    }

    fn pairs(m: &Merged) -> Vec<(&str, &str)> {
        m.train
            .texts
            .iter()
            .zip(&m.train.labels)
            .map(|(t, l)| (t.as_str(), l.as_str()))
            .collect()
    }

    /// Every line read was taken or skipped for one reason.
    fn assert_accounted(c: &DataCounts) {
        let s = &c.skipped;
        let skipped = s.without_text
            + s.malformed
            + s.label_too_long
            + s.too_many_labels
            + s.unknown_label
            + s.over_budget;
        assert_eq!(c.feedback_lines, c.feedback_examples + skipped, "{c:?}");
        assert_eq!(
            c.malformed,
            s.malformed + s.label_too_long + s.too_many_labels
        );
    }

    #[test]
    fn last_label_wins_and_duplicates_are_dropped() {
        let base = [
            data(&[("a", "ham"), ("b", "spam"), ("a", "ham"), ("c", "ham")]),
            data(&[("b", "ham"), ("d", "spam")]),
        ];
        let logs = [log(&[("c", "spam"), ("e", "ham")]), log(&[("c", "ham")])];
        let m = merge(&base, &logs, &data(&[("zz", "ham"), ("yy", "spam")])).unwrap();
        assert_eq!(
            pairs(&m),
            vec![
                ("a", "ham"),
                ("b", "ham"),
                ("c", "ham"),
                ("d", "spam"),
                ("e", "ham")
            ]
        );
        let c = &m.counts;
        assert_eq!(
            (c.base_rows, c.feedback_lines, c.feedback_examples),
            (6, 3, 3)
        );
        assert_eq!((c.duplicates, c.relabelled), (1, 3));
        assert_eq!((c.training_documents, c.holdout_documents), (5, 2));
        assert_eq!(c.class_counts["ham"], 4);
        assert_eq!(c.class_counts["spam"], 1);
        assert_accounted(c);
    }

    #[test]
    fn feedback_overrides_a_base_row() {
        let base = [data(&[("x", "ham"), ("y", "spam"), ("z", "ham")])];
        let m = merge(&base, &[log(&[("x", "spam")])], &data(HAM_SPAM)).unwrap();
        assert_eq!(pairs(&m), vec![("x", "spam"), ("y", "spam"), ("z", "ham")]);
        assert_eq!((m.counts.relabelled, m.counts.duplicates), (1, 0));
    }

    #[test]
    fn skipped_lines_are_counted_by_reason() {
        let text = concat!(
            r#"{"source":"feedback","prediction_id":"a","label":"spam","text":"win money"}"#,
            "\n",
            r#"{"source":"feedback","prediction_id":"b","label":"ham"}"#,
            "\n",
            "not json\n",
            "[1,2]\n",
            "\n",
            r#"{"source":"example","text":"hi mum","label":" ham "}"#,
            "\r\n",
            r#"{"source":"example","text":"cut sh"#,
        );
        let base = [data(&[("a", "ham"), ("b", "spam")])];
        let m = merge(&base, &[text.to_owned()], &data(HAM_SPAM)).unwrap();
        assert_eq!(&pairs(&m)[2..], [("win money", "spam"), ("hi mum", "ham")]);
        let c = &m.counts;
        assert_eq!((c.feedback_lines, c.feedback_examples), (7, 2));
        assert_eq!((c.without_text, c.malformed), (1, 4));
        assert_accounted(c);
    }

    #[test]
    fn holdout_texts_are_removed_and_counted() {
        let base = [data(&[
            ("a", "ham"),
            ("b", "spam"),
            ("c", "ham"),
            ("d", "spam"),
        ])];
        let holdout = data(&[("b", "ham"), ("c", "ham"), ("new", "spam")]);
        let m = merge(&base, &[], &holdout).unwrap();
        assert_eq!(pairs(&m), vec![("a", "ham"), ("d", "spam")]);
        assert_eq!(m.counts.holdout_overlap, 2);
        assert_eq!(m.counts.training_documents, 2);
        // The same fingerprint as before the merge streamed (same formula).
        assert_eq!(
            m.train.sha256,
            "ca176c0de861438f9286bbbb9bfbb9729d34751b16422d5e183c72840922a3b2"
        );
        let again = merge(&base, &[], &holdout).unwrap();
        assert_eq!(m.train.sha256, again.train.sha256);
        let other = merge(&base, &[log(&[("e", "spam")])], &holdout).unwrap();
        assert_ne!(m.train.sha256, other.train.sha256);
        // Feedback on a holdout text is counted, then removed with it.
        let m = merge(&base, &[log(&[("new", "ham"), ("new", "ham")])], &holdout).unwrap();
        assert_eq!((m.counts.holdout_overlap, m.counts.duplicates), (3, 1));
    }

    #[test]
    fn refuses_data_that_cannot_train_for_the_holdout() {
        let base = [data(&[("a", "ham"), ("b", "spam")])];
        assert_eq!(
            merge(&base, &[], &data(&[("a", "ham"), ("b", "spam")])).unwrap_err(),
            MergeError::HoldoutCoversAll(2)
        );
        assert_eq!(
            merge(&base, &[], &data(&[("b", "spam")])).unwrap_err(),
            MergeError::OneClass("ham".into())
        );
        let e = merge(&base, &[], &data(&[("z", "eggs")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the holdout has the label \"eggs\", which the merged training data lacks (labels: ham, spam)"
        );
        assert_eq!(
            merge(&[], &[String::new()], &data(&[("z", "ham")])).unwrap_err(),
            MergeError::Empty
        );
    }

    #[test]
    fn feedback_labels_cannot_add_a_class_unless_allowed() {
        let base = [data(&[("a", "ham"), ("b", "spam")])];
        let mut lines: Vec<(String, &str)> = (0..30)
            .map(|i| (format!("cheap pills {i}"), "pharma"))
            .collect();
        lines.push(("lunch?".into(), "ham"));
        lines.push(("eggs and spam".into(), "eggs"));
        let rows: Vec<(&str, &str)> = lines.iter().map(|(t, l)| (t.as_str(), *l)).collect();
        let logs = [log(&rows)];
        let m = merge(&base, &logs, &data(HAM_SPAM)).unwrap();
        let c = &m.counts;
        assert_eq!(c.class_counts.keys().collect::<Vec<_>>(), ["ham", "spam"]);
        assert_eq!((c.skipped.unknown_label, c.feedback_examples), (31, 1));
        assert_eq!(
            c.unknown_labels,
            BTreeMap::from([("eggs".to_owned(), 1), ("pharma".to_owned(), 30)])
        );
        assert_eq!(c.malformed, 0);
        assert_accounted(c);

        // A class of the model in service is known, whatever the holdout has.
        let current = ["eggs".to_owned(), "spam".to_owned()];
        let m = merge_with(&base, &logs, &data(HAM_SPAM), Some(&current), false).unwrap();
        assert_eq!(m.counts.class_counts["eggs"], 1);
        assert_eq!(m.counts.skipped.unknown_label, 30);

        // So is a label of the operator's base data (which may add a class).
        let with_pharma = [data(&[("a", "ham"), ("b", "spam"), ("c", "pharma")])];
        let m = merge(&with_pharma, &logs, &data(HAM_SPAM)).unwrap();
        assert_eq!(m.counts.class_counts["pharma"], 31);
        assert_eq!(m.counts.unknown_labels.keys().collect::<Vec<_>>(), ["eggs"]);

        // The explicit flag takes them all.
        let m = merge_with(&base, &logs, &data(HAM_SPAM), None, true).unwrap();
        assert_eq!(m.counts.class_counts["pharma"], 30);
        assert_eq!(m.counts.class_counts["eggs"], 1);
        assert_eq!(m.counts.skipped, Skipped::default());
        assert_accounted(&m.counts);

        // Only the first few unknown labels are named; all are counted.
        let many: Vec<(String, String)> = (0..50)
            .map(|i| (format!("t{i}"), format!("l{i:02}")))
            .collect();
        let rows: Vec<(&str, &str)> = many.iter().map(|(t, l)| (t.as_str(), l.as_str())).collect();
        let m = merge(&base, &[log(&rows)], &data(HAM_SPAM)).unwrap();
        assert_eq!(m.counts.skipped.unknown_label, 50);
        assert_eq!(m.counts.unknown_labels.len(), NAMED_UNKNOWN_LABELS);
    }

    #[test]
    fn labels_no_model_could_serve_are_malformed_lines_not_a_failure() {
        let base = [data(&[("a", "ham"), ("b", "spam")])];
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let huge = "y".repeat(1_000_000);
        let logs = [log(&[("t1", &long), ("t2", &huge), ("t3", "ham")])];
        for allow in [false, true] {
            let m = merge_with(&base, &logs, &data(HAM_SPAM), None, allow).unwrap();
            let c = &m.counts;
            assert_eq!((c.skipped.label_too_long, c.malformed), (2, 2), "{allow}");
            assert!(c.unknown_labels.is_empty());
            assert_eq!(c.class_counts.len(), 2);
            assert_accounted(c);
        }
        // Up to MAX_CLASSES labels in all; the lines of any label past it
        // are malformed, those of labels already in stay examples.
        let many: Vec<(String, String)> = (0..=MAX_CLASSES + 20)
            .map(|i| (format!("t{i}"), format!("l{:03}", i % (MAX_CLASSES + 10))))
            .collect();
        let rows: Vec<(&str, &str)> = many.iter().map(|(t, l)| (t.as_str(), l.as_str())).collect();
        let m = merge_with(&base, &[log(&rows)], &data(HAM_SPAM), None, true).unwrap();
        let c = &m.counts;
        assert_eq!(c.class_counts.len(), MAX_CLASSES);
        // ham and spam first, then 98 of the 110 new labels: the other 12
        // labels' lines are skipped (one line each).
        assert_eq!(c.skipped.too_many_labels, 12);
        assert_eq!(c.feedback_examples, (MAX_CLASSES + 21 - 12) as u64);
        assert_eq!(c.malformed, 12);
        assert_accounted(c);
        // Without the flag the same labels are unknown, never a failure.
        let m = merge(&base, &[log(&rows)], &data(HAM_SPAM)).unwrap();
        assert_eq!(m.counts.skipped.unknown_label, (MAX_CLASSES + 21) as u64);
    }

    #[test]
    fn csv_labels_no_model_could_serve_are_refused_by_name() {
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let e = Merger::new(&data(&[("a", &long)]), "h.csv", None, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("h.csv: a label of {} bytes; a served model's labels are at most {MAX_NAME_BYTES} bytes", MAX_NAME_BYTES + 1)
        );
        let mut m = Merger::new(&data(HAM_SPAM), "h.csv", None, false).unwrap();
        let labels: Vec<String> = (0..MAX_CLASSES).map(|i| format!("c{i}")).collect();
        let rows: Vec<(&str, &str)> = labels.iter().map(|l| (l.as_str(), l.as_str())).collect();
        let e = m.add_base(data(&rows), "base.csv").unwrap_err();
        assert_eq!(
            e,
            MergeError::TooManyClasses {
                input: "base.csv".into()
            }
        );
    }

    #[test]
    fn a_byte_budget_keeps_the_newest_lines_of_the_logs() {
        let dir = tempfile::tempdir().unwrap();
        let old = log(&[("o1", "ham"), ("o2", "spam")]);
        let new = log(&[("n1", "ham"), ("n2", "spam")]);
        let line = new.lines().nth(1).unwrap().len() as u64 + 1;
        let mut paths = Vec::new();
        for (name, body) in [("old.jsonl", &old), ("new.jsonl", &new)] {
            paths.push(dir.path().join(name));
            std::fs::write(paths.last().unwrap(), body).unwrap();
        }
        let open = || {
            paths
                .iter()
                .map(|p| OpenLog::open(p).unwrap())
                .collect::<Vec<_>>()
        };
        let run = |budget: u64| {
            let mut m = Merger::new(&data(HAM_SPAM), "h", None, false).unwrap();
            m.add_logs(open(), budget).unwrap();
            m.finish()
        };
        let total = (old.len() + new.len()) as u64;
        let all = run(total).unwrap();
        assert_eq!(all.counts.training_documents, 4);
        assert_eq!(
            (all.counts.feedback_bytes, all.counts.max_log_bytes),
            (total, total)
        );
        // One byte short: the oldest line goes.
        let m = run(total - 1).unwrap();
        assert_eq!(m.counts.skipped.over_budget, 1);
        assert_eq!(pairs(&m), [("o2", "spam"), ("n1", "ham"), ("n2", "spam")]);
        assert_accounted(&m.counts);
        // The last line's worth: the newest line only, so one class.
        assert_eq!(run(line).unwrap_err(), MergeError::OneClass("spam".into()));
        assert_eq!(run(0).unwrap_err(), MergeError::Empty);
    }

    #[test]
    fn model_classes_reads_only_what_a_served_model_may_have() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/spam-nb.json");
        let shipped = std::fs::read(path).unwrap();
        assert_eq!(model_classes(&shipped).unwrap(), ["ham", "spam"]);
        assert_eq!(
            model_classes(br#"{"classes": ["a", "b"], "x": [1]}"#).unwrap(),
            ["a", "b"]
        );
        for bad in [
            &b"not json"[..],
            br#"{"classes": ["a"]}"#,
            br#"{"classes": "ab"}"#,
            br#"{"vocabulary": []}"#,
        ] {
            assert_eq!(model_classes(bad), None);
        }
        let many = serde_json::json!({"classes": (0..=MAX_CLASSES).map(|i| i.to_string()).collect::<Vec<_>>()});
        assert_eq!(model_classes(many.to_string().as_bytes()), None);
        let long = serde_json::json!({"classes": ["a", "x".repeat(MAX_NAME_BYTES + 1)]});
        assert_eq!(model_classes(long.to_string().as_bytes()), None);
    }
}
