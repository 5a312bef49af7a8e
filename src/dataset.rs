//! Labelled CSV input, with errors that name the line.

use std::path::{Path, PathBuf};

use crate::fsio::{self, FsError};

/// The text column of a labelled CSV unless told otherwise (holdouts always).
pub const TEXT_COLUMN: &str = "text";
/// The label column of a labelled CSV unless told otherwise (holdouts always).
pub const LABEL_COLUMN: &str = "label";

/// Labelled documents read from a CSV file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Document texts.
    pub texts: Vec<String>,
    /// Labels, parallel to `texts`.
    pub labels: Vec<String>,
    /// sha256 (hex) of the file's bytes.
    pub sha256: String,
}

/// Why a CSV file cannot be used as a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is empty: no header line.
    #[error("{0}, line 1: the file is empty (expected a header line such as `text,label`, then data rows)")]
    NoHeader(PathBuf),
    /// A header but no data rows.
    #[error("{path}, line {line}: no data rows after the header")]
    NoRows {
        /// The file.
        path: PathBuf,
        /// 1-based line where the first data row was expected.
        line: u64,
    },
    /// A required column is not in the header.
    #[error("{path}: no column {column:?} in the header (columns: {available})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: String,
        /// The columns found.
        available: String,
    },
    /// A row could not be parsed.
    #[error("{path}, line {line}: {message}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

impl Dataset {
    /// Reads `path`, taking texts from `text_column` and labels from `label_column`.
    pub fn from_csv(
        path: &Path,
        text_column: &str,
        label_column: &str,
    ) -> Result<Self, DatasetError> {
        let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_csv_bytes(&bytes, path, text_column, label_column)
    }

    /// Reads a holdout: a labelled CSV with the default `text` and `label`
    /// columns (as `train` and `split` write them).
    pub fn holdout(path: &Path) -> Result<Self, DatasetError> {
        Self::from_csv(path, TEXT_COLUMN, LABEL_COLUMN)
    }

    /// Parses CSV bytes; `path` is only used in error messages.
    pub fn from_csv_bytes(
        bytes: &[u8],
        path: &Path,
        text_column: &str,
        label_column: &str,
    ) -> Result<Self, DatasetError> {
        let sha256 = crate::fsio::sha256_hex(bytes);
        let mut texts = Vec::new();
        let mut labels = Vec::new();
        let columns = Columns {
            text: text_column,
            label: label_column,
            extra: None,
        };
        let read = for_each_row(bytes, path, &columns, |row| {
            texts.push(row.text.to_owned());
            labels.push(row.label.to_owned());
            Ok(())
        })?;
        if texts.is_empty() {
            return Err(DatasetError::NoRows {
                path: path.to_owned(),
                line: read.first_row_line.max(2),
            });
        }
        Ok(Self {
            texts,
            labels,
            sha256,
        })
    }

    /// Reads several CSVs as one dataset, their rows in order. A file
    /// without data rows is fine when another has some. Fingerprinted by
    /// [`combined_sha256`] of the files' sha256s (one file: its own).
    pub fn from_csvs(
        paths: &[PathBuf],
        text_column: &str,
        label_column: &str,
    ) -> Result<Self, DatasetError> {
        if let [one] = paths {
            return Self::from_csv(one, text_column, label_column);
        }
        let mut all = Dataset {
            texts: Vec::new(),
            labels: Vec::new(),
            sha256: String::new(),
        };
        let mut shas = Vec::with_capacity(paths.len());
        let mut first_empty = None;
        for path in paths {
            match Self::from_csv(path, text_column, label_column) {
                Ok(d) => {
                    shas.push(d.sha256);
                    all.texts.extend(d.texts);
                    all.labels.extend(d.labels);
                }
                Err(e @ DatasetError::NoRows { .. }) => {
                    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
                        path: path.to_owned(),
                        source,
                    })?;
                    shas.push(crate::fsio::sha256_hex(&bytes));
                    first_empty.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        if all.texts.is_empty() {
            if let Some(e) = first_empty {
                return Err(e);
            }
        }
        all.sha256 = combined_sha256(&shas);
        Ok(all)
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// True when there are no documents.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Distinct labels, sorted (scikit-learn's `classes_` order).
    pub fn classes(&self) -> Vec<String> {
        let mut c = self.labels.clone();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Label indices into `classes`; `Err(label)` for a label not in `classes`.
    pub fn label_indices(&self, classes: &[String]) -> Result<Vec<usize>, String> {
        self.labels
            .iter()
            .map(|l| classes.iter().position(|c| c == l).ok_or_else(|| l.clone()))
            .collect()
    }

    /// The documents at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            texts: indices.iter().map(|&i| self.texts[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i].clone()).collect(),
            sha256: self.sha256.clone(),
        }
    }

    /// Writes the dataset as a `text,label` CSV, atomically (see
    /// [`fsio::write_atomic`]).
    pub fn write_csv(&self, path: &Path) -> Result<(), FsError> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let rows = std::iter::once([TEXT_COLUMN, LABEL_COLUMN]).chain(
            self.texts
                .iter()
                .zip(&self.labels)
                .map(|(t, l)| [t.as_str(), l]),
        );
        for row in rows {
            w.write_record(row).expect("a CSV written to memory");
        }
        let bytes = w.into_inner().expect("a CSV written to memory");
        fsio::write_atomic(path, &bytes)
    }
}

/// The training-data fingerprint of files whose sha256s (hex) are `shas`:
/// one file's own sha256, or for several the sha256 of their sha256s,
/// sorted, each followed by a newline. The order of the files does not
/// matter: the rows of several files are one multiset of documents to every
/// fit, and counts merged in any order must carry the same fingerprint.
pub fn combined_sha256(shas: &[String]) -> String {
    if let [one] = shas {
        return one.clone();
    }
    let mut sorted: Vec<&str> = shas.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut joined = String::with_capacity(sorted.len() * 65);
    for s in sorted {
        joined.push_str(s);
        joined.push('\n');
    }
    crate::fsio::sha256_hex(joined.as_bytes())
}

/// The columns a row is read from.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    /// The text column.
    pub text: &'a str,
    /// The label column.
    pub label: &'a str,
    /// One more column to hand over (a fold column), if any.
    pub extra: Option<&'a str>,
}

/// One labelled row, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The text.
    pub text: &'a str,
    /// The label, trimmed, never empty.
    pub label: &'a str,
    /// The extra column's value, when one was asked for.
    pub extra: Option<&'a str>,
    /// 1-based line the row starts on.
    pub line: u64,
}

/// What a pass over a CSV found.
#[derive(Debug, Clone, PartialEq)]
pub struct RowsRead {
    /// Data rows.
    pub rows: u64,
    /// 1-based line where the first data row starts (or would).
    pub first_row_line: u64,
}

/// Parses CSV from `input` one row at a time (every row of a dataset is
/// read by this), handing each to `visit`; an error from `visit` stops the
/// pass. `path` names the file in errors. Memory: one row.
pub fn for_each_row(
    input: impl std::io::Read,
    path: &Path,
    columns: &Columns<'_>,
    mut visit: impl FnMut(Row<'_>) -> Result<(), DatasetError>,
) -> Result<RowsRead, DatasetError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(input);
    let row_error = |e: csv::Error| row_error(path, e);
    let headers = reader.headers().map_err(row_error)?.clone();
    // Where the first data row starts (a quoted header may span lines).
    let first_row_line = reader.position().line();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(DatasetError::NoHeader(path.to_owned()));
    }
    let text_idx = column_index(&headers, columns.text, path)?;
    let label_idx = column_index(&headers, columns.label, path)?;
    let extra_idx = columns
        .extra
        .map(|c| column_index(&headers, c, path))
        .transpose()?;
    let mut record = csv::StringRecord::new();
    let mut rows = 0;
    while reader.read_record(&mut record).map_err(row_error)? {
        let line = record.position().map_or(0, |p| p.line());
        let label = record[label_idx].trim();
        if label.is_empty() {
            return Err(DatasetError::Row {
                path: path.to_owned(),
                line,
                message: format!("empty value in column {:?}", columns.label),
            });
        }
        rows += 1;
        visit(Row {
            text: &record[text_idx],
            label,
            extra: extra_idx.map(|i| &record[i]),
            line,
        })?;
    }
    Ok(RowsRead {
        rows,
        first_row_line,
    })
}

/// Streams the CSV file at `path` through [`for_each_row`], hashing its
/// bytes as they are read; returns the file's sha256 (hex) too.
pub fn for_each_row_in_file(
    path: &Path,
    columns: &Columns<'_>,
    visit: impl FnMut(Row<'_>) -> Result<(), DatasetError>,
) -> Result<(RowsRead, String), DatasetError> {
    use sha2::Digest;
    let io = |source| DatasetError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut hashing = HashingReader {
        inner: std::io::BufReader::with_capacity(256 * 1024, file),
        hash: sha2::Sha256::new(),
    };
    let read = for_each_row(&mut hashing, path, columns, visit)?;
    // The parser stops at the end of the last record: hash what follows.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io)?;
    Ok((read, hex::encode(hashing.hash.finalize())))
}

/// A reader that hashes every byte read through it.
struct HashingReader<R> {
    inner: R,
    hash: sha2::Sha256,
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The `column` field of each record of the CSV at `path`, read as the
/// iterator advances (the file is never held whole; fields may span lines).
pub fn stream_column(
    path: &Path,
    column: &str,
) -> Result<impl Iterator<Item = Result<String, DatasetError>>, DatasetError> {
    let file = std::fs::File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = csv::Reader::from_reader(file);
    let headers = reader.headers().map_err(|e| row_error(path, e))?.clone();
    let index = column_index(&headers, column, path)?;
    let path = path.to_owned();
    Ok(reader.into_records().map(move |record| {
        record
            .map(|r| r[index].to_owned())
            .map_err(|e| row_error(&path, e))
    }))
}

/// The position of `name` in `headers`.
fn column_index(
    headers: &csv::StringRecord,
    name: &str,
    path: &Path,
) -> Result<usize, DatasetError> {
    headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| DatasetError::MissingColumn {
            path: path.to_owned(),
            column: name.to_owned(),
            available: headers.iter().collect::<Vec<_>>().join(", "),
        })
}

fn row_error(path: &Path, e: csv::Error) -> DatasetError {
    let line = match e.kind() {
        csv::ErrorKind::Utf8 { pos, .. } => pos.as_ref().map(|p| p.line()),
        csv::ErrorKind::UnequalLengths { pos, .. } => pos.as_ref().map(|p| p.line()),
        csv::ErrorKind::Deserialize { pos, .. } => pos.as_ref().map(|p| p.line()),
        _ => None,
    }
    .unwrap_or(0);
    let message = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".to_owned(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("expected {expected_len} fields, found {len}"),
        _ => e.to_string(),
    };
    DatasetError::Row {
        path: path.to_owned(),
        line,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<Dataset, DatasetError> {
        Dataset::from_csv_bytes(s, Path::new("t.csv"), "text", "label")
    }

    #[test]
    fn reads_quoted_multiline_texts() {
        let d = parse(b"text,label\n\"hello,\nworld\",ham\nbuy now,spam\n").unwrap();
        assert_eq!(d.texts, vec!["hello,\nworld", "buy now"]);
        assert_eq!(d.classes(), vec!["ham", "spam"]);
        assert_eq!(d.sha256.len(), 64);
    }

    #[test]
    fn empty_file_and_header_only_are_errors_with_line_numbers() {
        let e = parse(b"").unwrap_err();
        assert!(matches!(e, DatasetError::NoHeader(_)));
        assert!(
            e.to_string()
                .starts_with("t.csv, line 1: the file is empty"),
            "{e}"
        );
        for (input, line) in [
            (&b"text,label\n"[..], 2),
            (b"text,label", 2),
            (b"text,label,\"note\nspans lines\"\n", 3),
        ] {
            let e = parse(input).unwrap_err();
            assert!(
                matches!(e, DatasetError::NoRows { line: l, .. } if l == line),
                "{input:?}: {e:?}"
            );
            assert_eq!(
                e.to_string(),
                format!("t.csv, line {line}: no data rows after the header")
            );
        }
    }

    #[test]
    fn missing_column_lists_available_ones() {
        let e = parse(b"body,label\nx,ham\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"text\"") && msg.contains("body, label"),
            "{msg}"
        );
    }

    #[test]
    fn ragged_row_names_its_line() {
        let e = parse(b"text,label\na,ham\nb,spam,extra\n").unwrap_err();
        assert!(matches!(e, DatasetError::Row { line: 3, .. }), "{e}");
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let e = parse(b"text,label\na,ham\n\xff\xfe,spam\n").unwrap_err();
        match e {
            DatasetError::Row { line, message, .. } => {
                assert_eq!(line, 3);
                assert!(message.contains("UTF-8"));
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn empty_label_is_an_error() {
        let e = parse(b"text,label\na,\n").unwrap_err();
        assert!(matches!(e, DatasetError::Row { line: 2, .. }), "{e}");
    }
}
