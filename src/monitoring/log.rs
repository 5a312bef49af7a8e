//! The JSON-lines feedback log: append-only, one `write` per line, so a crash
//! can cut only the line being written — and that one is dropped on reopening.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The JSON-lines feedback log: complete lines only, except that a crash may
/// cut the very last one.
pub(super) struct FeedbackLog<F = File> {
    file: F,
    /// Bytes up to the end of the last complete line.
    len: u64,
}

/// What [`FeedbackLog`] needs of its file (a seam for failing-disk tests).
pub(super) trait LogFile: Write {
    fn size(&self) -> std::io::Result<u64>;
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()>;
}

impl LogFile for File {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
}

impl FeedbackLog {
    /// Opens `path` for appending. A line cut by an earlier crash is removed
    /// first: otherwise the next record would be glued onto it, leaving a
    /// broken line in the middle of the log and losing that record too.
    pub(super) fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        let len = complete_lines_len(&mut file, size)?;
        if len < size {
            file.set_len(len)?;
            tracing::warn!(
                path = %path.display(),
                bytes = size - len,
                "dropped an incomplete last line from the feedback log"
            );
        }
        Ok(Self { file, len })
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
}

/// The length of `file` (of `size` bytes) up to and including its last `\n`.
fn complete_lines_len(file: &mut File, size: u64) -> std::io::Result<u64> {
    let mut end = size;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl FeedbackLog {
    /// Appends `record` as one JSON line; a failure is logged, not returned:
    /// the feedback it records is already counted and in the window.
    pub(super) fn append_record(&mut self, record: &impl serde::Serialize) {
        let mut line = serde_json::to_vec(record).expect("serialisable");
        line.push(b'\n');
        if let Err(e) = self.append(&line) {
            tracing::error!(error = %e, "cannot append to the feedback log");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::model;
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
    }

    #[test]
    fn a_write_that_fails_partway_leaves_no_partial_line() {
        let mut log = FeedbackLog {
            file: FullDisk {
                data: Vec::new(),
                room: 15,
            },
            len: 0,
        };
        log.append(b"{\"n\":1}\n").unwrap();
        assert!(log.append(b"{\"n\":2}\n").is_err()); // 7 of 8 bytes fit
        assert_eq!(log.file.data, b"{\"n\":1}\n");
        log.file.room = 100; // space freed
        log.append(b"{\"n\":3}\n").unwrap();
        assert_eq!(log.file.data, b"{\"n\":1}\n{\"n\":3}\n");
    }

    #[test]
    fn a_line_cut_by_a_crash_is_dropped_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb.jsonl");
        std::fs::write(&path, "{\"label\":\"spam\"}\n{\"prediction_id\":\"12").unwrap();
        let s = FeedbackStore::new(10, Duration::from_secs(60), 10, Some(&path)).unwrap();
        let id = s.remember(&model(), 0, 0.9, None).to_string();
        s.submit(&id, "ham").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'), "{text}");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["label"], "spam");
        assert_eq!(lines[1]["prediction_id"], id.as_str());
        // The last newline more than one read chunk (64 KiB) before the end.
        let long = format!("{{\"a\":1}}\n{}", "y".repeat(150_000));
        std::fs::write(&path, long).unwrap();
        drop(FeedbackStore::new(10, Duration::from_secs(60), 10, Some(&path)).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
        // A file that is one cut line: emptied.
        std::fs::write(&path, "{\"predic").unwrap();
        drop(FeedbackStore::new(10, Duration::from_secs(60), 10, Some(&path)).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"");
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
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["label"], "ham");
    }
}
