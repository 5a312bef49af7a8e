//! Reading feedback logs: JSON lines streamed one at a time, each parsed
//! into what the merge needs and then dropped, so memory never grows with
//! the file, only with the examples kept.

use std::fs::File;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::fsio;

/// Longest feedback-log line read, in bytes (without its newline): a line
/// the server writes holds one text of at most `server.max_text_bytes`
/// (1 MB by default), at most 6 bytes per byte once JSON-escaped. A longer
/// line is skipped as `malformed` without ever being held in memory, so a
/// corrupt or hostile log cannot exhaust it.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// A line buffer that grew past this is given back after its line, so one
/// long line does not keep its memory for the rest of the run.
const KEEP_BUFFER_BYTES: usize = 1 << 20;

/// Why a feedback log cannot be read at all (a bad line never is).
#[derive(Debug, thiserror::Error)]
#[error("cannot read feedback log {path}: {source}")]
pub struct FeedbackLogError {
    /// The log.
    pub path: PathBuf,
    /// The cause (a missing file among them).
    pub source: std::io::Error,
}

/// A feedback log opened for reading, and its size when opened: it is read
/// up to that size, so a log the server is still appending to is read as
/// it was (a last line still being written counts as `malformed`; the next
/// run reads it whole).
#[derive(Debug)]
pub struct OpenLog {
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) size: u64,
}

impl OpenLog {
    /// Opens `path` by [`fsio::open_regular_following`]: a regular file
    /// (symlinks followed), so a FIFO cannot stall the open and `/dev/zero`
    /// and other devices are refused rather than read for ever.
    pub fn open(path: &Path) -> Result<Self, FeedbackLogError> {
        let fail = |source| FeedbackLogError {
            path: path.to_owned(),
            source,
        };
        let file =
            fsio::open_regular_following(path, u64::MAX).map_err(|e| fail(e.into_io_error()))?;
        let meta = file.metadata().map_err(fail)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            size: meta.len(),
        })
    }

    /// Its size in bytes when opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// A buffered reader of its first [`size`](Self::size) bytes.
    pub(super) fn reader(self) -> (PathBuf, impl BufRead) {
        let reader = std::io::BufReader::with_capacity(1 << 16, self.file.take(self.size));
        (self.path, reader)
    }
}

/// What one line of a feedback log holds.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A JSON object with a string `text` and a non-empty string `label`
    /// (trimmed); other fields are ignored.
    Example {
        /// The text.
        text: String,
        /// The label, trimmed.
        label: String,
    },
    /// An object with a `label` and no `text`: feedback whose text the
    /// server did not keep.
    WithoutText,
    /// Anything else: not JSON, not an object, wrong types, an empty label,
    /// a line cut short, invalid UTF-8.
    Malformed,
}

/// The two fields a line is read for; `None` when absent, `Some(None)`
/// when `null` (which is malformed, not absent).
#[derive(Deserialize)]
struct Fields {
    #[serde(default, deserialize_with = "present")]
    text: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    label: Option<Option<String>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Parses one line (a trailing `\r` ignored). Only the text and the label
/// are kept; other fields are skipped without being held.
pub fn parse_line(line: &[u8]) -> Line {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // serde would also read the two fields from a JSON array.
    if line.trim_ascii_start().first() != Some(&b'{') {
        return Line::Malformed;
    }
    let Ok(fields) = serde_json::from_slice::<Fields>(line) else {
        return Line::Malformed;
    };
    let label = match fields.label {
        Some(Some(l)) if !l.trim().is_empty() => Some(l),
        _ => None,
    };
    match (fields.text, label) {
        (Some(Some(text)), Some(label)) => Line::Example {
            text,
            label: match label.trim() {
                t if t.len() == label.len() => label,
                t => t.to_owned(),
            },
        },
        (None, Some(_)) => Line::WithoutText,
        _ => Line::Malformed,
    }
}

/// One line as [`for_each_line`] hands it over.
#[derive(Debug, PartialEq)]
pub(super) enum Raw<'a> {
    /// The line's bytes, without its newline.
    Line(&'a [u8]),
    /// Longer than the cap: dropped unread.
    TooLong,
    /// Started before the byte budget's first kept byte: dropped unread.
    OverBudget,
}

/// Reads `reader` one line at a time and calls `each` once per line (a
/// final line without a newline included), buffering at most `max_line`
/// bytes of a line: the rest of a longer one is consumed and dropped
/// ([`Raw::TooLong`]). Lines that start before byte `skip` are consumed
/// without being buffered ([`Raw::OverBudget`]).
pub(super) fn for_each_line(
    mut reader: impl BufRead,
    max_line: usize,
    skip: u64,
    mut each: impl FnMut(Raw<'_>),
) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut too_long = false;
    let mut over_budget = false;
    let mut started = false;
    let mut offset = 0u64;
    let mut emit = |line: &mut Vec<u8>, too_long: bool, over_budget: bool| {
        each(if over_budget {
            Raw::OverBudget
        } else if too_long {
            Raw::TooLong
        } else {
            Raw::Line(line)
        });
        if line.capacity() > KEEP_BUFFER_BYTES {
            *line = Vec::new();
        }
        line.clear();
    };
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if started {
                emit(&mut line, too_long, over_budget);
            }
            return Ok(());
        }
        if !started {
            started = true;
            over_budget = offset < skip;
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        if !over_budget && !too_long {
            if line.len() + chunk.len() > max_line {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(newline.is_some());
        reader.consume(used);
        offset += used as u64;
        if newline.is_some() {
            emit(&mut line, too_long, over_budget);
            too_long = false;
            started = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max_line: usize, skip: u64, capacity: usize) -> Vec<String> {
        let mut out = Vec::new();
        let reader = std::io::BufReader::with_capacity(capacity, input);
        for_each_line(reader, max_line, skip, |raw| {
            out.push(match raw {
                Raw::Line(l) => String::from_utf8_lossy(l).into_owned(),
                Raw::TooLong => "<too long>".into(),
                Raw::OverBudget => "<over budget>".into(),
            })
        })
        .unwrap();
        out
    }

    #[test]
    fn parses_examples_and_tells_what_it_skips() {
        let example = |t: &str, l: &str| Line::Example {
            text: t.into(),
            label: l.into(),
        };
        let cases: [(&str, Line); 14] = [
            (
                r#"{"source":"feedback","prediction_id":"a","label":"spam","text":"win money"}"#,
                example("win money", "spam"),
            ),
            (
                r#"{"source":"example","text":"hi\nmum","label":" ham "}"#,
                example("hi\nmum", "ham"),
            ),
            ("{\"text\":\"a\",\"label\":\"b\"}\r", example("a", "b")),
            (
                r#"{"source":"feedback","prediction_id":"b","label":"ham"}"#,
                Line::WithoutText,
            ),
            ("not json", Line::Malformed),
            ("", Line::Malformed),
            (r#"["win money", "spam"]"#, Line::Malformed),
            (r#"{"text": 3, "label": "ham"}"#, Line::Malformed),
            (r#"{"text": null, "label": "ham"}"#, Line::Malformed),
            (r#"{"text": "no label"}"#, Line::Malformed),
            (r#"{"text": "x", "label": null}"#, Line::Malformed),
            (r#"{"text": "empty label", "label": "  "}"#, Line::Malformed),
            (r#"{"text": "x", "label": 3}"#, Line::Malformed),
            (r#"{"source":"example","text":"cut sh"#, Line::Malformed),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_line(line.as_bytes()), expected, "{line}");
        }
        assert_eq!(
            parse_line(b"{\"text\":\"\xff\",\"label\":\"b\"}"),
            Line::Malformed
        );
    }

    #[test]
    fn a_line_over_the_cap_is_dropped_and_never_buffered_whole() {
        let huge = format!("{{\"text\":\"{}\",\"label\":\"spam\"}}", "x".repeat(5000));
        let input = format!("{huge}\nok\r\n{huge}");
        // A reader that hands out 7 bytes at a time: lines span many reads.
        assert_eq!(
            lines(input.as_bytes(), 100, 0, 7),
            ["<too long>", "ok\r", "<too long>"]
        );
        // Under the cap, the same long line is read whole.
        assert_eq!(lines(huge.as_bytes(), 6000, 0, 7), [huge.as_str()]);
        assert!(lines(b"", 100, 0, 7).is_empty());
        assert_eq!(lines(b"\n\n", 100, 0, 7), ["", ""]);
    }

    #[test]
    fn lines_starting_before_the_budget_are_dropped_unread() {
        let input = b"aaaa\nbbbb\ncccc\ndd";
        // Byte 7 is inside "bbbb": that line started before it, so it goes too.
        for capacity in [1, 3, 64] {
            assert_eq!(
                lines(input, 100, 7, capacity),
                ["<over budget>", "<over budget>", "cccc", "dd"]
            );
            assert_eq!(lines(input, 100, 5, capacity)[1], "bbbb");
            assert_eq!(lines(input, 100, 0, capacity)[0], "aaaa");
            assert!(lines(input, 100, 99, capacity)
                .iter()
                .all(|l| l == "<over budget>"));
        }
    }

    #[test]
    fn only_a_regular_file_is_opened_and_read_up_to_its_size_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, "one\ntwo\n").unwrap();
        let log = OpenLog::open(&path).unwrap();
        assert_eq!(log.size(), 8);
        // Appended after the open: not read by this run.
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let (_, reader) = log.reader();
        let mut out = Vec::new();
        for_each_line(reader, 100, 0, |raw| out.push(format!("{raw:?}"))).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        for bad in [dir.path().join("missing"), dir.path().to_owned()] {
            let e = OpenLog::open(&bad).unwrap_err();
            assert!(e.to_string().starts_with("cannot read feedback log"), "{e}");
        }
        #[cfg(unix)]
        {
            let e = OpenLog::open(Path::new("/dev/zero")).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
    }
}
