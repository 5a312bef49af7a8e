//! The JSON-lines feedback log: append-only, one `write` per line, so a crash
//! can cut only the line being written — and that one is dropped on reopening.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::settings::LogFsync;

/// How often `interval` syncs, and how often write failures are reported.
pub(super) const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Longest tail without a newline taken for a record cut by a crash;
/// anything longer is not this log's and the file is refused.
const MAX_CUT_RECORD: u64 = 64 * 1024;

/// The JSON-lines feedback log: complete lines only, except that a crash may
/// cut the very last one.
pub(super) struct FeedbackLog<F = File> {
    file: F,
    /// Bytes up to the end of the last complete line.
    len: u64,
    /// The path it was opened at (rotation is noticed by comparing it with
    /// the open file); `None` for test files.
    path: Option<PathBuf>,
    pub(super) fsync: LogFsync,
    last_sync: Instant,
    /// Lines written since the last sync.
    unsynced: bool,
    /// Failed writes, syncs and reopens so far.
    errors: u64,
    /// When a failure was last reported in the log.
    last_report: Option<Instant>,
}

/// What [`FeedbackLog`] needs of its file (a seam for failing-disk tests).
pub(super) trait LogFile: Write {
    fn size(&self) -> std::io::Result<u64>;
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()>;
    fn sync(&mut self) -> std::io::Result<()>;
}

impl LogFile for File {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

impl FeedbackLog {
    /// Opens `path` for appending. It must be a regular file, and what
    /// follows its last newline must be nothing or a record cut by a crash
    /// (a short `{...` tail), which is removed: otherwise the next record
    /// would be glued onto it. Anything else is refused rather than cut, so
    /// a wrong path never destroys a file.
    pub(super) fn open(path: &Path, fsync: LogFsync) -> std::io::Result<Self> {
        // A FIFO must not hang start-up: it is refused, like a device.
        let mut file =
            crate::fsio::open_append(path).map_err(crate::fsio::FsError::into_io_error)?;
        let size = file.metadata()?.len();
        let len = complete_lines_len(&mut file, size)?;
        if len < size {
            file.set_len(len)?;
            tracing::warn!(
                bytes = size - len,
                "dropped an incomplete last line from the feedback log"
            );
        }
        Ok(Self {
            file,
            len,
            path: Some(path.to_owned()),
            fsync,
            last_sync: Instant::now(),
            unsynced: false,
            errors: 0,
            last_report: None,
        })
    }

    /// True when the path no longer names the open file (renamed or
    /// removed by log rotation).
    fn rotated(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(path) = &self.path else {
            return false;
        };
        match (std::fs::metadata(path), self.file.metadata()) {
            (Ok(p), Ok(h)) => p.dev() != h.dev() || p.ino() != h.ino(),
            (Err(_), _) => true,
            (_, Err(_)) => false,
        }
    }

    /// Syncs what was written and reopens the path (after rotation, or on
    /// SIGHUP). On failure the current file is kept and the failure counted.
    pub(super) fn reopen(&mut self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        self.sync_now();
        match Self::open(&path, self.fsync) {
            Ok(fresh) => {
                self.file = fresh.file;
                self.len = fresh.len;
                self.last_sync = fresh.last_sync;
                tracing::info!("feedback log reopened");
            }
            Err(e) => self.failed("reopen", &e),
        }
    }

    /// Checks for rotation (reopening if the path names another file now):
    /// once per batch of lines the writer thread takes from its queue.
    pub(super) fn follow_rotation(&mut self) {
        if self.rotated() {
            self.reopen();
        }
    }
}

impl<F: LogFile> FeedbackLog<F> {
    /// Appends one line with one `write`. If the write fails partway (disk
    /// full), the partial line is cut off again, so later lines never follow
    /// a broken one.
    pub(super) fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self.file.write_all(line) {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut only what this write added: if the file was truncated
                // behind our back (copytruncate), `len` is stale and must not
                // be used to extend it.
                if let Ok(size) = self.file.size() {
                    if size > self.len && size < self.len + line.len() as u64 {
                        let _ = self.file.truncate_to(self.len);
                    }
                }
                Err(e)
            }
        }
    }

    /// Appends `lines` (complete JSON lines, each ending in `\n`: one
    /// request's) as one unit: a write that fails partway is cut back to
    /// where it started, so a batch of `/examples` the client is told to
    /// retry (503) leaves none of its lines behind. A failure is counted and
    /// reported, not returned to the request: what the lines record is
    /// already counted and in the window. False if the lines were not
    /// written.
    pub(super) fn write_lines(&mut self, lines: &[u8]) -> bool {
        match self.append(lines) {
            Ok(()) => {
                self.unsynced = true;
                true
            }
            Err(e) => {
                self.failed("append", &e);
                false
            }
        }
    }

    /// True while lines written since the last sync are not yet synced.
    pub(super) fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Syncs lines written since the last sync (`interval` calls this every
    /// [`LOG_INTERVAL`], besides doing it on append when one is due).
    pub(super) fn sync_now(&mut self) {
        if !self.unsynced {
            return;
        }
        match self.file.sync() {
            Ok(()) => {
                self.unsynced = false;
                self.last_sync = Instant::now();
            }
            Err(e) => self.failed("sync", &e),
        }
    }

    /// Sync if the policy is `interval` and one is due.
    pub(super) fn sync_if_due(&mut self) {
        if self.fsync == LogFsync::Interval && self.last_sync.elapsed() >= LOG_INTERVAL {
            self.sync_now();
        }
    }

    /// Failed writes, syncs and reopens so far.
    pub(super) fn errors(&self) -> u64 {
        self.errors
    }

    /// Counts a failure; reports at most one per [`LOG_INTERVAL`] (a full
    /// disk fails every write).
    fn failed(&mut self, what: &'static str, e: &std::io::Error) {
        self.errors += 1;
        if self.last_report.is_none_or(|t| t.elapsed() >= LOG_INTERVAL) {
            self.last_report = Some(Instant::now());
            tracing::error!(error = %e, operation = what, failures = self.errors, "feedback log failure; predictions and feedback go on");
        }
    }
}

/// The length of `file` (of `size` bytes) up to and including its last
/// `\n`, when what follows it is a cut record; an error otherwise.
fn complete_lines_len(file: &mut File, size: u64) -> std::io::Result<u64> {
    let start = size.saturating_sub(MAX_CUT_RECORD + 1);
    let mut tail = Vec::with_capacity((size - start) as usize);
    file.seek(SeekFrom::Start(start))?;
    file.take(size - start).read_to_end(&mut tail)?;
    let cut_from = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if start == 0 => 0,
        None => return Err(not_a_log()),
    };
    let cut = &tail[cut_from..];
    if !cut.is_empty() && cut[0] != b'{' {
        return Err(not_a_log());
    }
    Ok(start + cut_from as u64)
}

fn not_a_log() -> std::io::Error {
    std::io::Error::other(
        "the file does not end like a feedback log (a JSON line or a cut record); refusing to change it",
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{flush, model};
    use super::super::FeedbackStore;
    use super::*;

    /// Accepts `room` bytes, then fails like a full disk.
    struct FullDisk {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = buf.len().min(self.room);
            self.data.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl LogFile for FullDisk {
        fn size(&self) -> std::io::Result<u64> {
            Ok(self.data.len() as u64)
        }
        fn truncate_to(&mut self, len: u64) -> std::io::Result<()> {
            self.data.truncate(len as usize);
            Ok(())
        }
        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A log on a disk with `room` bytes left.
    fn full_disk_log(room: usize) -> FeedbackLog<FullDisk> {
        FeedbackLog {
            file: FullDisk {
                data: Vec::new(),
                room,
            },
            len: 0,
            path: None,
            fsync: LogFsync::Never,
            last_sync: Instant::now(),
            unsynced: false,
            errors: 0,
            last_report: None,
        }
    }

    #[test]
    fn a_write_that_fails_partway_leaves_no_partial_line() {
        let mut log = full_disk_log(15);
        log.append(b"{\"n\":1}\n").unwrap();
        assert!(log.append(b"{\"n\":2}\n").is_err()); // 7 of 8 bytes fit
        assert_eq!(log.file.data, b"{\"n\":1}\n");
        log.file.room = 100; // space freed
        log.append(b"{\"n\":3}\n").unwrap();
        assert_eq!(log.file.data, b"{\"n\":1}\n{\"n\":3}\n");
    }

    #[test]
    fn a_batch_that_fails_partway_leaves_none_of_its_lines() {
        let mut log = full_disk_log(12);
        // The first line (8 bytes) fits, the second does not: all or none.
        assert!(!log.write_lines(b"{\"n\":1}\n{\"n\":2}\n"));
        assert_eq!(log.file.data, b"");
        log.file.room = 100;
        assert!(log.write_lines(b"{\"n\":3}\n{\"n\":4}\n"));
        assert_eq!(log.file.data, b"{\"n\":3}\n{\"n\":4}\n");
    }

    #[test]
    fn a_line_cut_by_a_crash_is_dropped_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb.jsonl");
        std::fs::write(&path, "{\"label\":\"spam\"}\n{\"prediction_id\":\"12").unwrap();
        let s = FeedbackStore::new(10, Duration::from_secs(60), 10, Some(&path)).unwrap();
        let id = s.remember(&model(), 0, 0.9, None).to_string();
        s.submit(&id, "ham").unwrap();
        flush(&s);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'), "{text}");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["label"], "spam");
        assert_eq!(lines[1]["prediction_id"], id.as_str());
        // Tails that are no cut record: refused, and the file left alone.
        for tail in ["{".to_owned() + &"y".repeat(150_000), "not json".to_owned()] {
            let text = format!("{{\"a\":1}}\n{tail}");
            std::fs::write(&path, &text).unwrap();
            assert!(FeedbackStore::new(10, Duration::from_secs(60), 10, Some(&path)).is_err());
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
        // A file that is one cut line: emptied.
        std::fs::write(&path, "{\"predic").unwrap();
        drop(FeedbackStore::new(10, Duration::from_secs(60), 10, Some(&path)).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    /// SIGHUP reopens the path before the next write (the open's repair of
    /// a cut record then applies to whatever is at the path now).
    #[test]
    fn reopen_on_request_goes_through_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb.jsonl");
        let s = FeedbackStore::new(10, Duration::from_secs(60), 10, Some(&path)).unwrap();
        let m = model();
        let id = s.remember(&m, 0, 0.9, None).to_string();
        s.submit(&id, "ham").unwrap();
        flush(&s);
        // Something else appended a record cut short (same file, no rename).
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"cut").unwrap();
        s.reopen_log();
        let id = s.remember(&m, 0, 0.9, None).to_string();
        s.submit(&id, "spam").unwrap();
        flush(&s);
        let text = std::fs::read_to_string(&path).unwrap();
        let labels: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
            })
            .map(|v| v["label"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(labels, ["ham", "spam"]);
        assert_eq!(s.log_errors(), 0);
    }

    #[test]
    fn persisted_lines_are_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb.jsonl");
        let s = FeedbackStore::new(10, Duration::from_secs(60), 10, Some(&path)).unwrap();
        let m = model();
        for _ in 0..3 {
            let id = s.remember(&m, 0, 0.9, None).to_string();
            s.submit(&id, "ham").unwrap();
        }
        flush(&s);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["label"], "ham");
        assert_eq!(lines[0]["source"], "feedback");
        assert!(lines[0].get("text").is_none(), "no text unless kept");
    }
}
