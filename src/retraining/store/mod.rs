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
//!
//! Every file here is read through [`crate::fsio`]: no symlink followed, a
//! regular file only, never more than a cap. A history naming anything but
//! the kept files the store writes is refused whole, and nothing it names
//! is touched.

mod history;
mod lock;
mod recovery;

use std::path::{Path, PathBuf};

pub use history::{Entry, History, KeptName};
pub use lock::{lock, Lock};

use crate::fsio::{self, sha256_hex, FsError, Replacement};

/// The lock file in `model.dir`.
pub const LOCK_FILE: &str = ".nbserve.lock";
/// The kept versions' directory in `model.dir`.
pub const VERSIONS_DIR: &str = "versions";
/// The history file in the versions directory.
pub const HISTORY_FILE: &str = "history.json";
/// Largest history read: thousands of entries fit many times over.
pub const MAX_HISTORY_BYTES: u64 = 16 << 20;
/// Longest `in_service` stack kept (older steps are forgotten).
const MAX_STACK: usize = 1000;

/// Why the store could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be read or written (missing, a symlink, not a
    /// regular file, too large, an owner that cannot be kept...).
    #[error(transparent)]
    File(#[from] FsError),
    /// Another retrain or rollback held the lock too long.
    #[error("another retrain or rollback holds the lock {path} (waited {waited_secs} s)")]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// How long this one waited.
        waited_secs: u64,
    },
    /// `history.json` is not what this build writes.
    #[error("{path}: not a valid version history ({message}); nothing it names was touched; move it aside to start a new one")]
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

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
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
    /// Kept files found in the directory but not in the history (left by
    /// a crash), taken back into it rather than deleted.
    pub adopted: Vec<String>,
    /// What failed after `model.path` was replaced: the candidate is in
    /// service, but the history still records the promotion as under way
    /// (the next retrain or rollback completes it) or pruned files remain.
    pub error: Option<String>,
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
    max_bytes: u64,
}

impl Store {
    /// The store of `model_dir` (nothing is created until a promotion),
    /// reading kept files of at most `max_bytes` (`model.max_bytes`: a
    /// larger one could not be served anyway).
    pub fn new(model_dir: &Path, max_bytes: u64) -> Self {
        Self {
            versions: model_dir.join(VERSIONS_DIR),
            max_bytes,
        }
    }

    /// The versions directory.
    pub fn dir(&self) -> &Path {
        &self.versions
    }

    fn history_path(&self) -> PathBuf {
        self.versions.join(HISTORY_FILE)
    }

    /// Reads and validates the history; empty when there is none yet.
    pub fn history(&self) -> Result<History, StoreError> {
        let path = self.history_path();
        let bytes = match fsio::read_regular(&path, MAX_HISTORY_BYTES) {
            Ok(b) => b,
            Err(FsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(History::default())
            }
            Err(e) => return Err(e.into()),
        };
        History::parse(&bytes).map_err(|message| StoreError::History { path, message })
    }

    fn write_history(&self, h: &History) -> Result<(), StoreError> {
        let mut bytes = serde_json::to_vec_pretty(h).expect("serialisable");
        bytes.push(b'\n');
        Ok(fsio::write_atomic(&self.history_path(), &bytes)?)
    }

    /// The bytes of a kept file (never through a symlink, a regular file of
    /// at most `max_bytes`).
    pub fn read_kept(&self, entry: &Entry) -> Result<Vec<u8>, StoreError> {
        Ok(fsio::read_regular(
            &self.versions.join(&entry.file),
            self.max_bytes,
        )?)
    }

    /// Whether `entry`'s file is there with the sha256 it was kept with.
    fn holds(&self, entry: &Entry) -> bool {
        self.read_kept(entry)
            .is_ok_and(|b| sha256_hex(&b) == entry.sha256)
    }

    fn add(&self, h: &mut History, model: &Keep, origin: &str) -> Result<Entry, StoreError> {
        let seq = h.next_seq.max(1);
        let file = KeptName::new(seq, model.version);
        fsio::write_atomic(&self.versions.join(&file), model.bytes)?;
        let entry = Entry {
            seq,
            file,
            name: model.name.to_owned(),
            version: model.version.to_owned(),
            sha256: sha256_hex(model.bytes),
            origin: origin.to_owned(),
            added_at: now(),
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
    /// Order, so that a crash at any step leaves a state the next run
    /// understands, and never the only copy of a model deleted:
    /// 1. everything refusable is checked first (the history is valid,
    ///    `model_path`'s replacement can be made with its owner and mode);
    /// 2. the kept files are written (a crash here: the next run adopts them);
    /// 3. the history is written with the promotion marked under way;
    /// 4. `model_path` is replaced (a crash before or after: the next run
    ///    tells which from `model_path`'s content);
    /// 5. the history is written again, done and pruned;
    /// 6. the pruned files are deleted.
    ///
    /// A failure in step 5 or 6 is not an error: the candidate is in
    /// service, and [`Promoted::error`] says what remains to be done.
    pub fn promote(
        &self,
        model_path: &Path,
        candidate: &Keep,
        current: Option<&Keep>,
        keep: usize,
    ) -> Result<Promoted, StoreError> {
        let keep = keep.max(2);
        let mut h = self.history()?;
        let replacement = Replacement::new(model_path)?;
        std::fs::create_dir_all(&self.versions).map_err(io(&self.versions))?;
        self.remove_stale_temps(model_path)?;
        let serving = current.map(|c| sha256_hex(c.bytes));
        let adopted = self.recover(&mut h, serving.as_deref())?;
        let mut written = Vec::new();
        let result = self.stage(&mut h, candidate, current, &mut written);
        let (new, replaced) = match result.and_then(|staged| {
            self.write_history(&h)?;
            Ok(staged)
        }) {
            Ok(staged) => staged,
            Err(e) => {
                // Nothing names them and model_path is unchanged: this
                // run's own copies are redundant.
                for f in &written {
                    let _ = std::fs::remove_file(self.versions.join(f));
                }
                return Err(e);
            }
        };
        let mut error = None;
        if let Err(e) = replacement.commit(candidate.bytes) {
            // Failed before the rename, the history's mark tells the next
            // run nothing happened; only the directory sync comes after it.
            if !self.serves(model_path, &new.sha256) {
                return Err(e.into());
            }
            error = Some(format!(
                "{} was replaced, but the rename may not be durable ({e})",
                model_path.display()
            ));
        }
        h.pending = None;
        let pruned = prune(
            &mut h,
            keep,
            [Some(new.seq), replaced.as_ref().map(|e| e.seq)],
        );
        let mut done = Promoted {
            file: format!("{VERSIONS_DIR}/{}", new.file),
            replaced,
            removed: Vec::new(),
            adopted,
            error,
        };
        if let Err(e) = self.write_history(&h) {
            done.error = Some(format!(
                "the version history could not be completed ({e}); it still records this promotion as under way, which the next retrain or rollback completes"
            ));
            return Ok(done);
        }
        for f in pruned {
            let rel = format!("{VERSIONS_DIR}/{f}");
            match remove_if_present(&self.versions.join(&f)) {
                Ok(()) => done.removed.push(rel),
                Err(e) => done.error = Some(format!("{rel} could not be deleted ({e})")),
            }
        }
        Ok(done)
    }

    /// Steps 2 and 3 of [`Store::promote`] in memory and on disk: the kept
    /// files (their names in `written` as they are made), the stack and the
    /// mark. Returns the candidate's entry and the replaced model's.
    fn stage(
        &self,
        h: &mut History,
        candidate: &Keep,
        current: Option<&Keep>,
        written: &mut Vec<KeptName>,
    ) -> Result<(Entry, Option<Entry>), StoreError> {
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
                    None => {
                        let e = self.add(h, cur, "replaced")?;
                        written.push(e.file.clone());
                        e
                    }
                };
                if h.in_service.last() != Some(&entry.seq) {
                    h.in_service.push(entry.seq);
                }
                Some(entry)
            }
        };
        let new = self.add(h, candidate, "retrain")?;
        written.push(new.file.clone());
        h.in_service.push(new.seq);
        h.pending = Some(new.seq);
        if h.in_service.len() > MAX_STACK {
            let extra = h.in_service.len() - MAX_STACK;
            h.in_service.drain(..extra);
        }
        Ok((new, replaced))
    }

    /// Whether `model_path` holds the bytes with this sha256.
    fn serves(&self, model_path: &Path, sha256: &str) -> bool {
        fsio::read_regular_following(model_path, self.max_bytes)
            .is_ok_and(|b| sha256_hex(&b) == sha256)
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
        self.recover(&mut h, serving_sha256)?;
        let entry = |h: &History, seq: u64| h.entries.iter().find(|e| e.seq == seq).cloned();
        let target = match to {
            Some(wanted) => {
                let found = h
                    .entries
                    .iter()
                    .rev()
                    .find(|e| {
                        e.version == wanted
                            || e.file.as_str() == wanted
                            || e.seq.to_string() == wanted
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
        let replacement = Replacement::new(model_path)?;
        self.write_history(&plan.history)?;
        replacement.commit(bytes)?;
        Ok(plan.target)
    }
}

/// Drops the oldest entries beyond `keep` from `h` (never a `protected`
/// one: the new model, or the one it replaced, which after a rollback can
/// be the oldest kept) and returns their files. Versions rolled back from
/// (off the stack) go first: rollback can only reach the ones on it.
fn prune(h: &mut History, keep: usize, protected: [Option<u64>; 2]) -> Vec<KeptName> {
    let mut pruned = Vec::new();
    while h.entries.len() > keep {
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
    pruned
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::time::Duration;

    use super::recovery::STALE_TEMP;
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
        let store = Store::new(dir.path(), u64::MAX);
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
        let store = Store::new(dir.path(), u64::MAX);
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

    /// Bytes that declare a model `m` version `v` (all adoption reads).
    fn model(v: &str) -> Vec<u8> {
        format!(r#"{{"model":{{"name":"m","version":"{v}"}}}}"#).into_bytes()
    }

    fn sha(bytes: &[u8]) -> String {
        sha256_hex(bytes)
    }

    #[test]
    fn a_promotion_adopts_kept_files_a_killed_one_left_and_clears_stale_temps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let store = Store::new(dir.path(), u64::MAX);
        let (a, b, c) = (model("a"), model("b"), model("c"));
        store.promote(&path, &keep(&a, "a"), None, 5).unwrap();
        // kill -9 after the kept files, before the history: never deleted
        // (a model's bytes are adopted; anything else is left alone).
        let v = store.dir();
        std::fs::write(v.join("000002-b.json"), &b).unwrap();
        std::fs::write(v.join("000003-junk.json"), b"not a model").unwrap();
        std::fs::write(v.join(".000002-b.json.tmp-7-0-1"), &b).unwrap();
        std::fs::write(v.join(".history.json.tmp-7-1-2"), b"{").unwrap();
        std::fs::write(dir.path().join(".m.json.tmp-7-2-3"), &b).unwrap();
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
            .promote(&path, &keep(&c, "c"), Some(&keep(&a, "a")), 5)
            .unwrap();
        assert_eq!(p.removed, Vec::<String>::new());
        assert_eq!(p.adopted, ["versions/000002-b.json"]);
        assert_eq!(p.file, "versions/000004-c.json", "numbers never reused");
        assert_eq!(p.error, None);
        assert_eq!(
            files(&store),
            [
                "000001-a.json",
                "000002-b.json",
                "000003-junk.json",
                "000004-c.json",
                "history.json",
                "notes.txt"
            ]
        );
        let h = store.history().unwrap();
        assert_eq!(h.entry(2).unwrap().origin, "adopted");
        assert_eq!(h.entry(2).unwrap().version, "b");
        // b was never in service: off the stack, reachable with --to.
        assert_eq!(h.in_service, [1, 4]);
        assert!(!dir.path().join(".m.json.tmp-7-2-3").exists());
        assert!(dir.path().join(".m.json.tmp-8").exists());
    }

    /// The state an older build left when killed (or out of disk) between
    /// replacing model.path and writing the history: the kept files of the
    /// replaced model and of the candidate, unlisted; model.path holds the
    /// candidate. Returns the store's directory, model.path, and the bytes
    /// of the previous model and of the candidate.
    fn crashed_after_the_rename() -> (tempfile::TempDir, PathBuf, Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let store = Store::new(dir.path(), u64::MAX);
        let (a, b, c) = (model("a"), model("b"), model("c"));
        store.promote(&path, &keep(&a, "a"), None, 5).unwrap();
        std::fs::write(&path, &b).unwrap(); // b, made by `nbserve train`
        std::fs::write(store.dir().join("000002-b.json"), &b).unwrap();
        std::fs::write(store.dir().join("000003-c.json"), &c).unwrap();
        std::fs::write(&path, &c).unwrap();
        (dir, path, b, c)
    }

    #[test]
    fn after_a_crash_between_the_rename_and_the_history_rollback_finds_the_previous_model() {
        let (dir, path, b, c) = crashed_after_the_rename();
        let store = Store::new(dir.path(), u64::MAX);
        let plan = store.plan_rollback(Some(&sha(&c)), None).unwrap();
        assert_eq!(plan.target.version, "b");
        let bytes = store.read_kept(&plan.target).unwrap();
        assert_eq!(bytes, b);
        store.apply_rollback(plan, &path, &bytes).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b);
        assert_eq!(store.history().unwrap().in_service, [1, 2]);
    }

    #[test]
    fn after_a_crash_between_the_rename_and_the_history_the_next_promotion_keeps_every_model() {
        let (dir, path, b, c) = crashed_after_the_rename();
        let store = Store::new(dir.path(), u64::MAX);
        let d = model("d");
        // Keeping 3, pruning drops a, never the adopted b or c.
        let p = store
            .promote(&path, &keep(&d, "d"), Some(&keep(&c, "c")), 3)
            .unwrap();
        assert_eq!(
            p.adopted,
            ["versions/000002-b.json", "versions/000003-c.json"]
        );
        assert_eq!(p.removed, ["versions/000001-a.json"]);
        assert_eq!(p.replaced.unwrap().seq, 3);
        let h = store.history().unwrap();
        assert_eq!(h.in_service, [2, 3, 4]);
        // The chain back: d → c → b.
        for (from, to) in [(&d, "c"), (&c, "b")] {
            let plan = store.plan_rollback(Some(&sha(from)), None).unwrap();
            let bytes = store.read_kept(&plan.target).unwrap();
            assert_eq!(
                store.apply_rollback(plan, &path, &bytes).unwrap().version,
                to
            );
        }
        assert_eq!(std::fs::read(&path).unwrap(), b);
    }

    #[test]
    fn a_promotion_cut_short_either_side_of_the_rename_is_read_from_model_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let store = Store::new(dir.path(), u64::MAX);
        let (a, b) = (model("a"), model("b"));
        store.promote(&path, &keep(&a, "a"), None, 5).unwrap();
        // What promote writes before the rename: b kept, marked under way.
        let mut h = store.history().unwrap();
        let (new, _) = store
            .stage(
                &mut h,
                &keep(&b, "b"),
                Some(&keep(&a, "a")),
                &mut Vec::new(),
            )
            .unwrap();
        store.write_history(&h).unwrap();
        assert_eq!(store.history().unwrap().pending, Some(new.seq));
        // Killed before the rename: a is still in service, so a rollback
        // has nothing before it, and b is not on the stack.
        assert!(matches!(
            store.plan_rollback(Some(&sha(&a)), None),
            Err(StoreError::NothingToRollBack(_))
        ));
        let plan = store.plan_rollback(Some(&sha(&a)), Some("b")).unwrap();
        assert_eq!(plan.history.in_service, [1, 2]);
        assert_eq!(plan.history.pending, None);
        // Killed after the rename: b is in service, a before it.
        std::fs::write(&path, &b).unwrap();
        let plan = store.plan_rollback(Some(&sha(&b)), None).unwrap();
        assert_eq!(plan.target.version, "a");
        // And a promotion completes it the same way.
        let c = model("c");
        store
            .promote(&path, &keep(&c, "c"), Some(&keep(&b, "b")), 5)
            .unwrap();
        let h = store.history().unwrap();
        assert_eq!((h.in_service, h.pending), (vec![1, 2, 3], None));
    }

    #[test]
    fn a_history_naming_paths_outside_the_store_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let victim = outside.join("victim.txt");
        let absolute = dir.path().join("absolute.txt");
        for f in [&victim, &absolute] {
            std::fs::write(f, b"precious").unwrap();
        }
        let path = models.join("m.json");
        let store = Store::new(&models, u64::MAX);
        let a = model("a");
        store.promote(&path, &keep(&a, "a"), None, 2).unwrap();
        let mut h: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.history_path()).unwrap()).unwrap();
        let mut poisoned = h["entries"][0].clone();
        for (seq, file) in [
            (7, "../../outside/victim.txt"),
            (8, absolute.to_str().unwrap()),
        ] {
            poisoned["seq"] = seq.into();
            poisoned["file"] = file.into();
            h["entries"]
                .as_array_mut()
                .unwrap()
                .insert(0, poisoned.clone());
        }
        h["next_seq"] = 9.into();
        std::fs::write(store.history_path(), h.to_string()).unwrap();
        let before = std::fs::read(&path).unwrap();
        let b = model("b");
        let e = store
            .promote(&path, &keep(&b, "b"), Some(&keep(&a, "a")), 2)
            .unwrap_err();
        assert!(
            e.to_string().contains("not a kept file name")
                && e.to_string().contains("nothing it names was touched"),
            "{e}"
        );
        let e = store.plan_rollback(Some(&sha(&a)), None).unwrap_err();
        assert!(matches!(e, StoreError::History { .. }), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&absolute).unwrap(), b"precious");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(files(&store), ["000001-a.json", "history.json"]);
    }

    #[test]
    fn a_history_or_kept_file_that_is_a_device_fifo_or_link_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let store = Store::new(dir.path(), 1 << 20);
        let (a, b) = (model("a"), model("b"));
        store.promote(&path, &keep(&a, "a"), None, 5).unwrap();
        let history = store.history_path();
        let saved = std::fs::read(&history).unwrap();
        std::fs::remove_file(&history).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &history).unwrap();
        let e = store.history().unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_file(&history).unwrap();
        let c = std::ffi::CString::new(history.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = store.history().unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        std::fs::remove_file(&history).unwrap();
        std::fs::write(&history, saved).unwrap();
        // The kept file of a, replaced by a link to /dev/zero: not read, not
        // trusted; a is kept again from model.path's bytes.
        let kept = store.dir().join("000001-a.json");
        std::fs::remove_file(&kept).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &kept).unwrap();
        let entry = store.history().unwrap().entries[0].clone();
        let e = store.read_kept(&entry).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let p = store
            .promote(&path, &keep(&b, "b"), Some(&keep(&a, "a")), 5)
            .unwrap();
        assert_eq!(p.replaced.unwrap().seq, 2);
        let plan = store.plan_rollback(Some(&sha(&b)), None).unwrap();
        assert_eq!(store.read_kept(&plan.target).unwrap(), a);
    }

    #[test]
    fn rollback_after_rollback_goes_further_back_and_promotion_resumes() {
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Store::new(empty.path(), u64::MAX).plan_rollback(None, None),
            Err(StoreError::NothingToRollBack(_))
        ));
        let (dir, model) = promoted_a_b_c(5);
        let store = Store::new(dir.path(), u64::MAX);
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
        let store = Store::new(dir.path(), u64::MAX);
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

    /// A store (keeping `keep`) into which a, b and c were promoted in
    /// turn; the model path.
    fn promoted_a_b_c(keep: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.json");
        let store = Store::new(dir.path(), u64::MAX);
        let mut before: Option<&str> = None;
        for v in ["a", "b", "c"] {
            let current = before.map(|b| self::keep(b.as_bytes(), b));
            store
                .promote(&model, &self::keep(v.as_bytes(), v), current.as_ref(), keep)
                .unwrap();
            before = Some(v);
        }
        (dir, model)
    }

    #[test]
    fn pruning_spares_a_rolled_back_to_model_it_replaces() {
        let (dir, model) = promoted_a_b_c(3);
        let store = Store::new(dir.path(), u64::MAX);
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
        let (dir, model) = promoted_a_b_c(3);
        let store = Store::new(dir.path(), u64::MAX);
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
        let store = Store::new(dir.path(), u64::MAX);
        store.promote(&model, &keep(b"a", "a"), None, 5).unwrap();
        std::fs::write(&model, b"hand-made").unwrap();
        let plan = store
            .plan_rollback(Some(&sha256_hex(b"hand-made")), None)
            .unwrap();
        assert_eq!(plan.target.version, "a");
    }

    #[test]
    fn a_corrupt_history_is_named_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), u64::MAX);
        std::fs::create_dir_all(store.dir()).unwrap();
        std::fs::write(store.dir().join(HISTORY_FILE), b"{oops").unwrap();
        let e = store
            .promote(&dir.path().join("m.json"), &keep(b"a", "a"), None, 5)
            .unwrap_err();
        assert!(e.to_string().contains("not a valid version history"), "{e}");
        assert!(!dir.path().join("m.json").exists());
    }
}
