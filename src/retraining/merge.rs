//! Training data for a retrain: base CSVs and feedback logs merged into one
//! labelled set, with the fixed holdout's texts kept out of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::dataset::Dataset;

/// One feedback log as `nbserve retrain` reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedbackLog {
    /// Labelled examples `(text, label)`, in file order.
    pub examples: Vec<(String, String)>,
    /// Lines read (a final line without a newline included).
    pub lines: u64,
    /// JSON objects with a `label` but no `text` (feedback whose text the
    /// server did not keep).
    pub without_text: u64,
    /// Lines that are not a JSON object with string `text` and `label`.
    pub malformed: u64,
}

/// Why a feedback log cannot be read at all (a bad line never is).
#[derive(Debug, thiserror::Error)]
#[error("cannot read feedback log {path}: {source}")]
pub struct FeedbackLogError {
    /// The log.
    pub path: PathBuf,
    /// The cause (a missing file among them).
    pub source: std::io::Error,
}

/// Longest feedback-log line read, in bytes (without its newline): a line
/// the server writes holds one text of at most `server.max_text_bytes`
/// (1 MB by default), at most 6 bytes per byte once JSON-escaped. A longer
/// line is skipped as `malformed` without ever being held in memory, so a
/// corrupt or hostile log cannot exhaust it.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Reads the feedback log at `path` line by line (see
/// [`parse_feedback_log`]); memory is bounded by the examples kept and
/// [`MAX_LINE_BYTES`], not by the file. A log still being appended to is
/// read up to the end seen; a last line without its newline yet counts as
/// `malformed` (the next run reads it whole).
pub fn read_feedback_log(path: &Path) -> Result<FeedbackLog, FeedbackLogError> {
    let fail = |source| FeedbackLogError {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(fail)?;
    read_lines(
        std::io::BufReader::with_capacity(1 << 16, file),
        MAX_LINE_BYTES,
    )
    .map_err(fail)
}

/// Parses JSON lines: a line is a labelled example iff it is a JSON object
/// with a string `text` and a non-empty string `label`; an object with a
/// `label` and no `text` counts as `without_text`; anything else (not JSON,
/// not an object, wrong types, a line cut short by a crash, a line longer
/// than [`MAX_LINE_BYTES`]) as `malformed`. No line is fatal.
pub fn parse_feedback_log(bytes: &[u8]) -> FeedbackLog {
    read_lines(bytes, MAX_LINE_BYTES).expect("reading a slice cannot fail")
}

/// Reads `reader` one line at a time, buffering at most `max_line` bytes
/// of a line: the rest of a longer one is consumed and dropped.
fn read_lines(mut reader: impl BufRead, max_line: usize) -> std::io::Result<FeedbackLog> {
    let mut log = FeedbackLog::default();
    let mut line = Vec::new();
    let mut too_long = false;
    let mut started = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if started {
                parse_line(&mut log, &line, too_long);
            }
            return Ok(log);
        }
        started = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        if !too_long {
            if line.len() + chunk.len() > max_line {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            parse_line(&mut log, &line, too_long);
            line.clear();
            too_long = false;
            started = false;
        }
    }
}

fn parse_line(log: &mut FeedbackLog, line: &[u8], too_long: bool) {
    log.lines += 1;
    if too_long {
        log.malformed += 1;
        return;
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(line) else {
        log.malformed += 1;
        return;
    };
    let label = object
        .get("label")
        .and_then(|l| l.as_str())
        .map(str::trim)
        .filter(|l| !l.is_empty());
    match (object.get("text"), label) {
        (Some(serde_json::Value::String(text)), Some(label)) => {
            log.examples.push((text.clone(), label.to_owned()));
        }
        (None, Some(_)) => log.without_text += 1,
        _ => log.malformed += 1,
    }
}

/// What went into the training data and what was left out, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DataCounts {
    /// Rows of the `--data` CSVs.
    pub base_rows: u64,
    /// Lines of the feedback logs.
    pub feedback_lines: u64,
    /// Labelled examples found in the feedback logs.
    pub feedback_examples: u64,
    /// Feedback lines without text (skipped).
    pub without_text: u64,
    /// Malformed feedback lines (skipped).
    pub malformed: u64,
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
}

/// Merges `base` CSVs then `logs`, in that order: for a repeated text the
/// last label wins (`relabelled`), a repeated text with the same label is
/// dropped (`duplicates`), so feedback overrides a base row with its text.
/// Texts in `holdout` are then removed (`holdout_overlap`). Each text keeps
/// the position of its first appearance.
pub fn merge(
    base: &[Dataset],
    logs: &[FeedbackLog],
    holdout: &Dataset,
) -> Result<Merged, MergeError> {
    let mut counts = DataCounts {
        holdout_documents: holdout.len() as u64,
        ..DataCounts::default()
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut add = |text: &str, label: &str, counts: &mut DataCounts| match index.get(text) {
        Some(&i) if rows[i].1 == label => counts.duplicates += 1,
        Some(&i) => {
            rows[i].1 = label.to_owned();
            counts.relabelled += 1;
        }
        None => {
            index.insert(text.to_owned(), rows.len());
            rows.push((text.to_owned(), label.to_owned()));
        }
    };
    for data in base {
        counts.base_rows += data.len() as u64;
        for (t, l) in data.texts.iter().zip(&data.labels) {
            add(t, l, &mut counts);
        }
    }
    for log in logs {
        counts.feedback_lines += log.lines;
        counts.feedback_examples += log.examples.len() as u64;
        counts.without_text += log.without_text;
        counts.malformed += log.malformed;
        for (t, l) in &log.examples {
            add(t, l, &mut counts);
        }
    }
    if rows.is_empty() {
        return Err(MergeError::Empty);
    }
    let held: HashSet<&str> = holdout.texts.iter().map(String::as_str).collect();
    let before = rows.len() as u64;
    rows.retain(|(t, _)| !held.contains(t.as_str()));
    counts.holdout_overlap = before - rows.len() as u64;
    if rows.is_empty() {
        return Err(MergeError::HoldoutCoversAll(before));
    }
    for (_, l) in &rows {
        *counts.class_counts.entry(l.clone()).or_insert(0) += 1;
    }
    if counts.class_counts.len() == 1 {
        let only = counts.class_counts.keys().next().expect("one class");
        return Err(MergeError::OneClass(only.clone()));
    }
    if let Some(label) = holdout
        .labels
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
    counts.training_documents = rows.len() as u64;
    let mut hash = Sha256::new();
    for (t, l) in &rows {
        // Lengths first, so no text/label split can collide with another.
        hash.update((t.len() as u64).to_le_bytes());
        hash.update(t.as_bytes());
        hash.update((l.len() as u64).to_le_bytes());
        hash.update(l.as_bytes());
    }
    let (texts, labels) = rows.into_iter().unzip();
    Ok(Merged {
        train: Dataset {
            texts,
            labels,
            sha256: hex::encode(hash.finalize()),
        },
        counts,
    })
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

    fn log(rows: &[(&str, &str)]) -> FeedbackLog {
        FeedbackLog {
            examples: rows
                .iter()
                .map(|r| (r.0.to_owned(), r.1.to_owned()))
                .collect(),
            lines: rows.len() as u64,
            ..FeedbackLog::default()
        }
    }

    fn pairs(m: &Merged) -> Vec<(&str, &str)> {
        m.train
            .texts
            .iter()
            .zip(&m.train.labels)
            .map(|(t, l)| (t.as_str(), l.as_str()))
            .collect()
    }

    #[test]
    fn parses_examples_and_counts_what_it_skips() {
        let text = concat!(
            r#"{"source":"feedback","prediction_id":"a","label":"spam","text":"win money"}"#,
            "\n",
            r#"{"source":"feedback","prediction_id":"b","label":"ham"}"#,
            "\n",
            "not json\n",
            "[1,2]\n",
            r#"{"text": 3, "label": "ham"}"#,
            "\n",
            r#"{"text": "no label"}"#,
            "\n",
            r#"{"text": "empty label", "label": "  "}"#,
            "\r\n",
            "\n",
            r#"{"source":"example","text":"hi mum","label":" ham "}"#,
            "\r\n",
            r#"{"source":"example","text":"cut sh"#,
        );
        let log = parse_feedback_log(text.as_bytes());
        assert_eq!(
            log.examples,
            vec![
                ("win money".to_owned(), "spam".to_owned()),
                ("hi mum".to_owned(), "ham".to_owned())
            ]
        );
        assert_eq!(log.lines, 10);
        assert_eq!(log.without_text, 1);
        assert_eq!(log.malformed, 7);
        assert_eq!(parse_feedback_log(b""), FeedbackLog::default());
        let one = parse_feedback_log(b"{\"text\":\"a\",\"label\":\"b\"}\n");
        assert_eq!((one.lines, one.malformed), (1, 0));
        let invalid_utf8 = parse_feedback_log(b"{\"text\":\"\xff\",\"label\":\"b\"}\n");
        assert_eq!((invalid_utf8.lines, invalid_utf8.malformed), (1, 1));
    }

    #[test]
    fn a_line_over_the_cap_is_malformed_and_never_buffered_whole() {
        let huge = format!("{{\"text\":\"{}\",\"label\":\"spam\"}}", "x".repeat(5000));
        let input = format!("{huge}\n{{\"text\":\"ok\",\"label\":\"ham\"}}\r\n{huge}");
        // A reader that hands out 7 bytes at a time: lines span many reads.
        let reader = std::io::BufReader::with_capacity(7, input.as_bytes());
        let log = read_lines(reader, 100).unwrap();
        assert_eq!(log.examples, vec![("ok".to_owned(), "ham".to_owned())]);
        assert_eq!((log.lines, log.malformed), (3, 2));
        // Under the cap, the same long line is an example.
        let log = read_lines(huge.as_bytes(), 6000).unwrap();
        assert_eq!((log.lines, log.examples.len()), (1, 1));
    }

    #[test]
    fn a_file_is_read_as_its_bytes_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let text = "{\"text\":\"a\",\"label\":\"b\"}\n\n{\"label\":\"c\"}\n{\"text\":\"cu";
        std::fs::write(&path, text).unwrap();
        let log = read_feedback_log(&path).unwrap();
        assert_eq!(log, parse_feedback_log(text.as_bytes()));
        assert_eq!((log.lines, log.malformed, log.without_text), (4, 2, 1));
        let e = read_feedback_log(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn last_label_wins_and_duplicates_are_dropped() {
        let base = [
            data(&[("a", "ham"), ("b", "spam"), ("a", "ham"), ("c", "ham")]),
            data(&[("b", "ham"), ("d", "spam")]),
        ];
        let logs = [log(&[("c", "spam"), ("e", "ham")]), log(&[("c", "ham")])];
        let m = merge(&base, &logs, &data(&[("zz", "ham")])).unwrap();
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
        assert_eq!((c.training_documents, c.holdout_documents), (5, 1));
        assert_eq!(c.class_counts["ham"], 4);
        assert_eq!(c.class_counts["spam"], 1);
    }

    #[test]
    fn feedback_overrides_a_base_row() {
        let base = [data(&[("x", "ham"), ("y", "spam"), ("z", "ham")])];
        let m = merge(&base, &[log(&[("x", "spam")])], &data(&[("q", "ham")])).unwrap();
        assert_eq!(pairs(&m), vec![("x", "spam"), ("y", "spam"), ("z", "ham")]);
        assert_eq!((m.counts.relabelled, m.counts.duplicates), (1, 0));
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
        assert_eq!(m.train.sha256.len(), 64);
        let again = merge(&base, &[], &holdout).unwrap();
        assert_eq!(m.train.sha256, again.train.sha256);
        let other = merge(&base, &[log(&[("e", "spam")])], &holdout).unwrap();
        assert_ne!(m.train.sha256, other.train.sha256);
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
            merge(&[], &[log(&[])], &data(&[("z", "ham")])).unwrap_err(),
            MergeError::Empty
        );
    }
}
