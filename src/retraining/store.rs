//! The kept versions of a file-served model: `model.dir/versions/`, its
//! history, the lock, and the atomic replacement of `model.path`.
//!
//! Layout: `versions/NNNNNN-VERSION.json` (a sequence number, so two models
//! with one version string never collide) and `versions/history.json`:
//!
//! ```json
//! {"next_seq": 4,
//!  "entries": [{"seq": 1, "file": "000001-v1.json", "name": "spam", "version": "v1",
//!               "sha256": "…", "origin": "replaced", "added_at": "…"}, …],
//!  "in_service": [1, 3]}
//! ```
//!
//! `in_service` is a stack: a promotion pushes, a rollback pops, so a
//! rollback after a rollback goes one further back, and a promotion after a
//! rollback never brings back the versions rolled back from.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The lock file in `model.dir`.
pub const LOCK_FILE: &str = ".nbserve.lock";
/// The kept versions' directory in `model.dir`.
pub const VERSIONS_DIR: &str = "versions";
/// The history file in the versions directory.
pub const HISTORY_FILE: &str = "history.json";
/// Longest `in_service` stack kept (older steps are forgotten).
const MAX_STACK: usize = 1000;

/// Why the store could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another retrain or rollback held the lock too long.
    #[error("another retrain or rollback holds the lock {path} (waited {waited_secs} s)")]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// How long this one waited.
        waited_secs: u64,
    },
    /// `history.json` is not what this build writes.
    #[error("{path}: not a valid version history ({message}); move it aside to start a new one")]
    History {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Nothing kept to roll back to.
    #[error("no earlier version is kept in {0} to roll back to")]
    NothingToRollBack(PathBuf),
    /// `--to` names no kept version.
    #[error("no kept version {wanted:?} (kept: {kept})")]
    UnknownVersion {
        /// What was asked for.
        wanted: String,
        /// The kept versions.
        kept: String,
    },
    /// `--to` names the version already in service.
    #[error("version {0:?} is already in service")]
    AlreadyInService(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The sha256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, fsync, rename over `path`, fsync of the directory. Readers see
/// the old content or the new, never a mix; a crash leaves at most a
/// temporary file. A symlink at `path` is replaced by a regular file. The
/// new file gets the permissions of the file it replaces (so a server
/// running as another user can still read it whatever this process's
/// umask); the temporary file's name is unique to this call, so writers in
/// other processes (or containers, where pids repeat) never share one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let (mut f, tmp) = loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = dir.join(format!(
            ".{name}.tmp-{}-{}-{nanos}",
            std::process::id(),
            CALLS.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (f, tmp),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&tmp)(e)),
        }
    };
    let result = (|| {
        if let Some(p) = permissions {
            f.set_permissions(p)?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

/// Temporary files this old are a dead writer's: a live one (e.g. an
/// unlocked `nbserve train --out model.path`) renames its file in seconds.
const STALE_TEMP: Duration = Duration::from_secs(15 * 60);

fn stale(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= STALE_TEMP))
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

/// An exclusive lock on `model.dir`, held until dropped (the kernel releases
/// it when the process dies, so a crash never leaves it stuck).
pub struct Lock {
    _file: File,
}

/// Takes the lock of `model_dir` (creating the directory and the lock file
/// if missing), waiting up to `wait` for another holder to finish.
pub fn lock(model_dir: &Path, wait: Duration) -> Result<Lock, StoreError> {
    std::fs::create_dir_all(model_dir).map_err(io(model_dir))?;
    let path = model_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    let started = Instant::now();
    loop {
        match try_lock(&file) {
            Ok(true) => return Ok(Lock { _file: file }),
            Ok(false) if started.elapsed() < wait => std::thread::sleep(Duration::from_millis(50)),
            Ok(false) => {
                return Err(StoreError::Busy {
                    path,
                    waited_secs: started.elapsed().as_secs(),
                })
            }
            Err(e) => return Err(io(&path)(e)),
        }
    }
}

#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock takes a descriptor this File owns for the whole call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        Some(libc::EINTR) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

/// One kept model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Sequence number (order of arrival).
    pub seq: u64,
    /// File name inside the versions directory.
    pub file: String,
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// sha256 of the file.
    pub sha256: String,
    /// `retrain` (a promoted candidate) or `replaced` (a model found in
    /// service, whatever made it, kept before it was replaced).
    pub origin: String,
    /// When it was kept (RFC 3339).
    pub added_at: String,
}

/// `versions/history.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// The next sequence number.
    pub next_seq: u64,
    /// Kept files, oldest first.
    pub entries: Vec<Entry>,
    /// What was put in service, in order; the last is in service.
    pub in_service: Vec<u64>,
}

/// A model to keep: its bytes and identity.
#[derive(Debug, Clone)]
pub struct Keep<'a> {
    /// The artifact file's bytes.
    pub bytes: &'a [u8],
    /// Model name.
    pub name: &'a str,
    /// Model version.
    pub version: &'a str,
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq)]
pub struct Promoted {
    /// The candidate's kept file (relative to `model.dir`).
    pub file: String,
    /// The entry of the model that was in service before, if known.
    pub replaced: Option<Entry>,
    /// Files deleted to keep `keep` versions (relative to `model.dir`).
    pub removed: Vec<String>,
}

/// What a rollback will put back.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackPlan {
    /// The entry to put in service.
    pub target: Entry,
    /// Its file.
    pub path: PathBuf,
    /// The history once done.
    history: History,
}

/// The versions directory of a model directory.
#[derive(Debug, Clone)]
pub struct Store {
    versions: PathBuf,
}

fn file_name_part(version: &str) -> String {
    let s: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    s.trim_start_matches('.').to_owned()
}

impl Store {
    /// The store of `model_dir` (nothing is created until a promotion).
    pub fn new(model_dir: &Path) -> Self {
        Self {
            versions: model_dir.join(VERSIONS_DIR),
        }
    }

    /// The versions directory.
    pub fn dir(&self) -> &Path {
        &self.versions
    }

    fn history_path(&self) -> PathBuf {
        self.versions.join(HISTORY_FILE)
    }

    /// Reads the history; empty when there is none yet.
    pub fn history(&self) -> Result<History, StoreError> {
        let path = self.history_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(History::default()),
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| StoreError::History {
            path,
            message: e.to_string(),
        })
    }

    fn write_history(&self, h: &History) -> Result<(), StoreError> {
        let mut bytes = serde_json::to_vec_pretty(h).expect("serialisable");
        bytes.push(b'\n');
        write_atomic(&self.history_path(), &bytes)
    }

    /// Deletes what a process killed mid-promotion left behind (call under
    /// [`lock`]): kept-file names the history does not list (written before
    /// a crash that came before the history; or pruned from it, then not
    /// deleted) and temporary files of [`write_atomic`] in the versions
    /// directory and beside `model_path`. Returns the versions' files
    /// deleted (relative to `model.dir`).
    fn remove_leftovers(&self, h: &History, model_path: &Path) -> Result<Vec<String>, StoreError> {
        let listed: std::collections::HashSet<&str> =
            h.entries.iter().map(|e| e.file.as_str()).collect();
        let mut removed = Vec::new();
        let entries = std::fs::read_dir(&self.versions).map_err(io(&self.versions))?;
        for e in entries {
            let e = e.map_err(io(&self.versions))?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let kept_name = name.len() > 7
                && name.as_bytes()[..6].iter().all(u8::is_ascii_digit)
                && name.as_bytes()[6] == b'-'
                && name.ends_with(".json");
            let orphan = kept_name && !listed.contains(name.as_str());
            if orphan || (name.starts_with('.') && name.contains(".tmp-") && stale(&e.path())) {
                remove_if_present(&e.path())?;
                if orphan {
                    removed.push(format!("{VERSIONS_DIR}/{name}"));
                }
            }
        }
        let dir = model_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let (Some(name), Ok(entries)) = (
            model_path.file_name().and_then(|n| n.to_str()),
            std::fs::read_dir(dir),
        ) {
            let prefix = format!(".{name}.tmp-");
            for e in entries.flatten() {
                let name = e.file_name();
                if name.to_str().is_some_and(|n| n.starts_with(&prefix)) && stale(&e.path()) {
                    remove_if_present(&e.path())?;
                }
            }
        }
        Ok(removed)
    }

    /// Whether `entry`'s file is there with the sha256 it was kept with.
    fn holds(&self, entry: &Entry) -> bool {
        std::fs::read(self.versions.join(&entry.file)).is_ok_and(|b| sha256_hex(&b) == entry.sha256)
    }

    fn add(&self, h: &mut History, model: &Keep, origin: &str) -> Result<Entry, StoreError> {
        let seq = h.next_seq.max(1);
        let file = format!("{seq:06}-{}.json", file_name_part(model.version));
        write_atomic(&self.versions.join(&file), model.bytes)?;
        let entry = Entry {
            seq,
            file,
            name: model.name.to_owned(),
            version: model.version.to_owned(),
            sha256: sha256_hex(model.bytes),
            origin: origin.to_owned(),
            added_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        h.next_seq = seq + 1;
        h.entries.push(entry.clone());
        Ok(entry)
    }

    /// Puts `candidate` in service at `model_path`, keeping it and the model
    /// it replaces (`current`: the bytes found at `model_path`, when they
    /// were a valid artifact) in the versions directory, then deletes the
    /// oldest kept files beyond `keep` (at least 2). Call under [`lock`].
    ///
    /// Order, so that a crash at any step leaves a usable state: kept files,
    /// then `model_path`, then the history, then deletions.
    pub fn promote(
        &self,
        model_path: &Path,
        candidate: &Keep,
        current: Option<&Keep>,
        keep: usize,
    ) -> Result<Promoted, StoreError> {
        let keep = keep.max(2);
        let mut h = self.history()?;
        std::fs::create_dir_all(&self.versions).map_err(io(&self.versions))?;
        let mut removed = self.remove_leftovers(&h, model_path)?;
        let replaced = match current {
            None => None,
            Some(cur) => {
                let sha = sha256_hex(cur.bytes);
                // Known only if its kept file is still there, intact: one
                // deleted or damaged by hand would leave nothing to roll
                // back to.
                let known = h
                    .entries
                    .iter()
                    .rev()
                    .find(|e| e.sha256 == sha && self.holds(e))
                    .cloned();
                let entry = match known {
                    Some(e) => e,
                    None => self.add(&mut h, cur, "replaced")?,
                };
                if h.in_service.last() != Some(&entry.seq) {
                    h.in_service.push(entry.seq);
                }
                Some(entry)
            }
        };
        let new = self.add(&mut h, candidate, "retrain")?;
        h.in_service.push(new.seq);
        write_atomic(model_path, candidate.bytes)?;
        // Oldest first, but never the new model nor the one it replaced
        // (after a rollback that one can be the oldest kept).
        let protected = [Some(new.seq), replaced.as_ref().map(|e| e.seq)];
        let mut pruned = Vec::new();
        while h.entries.len() > keep {
            // Versions rolled back from (off the stack) go first: rollback
            // can only reach the ones on it.
            let prunable = |e: &Entry| !protected.contains(&Some(e.seq));
            let Some(i) = h
                .entries
                .iter()
                .position(|e| prunable(e) && !h.in_service.contains(&e.seq))
                .or_else(|| h.entries.iter().position(prunable))
            else {
                break;
            };
            let old = h.entries.remove(i);
            h.in_service.retain(|s| *s != old.seq);
            pruned.push(old.file);
        }
        if h.in_service.len() > MAX_STACK {
            let extra = h.in_service.len() - MAX_STACK;
            h.in_service.drain(..extra);
        }
        self.write_history(&h)?;
        for f in pruned {
            remove_if_present(&self.versions.join(&f))?;
            removed.push(format!("{VERSIONS_DIR}/{f}"));
        }
        Ok(Promoted {
            file: format!("{VERSIONS_DIR}/{}", new.file),
            replaced,
            removed,
        })
    }

    /// Chooses what a rollback puts back, given the sha256 of what
    /// `model.path` holds now (`None` when it cannot be read).
    ///
    /// Without `to`: when `model.path` holds the version last put in service,
    /// the one in service before it; when it holds something else (changed
    /// outside retrain), the version last put in service. With `to`: that
    /// kept version (by version string, file name or sequence number; the
    /// newest match).
    pub fn plan_rollback(
        &self,
        serving_sha256: Option<&str>,
        to: Option<&str>,
    ) -> Result<RollbackPlan, StoreError> {
        let mut h = self.history()?;
        let entry = |h: &History, seq: u64| h.entries.iter().find(|e| e.seq == seq).cloned();
        let target = match to {
            Some(wanted) => {
                let found = h
                    .entries
                    .iter()
                    .rev()
                    .find(|e| {
                        e.version == wanted || e.file == wanted || e.seq.to_string() == wanted
                    })
                    .cloned()
                    .ok_or_else(|| StoreError::UnknownVersion {
                        wanted: wanted.to_owned(),
                        kept: h
                            .entries
                            .iter()
                            .map(|e| e.version.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
                if serving_sha256 == Some(found.sha256.as_str()) {
                    return Err(StoreError::AlreadyInService(found.version));
                }
                match h.in_service.iter().rposition(|s| *s == found.seq) {
                    Some(i) => h.in_service.truncate(i + 1),
                    None => h.in_service.push(found.seq),
                }
                found
            }
            None => {
                let top = h
                    .in_service
                    .last()
                    .and_then(|&s| entry(&h, s))
                    .ok_or_else(|| StoreError::NothingToRollBack(self.versions.clone()))?;
                if serving_sha256 == Some(top.sha256.as_str()) {
                    h.in_service.pop();
                    h.in_service
                        .last()
                        .and_then(|&s| entry(&h, s))
                        .ok_or_else(|| StoreError::NothingToRollBack(self.versions.clone()))?
                } else {
                    top
                }
            }
        };
        Ok(RollbackPlan {
            path: self.versions.join(&target.file),
            target,
            history: h,
        })
    }

    /// Puts `plan`'s target (its `bytes`, read and gated by the caller) in
    /// service at `model_path` and records it. Call under [`lock`], with the
    /// plan made under the same lock.
    ///
    /// The history first: a rollback killed between the two steps leaves
    /// the target on top of the stack while `model_path` still holds what
    /// it replaces, so running rollback again finishes it. (The other order
    /// would leave the target in service under a stack whose top is the
    /// version rolled back from, and the next rollback would undo this one.)
    pub fn apply_rollback(
        &self,
        plan: RollbackPlan,
        model_path: &Path,
        bytes: &[u8],
    ) -> Result<Entry, StoreError> {
        self.write_history(&plan.history)?;
        write_atomic(model_path, bytes)?;
        Ok(plan.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep<'a>(bytes: &'a [u8], version: &'a str) -> Keep<'a> {
        Keep {
            bytes,
            name: "m",
            version,
        }
    }

    fn files(store: &Store) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn promotion_keeps_the_replaced_model_and_prunes_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("current.json");
        std::fs::write(&model, b"v0").unwrap();
        let store = Store::new(dir.path());
        let p = store
            .promote(&model, &keep(b"v1", "1"), Some(&keep(b"v0", "0")), 3)
            .unwrap();
        assert_eq!(std::fs::read(&model).unwrap(), b"v1");
        assert_eq!(p.replaced.unwrap().origin, "replaced");
        assert_eq!(p.file, "versions/000002-1.json");
        // The model in service is known by its bytes: not kept twice.
        store
            .promote(&model, &keep(b"v2", "2"), Some(&keep(b"v1", "1")), 3)
            .unwrap();
        let p = store
            .promote(&model, &keep(b"v3", "3/x"), Some(&keep(b"v2", "2")), 3)
            .unwrap();
        assert_eq!(p.removed, vec!["versions/000001-0.json"]);
        assert_eq!(
            files(&store),
            vec![
                "000002-1.json",
                "000003-2.json",
                "000004-3_x.json",
                "history.json"
            ]
        );
        let h = store.history().unwrap();
        assert_eq!(h.in_service, vec![2, 3, 4]);
        assert_eq!(h.next_seq, 5);
    }

    #[test]
    fn a_kept_file_lost_by_hand_is_kept_again_when_its_model_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.json");
        let store = Store::new(dir.path());
        store.promote(&model, &keep(b"a", "a"), None, 5).unwrap();
        std::fs::remove_file(store.dir().join("000001-a.json")).unwrap();
        let p = store
            .promote(&model, &keep(b"b", "b"), Some(&keep(b"a", "a")), 5)
            .unwrap();
        let replaced = p.replaced.unwrap();
        assert_eq!(replaced.seq, 2);
        assert_eq!(
            std::fs::read(store.dir().join(&replaced.file)).unwrap(),
            b"a"
        );
        let sha = sha256_hex(b"b");
        let plan = store.plan_rollback(Some(&sha), None).unwrap();
        assert_eq!(std::fs::read(&plan.path).unwrap(), b"a");
    }

    #[test]
    fn a_promotion_clears_what_a_killed_one_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.json");
        let store = Store::new(dir.path());
        store.promote(&model, &keep(b"a", "a"), None, 5).unwrap();
        // kill -9 after the kept files, before model.path and the history.
        let v = store.dir();
        std::fs::write(v.join("000002-b.json"), b"b").unwrap();
        std::fs::write(v.join(".000002-b.json.tmp-7-0-1"), b"b").unwrap();
        std::fs::write(v.join(".history.json.tmp-7-1-2"), b"{").unwrap();
        std::fs::write(dir.path().join(".m.json.tmp-7-2-3"), b"b").unwrap();
        std::fs::write(v.join("notes.txt"), b"mine").unwrap();
        let old = std::time::SystemTime::now() - STALE_TEMP - Duration::from_secs(1);
        for tmp in [
            v.join(".000002-b.json.tmp-7-0-1"),
            v.join(".history.json.tmp-7-1-2"),
            dir.path().join(".m.json.tmp-7-2-3"),
        ] {
            File::options()
                .write(true)
                .open(tmp)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        // A fresh one may be a live unlocked writer's (`train --out`).
        std::fs::write(dir.path().join(".m.json.tmp-8"), b"live").unwrap();
        let p = store
            .promote(&model, &keep(b"c", "c"), Some(&keep(b"a", "a")), 5)
            .unwrap();
        assert_eq!(p.removed, ["versions/000002-b.json"]);
        assert_eq!(p.file, "versions/000002-c.json");
        assert_eq!(
            files(&store),
            [
                "000001-a.json",
                "000002-c.json",
                "history.json",
                "notes.txt"
            ]
        );
        assert!(!dir.path().join(".m.json.tmp-7-2-3").exists());
        assert!(dir.path().join(".m.json.tmp-8").exists());
    }

    #[test]
    fn rollback_after_rollback_goes_further_back_and_promotion_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.json");
        let store = Store::new(dir.path());
        assert!(matches!(
            store.plan_rollback(None, None),
            Err(StoreError::NothingToRollBack(_))
        ));
        store.promote(&model, &keep(b"a", "a"), None, 5).unwrap();
        store
            .promote(&model, &keep(b"b", "b"), Some(&keep(b"a", "a")), 5)
            .unwrap();
        store
            .promote(&model, &keep(b"c", "c"), Some(&keep(b"b", "b")), 5)
            .unwrap();
        let back = |store: &Store| {
            let sha = sha256_hex(&std::fs::read(&model).unwrap());
            let plan = store.plan_rollback(Some(&sha), None)?;
            let bytes = std::fs::read(&plan.path).unwrap();
            store.apply_rollback(plan, &model, &bytes)
        };
        assert_eq!(back(&store).unwrap().version, "b");
        assert_eq!(back(&store).unwrap().version, "a");
        assert_eq!(std::fs::read(&model).unwrap(), b"a");
        assert!(matches!(
            back(&store),
            Err(StoreError::NothingToRollBack(_))
        ));
        // A promotion after rollbacks stacks on what is in service.
        store
            .promote(&model, &keep(b"d", "d"), Some(&keep(b"a", "a")), 5)
            .unwrap();
        assert_eq!(store.history().unwrap().in_service, vec![1, 4]);
        assert_eq!(back(&store).unwrap().version, "a");
        // --to: a version rolled back from, then one on the stack.
        let sha = sha256_hex(b"a");
        let plan = store.plan_rollback(Some(&sha), Some("c")).unwrap();
        store.apply_rollback(plan, &model, b"c").unwrap();
        assert_eq!(store.history().unwrap().in_service, vec![1, 3]);
        assert!(matches!(
            store.plan_rollback(Some(&sha256_hex(b"c")), Some("c")),
            Err(StoreError::AlreadyInService(_))
        ));
        let e = store.plan_rollback(None, Some("zz")).unwrap_err();
        assert_eq!(e.to_string(), "no kept version \"zz\" (kept: a, b, c, d)");
    }

    #[test]
    fn a_rollback_cut_short_is_finished_by_the_next_not_undone() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.json");
        let store = Store::new(dir.path());
        store.promote(&model, &keep(b"a", "a"), None, 5).unwrap();
        store
            .promote(&model, &keep(b"b", "b"), Some(&keep(b"a", "a")), 5)
            .unwrap();
        let plan = store.plan_rollback(Some(&sha256_hex(b"b")), None).unwrap();
        assert_eq!(plan.target.version, "a");
        // The history cannot be written (as if killed before it): model.path
        // must not have moved either.
        let history = store.dir().join(HISTORY_FILE);
        let saved = std::fs::read(&history).unwrap();
        std::fs::remove_file(&history).unwrap();
        std::fs::create_dir(&history).unwrap();
        std::fs::write(history.join("x"), b"").unwrap();
        assert!(store.apply_rollback(plan, &model, b"a").is_err());
        assert_eq!(std::fs::read(&model).unwrap(), b"b");
        std::fs::remove_dir_all(&history).unwrap();
        std::fs::write(&history, saved).unwrap();
        // Killed after the history, before model.path: a rerun finishes it.
        let plan = store.plan_rollback(Some(&sha256_hex(b"b")), None).unwrap();
        store.write_history(&plan.history).unwrap();
        let plan = store.plan_rollback(Some(&sha256_hex(b"b")), None).unwrap();
        assert_eq!(plan.target.version, "a");
        store.apply_rollback(plan, &model, b"a").unwrap();
        assert_eq!(store.history().unwrap().in_service, vec![1]);
    }

    /// A store (keeping 3) into which a, b and c were promoted in turn; the
    /// model path.
    fn promoted_a_b_c() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.json");
        let store = Store::new(dir.path());
        store.promote(&model, &keep(b"a", "a"), None, 3).unwrap();
        store
            .promote(&model, &keep(b"b", "b"), Some(&keep(b"a", "a")), 3)
            .unwrap();
        store
            .promote(&model, &keep(b"c", "c"), Some(&keep(b"b", "b")), 3)
            .unwrap();
        (dir, model)
    }

    #[test]
    fn pruning_spares_a_rolled_back_to_model_it_replaces() {
        let (dir, model) = promoted_a_b_c();
        let store = Store::new(dir.path());
        let plan = store
            .plan_rollback(Some(&sha256_hex(b"c")), Some("a"))
            .unwrap();
        store.apply_rollback(plan, &model, b"a").unwrap();
        let p = store
            .promote(&model, &keep(b"d", "d"), Some(&keep(b"a", "a")), 3)
            .unwrap();
        assert_eq!(p.removed, vec!["versions/000002-b.json"]);
        let h = store.history().unwrap();
        let kept: Vec<&str> = h.entries.iter().map(|e| e.version.as_str()).collect();
        assert_eq!(kept, ["a", "c", "d"]);
        assert_eq!(h.in_service, vec![1, 4]);
    }

    #[test]
    fn pruning_drops_versions_rolled_back_from_before_the_rollback_chain() {
        let (dir, model) = promoted_a_b_c();
        let store = Store::new(dir.path());
        // c was bad: back to b, then d replaces b.
        let plan = store.plan_rollback(Some(&sha256_hex(b"c")), None).unwrap();
        store.apply_rollback(plan, &model, b"b").unwrap();
        let p = store
            .promote(&model, &keep(b"d", "d"), Some(&keep(b"b", "b")), 3)
            .unwrap();
        assert_eq!(p.removed, ["versions/000003-c.json"]);
        assert_eq!(store.history().unwrap().in_service, vec![1, 2, 4]);
        // The rollback chain d → b → a is intact.
        let back = |from: &[u8]| {
            let plan = store.plan_rollback(Some(&sha256_hex(from)), None).unwrap();
            let bytes = std::fs::read(&plan.path).unwrap();
            store.apply_rollback(plan, &model, &bytes).unwrap().version
        };
        assert_eq!(back(b"d"), "b");
        assert_eq!(back(b"b"), "a");
    }

    #[test]
    fn a_model_changed_behind_its_back_is_rolled_back_to_the_last_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.json");
        let store = Store::new(dir.path());
        store.promote(&model, &keep(b"a", "a"), None, 5).unwrap();
        std::fs::write(&model, b"hand-made").unwrap();
        let plan = store
            .plan_rollback(Some(&sha256_hex(b"hand-made")), None)
            .unwrap();
        assert_eq!(plan.target.version, "a");
    }

    #[cfg(unix)]
    #[test]
    fn an_atomic_write_keeps_the_replaced_files_permissions_and_no_temp() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        // A symlink is replaced by a regular file; its target is untouched.
        let target = dir.path().join("target.json");
        std::fs::write(&target, b"kept").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, b"served").unwrap();
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&link).unwrap(), b"served");
        assert_eq!(std::fs::read(&target).unwrap(), b"kept");
        // A failed rename (onto a directory) leaves no temporary file.
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/x"), b"").unwrap();
        assert!(write_atomic(&dir.path().join("d"), b"x").is_err());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["d", "link.json", "m.json", "target.json"]);
    }

    #[test]
    fn the_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path(), Duration::ZERO).unwrap();
        let e = lock(dir.path(), Duration::from_millis(120)).err().unwrap();
        assert!(matches!(e, StoreError::Busy { .. }), "{e}");
        drop(held);
        lock(dir.path(), Duration::ZERO).unwrap();
    }

    #[test]
    fn a_corrupt_history_is_named_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        std::fs::create_dir_all(store.dir()).unwrap();
        std::fs::write(store.dir().join(HISTORY_FILE), b"{oops").unwrap();
        let e = store
            .promote(&dir.path().join("m.json"), &keep(b"a", "a"), None, 5)
            .unwrap_err();
        assert!(e.to_string().contains("not a valid version history"), "{e}");
        assert!(!dir.path().join("m.json").exists());
    }
}
