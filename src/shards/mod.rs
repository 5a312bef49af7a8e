//! Counts as the unit of work for corpora past one machine: CSV shards
//! counted into `*.counts` files, counts files merged in any tree, and the
//! held-out scoring pass of cross-validation run shard by shard. Every
//! step reads and writes files (paths are what a scheduler passes between
//! tasks); fitting from the results is [`crate::training::counts`].
//!
//! Counting streams its input: memory grows with the vocabulary and the
//! classes, never with the number of rows.

use std::path::{Path, PathBuf};

use crate::artifact::MAX_CLASSES;
use crate::classifier::stats::format::FormatError;
use crate::classifier::stats::hash_fold;
use crate::classifier::{CountSettings, Counter, Counts, CountsError, FoldBy, FoldSpec, GridPoint};
use crate::dataset::{for_each_row_in_file, Columns, DatasetError, Row};
use crate::fsio::{self, FsError};
use crate::tuning::counts::{merge_in_order, CountsCv, CvScores};
use crate::tuning::CvError;

/// Why counting, merging or scoring failed; every message names its file.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A CSV is unusable (names the file and line).
    #[error(transparent)]
    Data(#[from] DatasetError),
    /// An input file (counts, scores) could not be read.
    #[error(transparent)]
    Input(FsError),
    /// An output file could not be written.
    #[error(transparent)]
    Output(FsError),
    /// A counts file is damaged or not a counts file.
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: FormatError,
    },
    /// Counts that cannot be merged with the others.
    #[error("{path}: cannot be merged with {first}: {source}")]
    Merge {
        /// The file refused.
        path: PathBuf,
        /// The first file, whose settings the others must share.
        first: PathBuf,
        /// Why.
        source: CountsError,
    },
    /// A scores file is damaged or does not belong with the others.
    #[error("{path}: {message}")]
    Scores {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A CSV scored against counts it was not counted into.
    #[error("{path} was not counted into {counts} (its sha256 is not among the counts' sources): its rows would be scored by models trained on them")]
    NotCounted {
        /// The CSV.
        path: PathBuf,
        /// The counts file.
        counts: PathBuf,
    },
    /// The cross-validation cannot run (a parameter, or the data).
    #[error(transparent)]
    Cv(#[from] CvError),
}

/// The CSV columns of a shard.
#[derive(Debug, Clone)]
pub struct ShardColumns {
    /// Text column.
    pub text: String,
    /// Label column.
    pub label: String,
}

impl ShardColumns {
    fn columns<'a>(&'a self, settings: &'a CountSettings) -> Columns<'a> {
        Columns {
            text: &self.text,
            label: &self.label,
            extra: match settings.folds.as_ref().map(|f| &f.by) {
                Some(FoldBy::Column { column }) => Some(column),
                _ => None,
            },
        }
    }
}

/// The fold of `row` under `settings` (0 without folds); a bad fold column
/// value is an error naming the file and line.
fn fold_of(row: &Row<'_>, settings: &CountSettings, path: &Path) -> Result<usize, DatasetError> {
    let Some(spec) = &settings.folds else {
        return Ok(0);
    };
    match &spec.by {
        FoldBy::Hash { seed } => Ok(hash_fold(*seed, row.text, spec.k) as usize),
        FoldBy::Column { column } => {
            let value = row.extra.unwrap_or_default().trim();
            match value.parse::<u32>() {
                Ok(f) if f < spec.k => Ok(f as usize),
                _ => Err(DatasetError::Row {
                    path: path.to_owned(),
                    line: row.line,
                    message: format!(
                        "column {column:?} holds {value:?}, not a fold number from 0 to {}",
                        spec.k - 1
                    ),
                }),
            }
        }
    }
}

/// Counts the rows of `paths` (read in order, streamed) with `settings`.
/// A file with a header and no rows adds nothing but its fingerprint.
pub fn count_files(
    paths: &[PathBuf],
    columns: &ShardColumns,
    settings: CountSettings,
) -> Result<Counts, ShardError> {
    let mut counter = Counter::new(settings.clone());
    let mut sources = Vec::with_capacity(paths.len());
    let cols = columns.columns(&settings);
    for path in paths {
        let (_, sha) = for_each_row_in_file(path, &cols, |row| {
            let fold = fold_of(&row, &settings, path)?;
            let new = counter.n_classes();
            counter
                .add(row.text, row.label, fold)
                .expect("fold in range");
            if counter.n_classes() > MAX_CLASSES && counter.n_classes() > new {
                return Err(DatasetError::Row {
                    path: path.clone(),
                    line: row.line,
                    message: format!(
                        "a label past the {MAX_CLASSES} distinct labels a served model may have"
                    ),
                });
            }
            Ok(())
        })?;
        sources.push(sha);
    }
    Ok(counter.finish(sources))
}

/// The fold (0-based, below `k`) of every row of `paths` in order, from
/// the integer column `column`, as `count --fold-column` reads it.
pub fn read_fold_column(
    paths: &[PathBuf],
    columns: &ShardColumns,
    column: &str,
    k: u32,
) -> Result<Vec<u32>, ShardError> {
    let settings = CountSettings::new(
        false,
        Some(FoldSpec {
            k,
            by: FoldBy::Column {
                column: column.to_owned(),
            },
        }),
    );
    let cols = columns.columns(&settings);
    let mut folds = Vec::new();
    for path in paths {
        for_each_row_in_file(path, &cols, |row| {
            folds.push(fold_of(&row, &settings, path)? as u32);
            Ok(())
        })?;
    }
    Ok(folds)
}

/// Reads a counts file; returns it and the sha256 (hex) of its bytes.
pub fn read_counts(path: &Path) -> Result<(Counts, String), ShardError> {
    let bytes = fsio::read_regular_following(path, u64::MAX).map_err(ShardError::Input)?;
    let counts = Counts::from_bytes(&bytes).map_err(|source| ShardError::Format {
        path: path.to_owned(),
        source,
    })?;
    Ok((counts, fsio::sha256_hex(&bytes)))
}

/// Writes `counts` to `path` atomically; returns the sha256 of the bytes.
pub fn write_counts(path: &Path, counts: &Counts) -> Result<String, ShardError> {
    let bytes = counts.to_bytes();
    fsio::write_atomic(path, &bytes).map_err(ShardError::Output)?;
    Ok(fsio::sha256_hex(&bytes))
}

/// Reads and merges counts files (at least one); the first file's settings
/// are the ones every other must share. Any order and any grouping of the
/// same files gives the same counts.
pub fn merge_counts(paths: &[PathBuf]) -> Result<Counts, ShardError> {
    let (first, rest) = paths
        .split_first()
        .expect("the command line asks for at least one file");
    let (mut total, _) = read_counts(first)?;
    for path in rest {
        let (counts, _) = read_counts(path)?;
        total = total.merge(&counts).map_err(|source| ShardError::Merge {
            path: path.clone(),
            first: first.clone(),
            source,
        })?;
    }
    Ok(total)
}

/// The held-out scoring pass of the CSVs `paths` (counted into `total`,
/// the counts file at `counts_path`) for every point of the grid: one pass
/// over the files per fold, holding one fold's models at a time.
pub fn score_files(
    counts_path: &Path,
    points: &[GridPoint],
    paths: &[PathBuf],
    columns: &ShardColumns,
) -> Result<CvScores, ShardError> {
    let (total, sha) = read_counts(counts_path)?;
    let cv = CountsCv::new(&total, sha, points)?;
    let settings = total.settings().clone();
    let cols = columns.columns(&settings);
    // Checked first: scoring rows the models were trained on would report
    // figures that look fine and mean nothing.
    for path in paths {
        let (_, sha) = for_each_row_in_file(path, &cols, |_| Ok(()))?;
        if total.sources().binary_search(&sha).is_err() {
            return Err(ShardError::NotCounted {
                path: path.clone(),
                counts: counts_path.to_owned(),
            });
        }
    }
    let mut scores = cv.empty_scores();
    let mut positioned = Vec::new();
    for f in 0..cv.folds() as usize {
        let mut scorer = cv.fold(f)?;
        let mut position = 0u64;
        for path in paths {
            for_each_row_in_file(path, &cols, |row| {
                position += 1;
                if fold_of(&row, &settings, path)? != f {
                    return Ok(());
                }
                scorer
                    .score(position, row.text, row.label)
                    .map_err(|label| DatasetError::Row {
                        path: path.clone(),
                        line: row.line,
                        message: format!("label {label:?} is none of the counts' classes"),
                    })
            })?;
        }
        scorer.finish(&mut scores, &mut positioned);
    }
    merge_in_order(&mut scores, positioned);
    Ok(scores)
}

/// Writes held-out scores (JSON) atomically.
pub fn write_scores(path: &Path, scores: &CvScores) -> Result<(), ShardError> {
    let mut bytes = serde_json::to_vec(scores).expect("scores serialise");
    bytes.push(b'\n');
    fsio::write_atomic(path, &bytes).map_err(ShardError::Output)
}

/// Reads scores files and adds them up, in the order given.
pub fn read_scores(paths: &[PathBuf]) -> Result<CvScores, ShardError> {
    let mut total: Option<CvScores> = None;
    for path in paths {
        let bytes = fsio::read_regular_following(path, u64::MAX).map_err(ShardError::Input)?;
        let scores: CvScores = serde_json::from_slice(&bytes).map_err(|e| ShardError::Scores {
            path: path.clone(),
            message: format!("not a scores file: {e}"),
        })?;
        scores.check().map_err(|message| ShardError::Scores {
            path: path.clone(),
            message,
        })?;
        match &mut total {
            None => total = Some(scores),
            Some(t) => t.add(scores).map_err(|e| ShardError::Scores {
                path: path.clone(),
                message: e.to_string(),
            })?,
        }
    }
    Ok(total.expect("the command line asks for at least one file"))
}

#[cfg(test)]
mod tests;
