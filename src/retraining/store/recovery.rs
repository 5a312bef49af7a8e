//! What a process killed mid-promotion leaves, and how the next run reads
//! it: stale temporary files are deleted, a promotion marked under way is
//! settled from `model.path`'s content, unlisted kept files are adopted.

use std::path::Path;
use std::time::Duration;

use super::history::{self, Entry, History, KeptName};
use super::{io, now, remove_if_present, Store, StoreError, VERSIONS_DIR};
use crate::fsio::{self, sha256_hex};

/// Temporary files this old are a dead writer's: a live one (e.g. an
/// unlocked `nbserve train --out model.path`) renames its file in seconds.
pub(super) const STALE_TEMP: Duration = Duration::from_secs(15 * 60);

fn stale(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= STALE_TEMP))
}

impl Store {
    /// Deletes temporary files of [`fsio::write_atomic`] a dead writer left
    /// in the versions directory and beside `model_path` (call under
    /// [`lock`](super::lock)). Kept files are never deleted here: see [`Store::recover`].
    pub(super) fn remove_stale_temps(&self, model_path: &Path) -> Result<(), StoreError> {
        let entries = std::fs::read_dir(&self.versions).map_err(io(&self.versions))?;
        for e in entries {
            let e = e.map_err(io(&self.versions))?;
            let name = e.file_name();
            let temp = name
                .to_str()
                .is_some_and(|n| n.starts_with('.') && n.contains(fsio::TEMP_MARKER));
            if temp && stale(&e.path()) {
                remove_if_present(&e.path())?;
            }
        }
        let dir = model_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Ok(entries) = std::fs::read_dir(dir) {
            let prefix = fsio::temp_prefix(model_path);
            for e in entries.flatten() {
                let name = e.file_name();
                if name.to_str().is_some_and(|n| n.starts_with(&prefix)) && stale(&e.path()) {
                    remove_if_present(&e.path())?;
                }
            }
        }
        Ok(())
    }

    /// Brings `h` up to date with what a process killed mid-promotion left
    /// (call under [`lock`](super::lock)), given the sha256 of what `model.path` holds:
    ///
    /// - a promotion recorded as under way (`pending`) is complete when
    ///   `model.path` holds its model, else it never happened and comes off
    ///   the stack;
    /// - kept files the history does not list (written before a crash that
    ///   came before the history, or by an older build that wrote the
    ///   history after the rename) are adopted, never deleted: one may be
    ///   the only copy of a model once in service. When `model.path` holds
    ///   one newer than the stack's top, the adopted files up to it go on
    ///   the stack, as the lost history would have put them.
    ///
    /// Returns the adopted files. Nothing is written: the caller's next
    /// history write records it.
    pub(super) fn recover(
        &self,
        h: &mut History,
        serving: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(seq) = h.pending.take() {
            let done = h
                .entry(seq)
                .is_some_and(|e| Some(e.sha256.as_str()) == serving);
            if !done && h.in_service.last() == Some(&seq) {
                h.in_service.pop();
            }
        }
        let entries = match std::fs::read_dir(&self.versions) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.versions)(e)),
        };
        let mut found: Vec<Entry> = Vec::new();
        for e in entries {
            let e = e.map_err(io(&self.versions))?;
            let Some(file) = e.file_name().to_str().and_then(KeptName::parse) else {
                continue;
            };
            let seq = file.seq();
            // Never reuse a number a file already carries.
            h.next_seq = h.next_seq.max(seq.saturating_add(1));
            if h.entry(seq).is_some() || found.iter().any(|f| f.seq == seq) {
                continue;
            }
            let Ok(bytes) = fsio::read_regular(&self.versions.join(&file), self.max_bytes) else {
                continue;
            };
            // Only a model file is worth keeping; anything else is left alone.
            let Some((name, version)) = history::declared_model(&bytes) else {
                continue;
            };
            found.push(Entry {
                seq,
                file,
                name,
                version,
                sha256: sha256_hex(&bytes),
                origin: "adopted".to_owned(),
                added_at: now(),
            });
        }
        found.sort_by_key(|e| e.seq);
        let top = h.in_service.last().copied().unwrap_or(0);
        if let Some(served) = found
            .iter()
            .rfind(|e| e.seq > top && Some(e.sha256.as_str()) == serving)
            .map(|e| e.seq)
        {
            h.in_service.extend(
                found
                    .iter()
                    .map(|e| e.seq)
                    .filter(|s| *s > top && *s <= served),
            );
        }
        let adopted = found
            .iter()
            .map(|e| format!("{VERSIONS_DIR}/{}", e.file))
            .collect();
        h.entries.extend(found);
        h.entries.sort_by_key(|e| e.seq);
        Ok(adopted)
    }
}
