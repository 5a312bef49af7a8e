//! The learning log (`learning.log_path`): every accepted learn and forget,
//! one JSON line each, synced to disk before it is acknowledged, so a
//! restarted server rebuilds its challenger by replaying the lines of the
//! champion it serves. The lines hold the examples' texts (user text).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fsio;
use crate::learning::{Example, Learner};

/// One line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    /// `learn` or `forget`.
    change: String,
    /// The checksum of the champion the challenger learned on.
    champion: String,
    /// The examples, `[text, label]` each.
    examples: Vec<(String, String)>,
}

/// Appends one change and syncs it to disk.
pub fn append(
    path: &Path,
    forget: bool,
    champion: &str,
    examples: &[Example],
) -> std::io::Result<()> {
    let line = Line {
        change: if forget { "forget" } else { "learn" }.into(),
        champion: champion.to_owned(),
        examples: examples
            .iter()
            .map(|e| (e.text.clone(), e.label.clone()))
            .collect(),
    };
    let mut bytes = serde_json::to_vec(&line).expect("a line serialises");
    bytes.push(b'\n');
    let mut file = fsio::open_append(path).map_err(fsio::FsError::into_io_error)?;
    file.write_all(&bytes)?;
    file.sync_data()
}

/// Replays onto `learner` every line of the champion `checksum`, in order;
/// returns how many were applied. A line that does not parse (a write cut
/// short by a crash) or no longer applies is skipped with a log line.
pub fn replay(path: &Path, checksum: &str, learner: &mut Learner) -> usize {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::warn!(error = %e, "learning log unreadable: the challenger starts empty");
            return 0;
        }
    };
    let mut applied = 0;
    for (n, raw) in text.lines().enumerate() {
        let Ok(line) = serde_json::from_str::<Line>(raw) else {
            tracing::warn!(
                line = n + 1,
                "learning log: a line that does not parse is skipped"
            );
            continue;
        };
        if line.champion != checksum {
            continue;
        }
        let examples: Vec<Example> = line
            .examples
            .into_iter()
            .map(|(t, l)| Example::new(t, l))
            .collect();
        let result = match line.change.as_str() {
            "learn" => learner.learn(&examples),
            _ => learner.forget(&examples),
        };
        match result {
            Ok(()) => applied += 1,
            Err(e) => tracing::warn!(
                line = n + 1,
                error = %e,
                "learning log: a line that no longer applies is skipped"
            ),
        }
    }
    applied
}
