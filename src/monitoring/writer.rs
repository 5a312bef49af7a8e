//! The feedback log's writer thread: requests hand their lines to a queue
//! bounded in bytes and never touch the file, so a stalled disk (or a write
//! that blocks for any reason) cannot block an async worker.
//!
//! - `never` / `interval`: lines are queued without waiting; when the queue
//!   is full the lines are dropped and counted (the request goes on).
//! - `always`: the request waits — asynchronously, the worker is free — for
//!   room in the queue and then for the writer to report the lines synced,
//!   and only then acknowledges. Lines that arrive together are synced
//!   together (one `fsync` for all the requests waiting).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::log::{FeedbackLog, LOG_INTERVAL};
use crate::settings::LogFsync;

/// Bytes of lines the queue holds by default (64 MiB: the default text
/// budget, so a burst of feedback for kept texts fits).
pub(super) const QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Queue room is counted in units of this many bytes (a semaphore permit
/// each), every job taking at least one.
const UNIT: usize = 1024;

/// Jobs the writer takes from the queue before writing and syncing them.
const MAX_GROUP: usize = 1024;

/// One request's lines, or a request to the writer.
enum Job {
    Lines {
        /// Complete JSON lines, each ending in `\n`.
        bytes: Vec<u8>,
        /// Told whether the lines were written and synced (`always`).
        ack: Option<oneshot::Sender<bool>>,
        /// The lines' room in the queue, given back once written.
        _room: OwnedSemaphorePermit,
    },
    /// Answered once every job queued before it is written and synced.
    Flush(oneshot::Sender<()>),
    /// Look at the reopen flag now.
    Wake,
}

/// What the writer and the request path share.
struct Shared {
    /// Failed writes, syncs and reopens so far (the writer's count).
    errors: AtomicU64,
    /// Lines dropped because the queue was full.
    dropped: AtomicU64,
    /// Set by SIGHUP: reopen before the next write.
    reopen: AtomicBool,
    /// Milliseconds after `epoch` of the last "dropped" report (+1; 0 = never).
    last_drop_report: AtomicU64,
    epoch: Instant,
    /// While true the writer waits before writing (see [`LogWriter::pause`]).
    paused: Mutex<bool>,
    resumed: Condvar,
}

impl Shared {
    /// Counts dropped lines; logs at most once per [`LOG_INTERVAL`].
    fn count_dropped(&self, lines: u64) {
        let total = self.dropped.fetch_add(lines, Ordering::Relaxed) + lines;
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_drop_report.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_INTERVAL.as_millis() as u64;
        if due
            && self
                .last_drop_report
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(
                dropped_lines = total,
                "feedback log lines dropped (queue full: the disk is slow or stalled); predictions and feedback go on"
            );
        }
    }
}

/// The request side of the writer thread.
pub(super) struct LogWriter {
    tx: Sender<Job>,
    fsync: LogFsync,
    room: Arc<Semaphore>,
    room_units: u32,
    shared: Arc<Shared>,
}

/// What became of lines handed to the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutcome {
    /// No log is configured.
    NoLog,
    /// Queued; written (and synced per `interval` or `never`) shortly.
    Queued,
    /// Written and synced (`always`).
    Synced,
    /// The queue was full: not written (counted).
    Dropped,
    /// Written or synced with an error (counted).
    Failed,
}

/// Lines handed to the writer: await [`LogReceipt::outcome`] to know what
/// became of them (under `always`, once they are synced). Dropping a receipt
/// does not withdraw lines already queued.
#[must_use = "under `always`, lines are acknowledged only by awaiting the receipt"]
pub struct LogReceipt(Receipt);

enum Receipt {
    Done(LogOutcome),
    Acked(oneshot::Receiver<bool>),
    /// `always` with a full queue: queued when awaited.
    Waiting {
        job: Vec<u8>,
        tx: Sender<Job>,
        room: Arc<Semaphore>,
        units: u32,
        unsent: Unsent,
    },
}

/// Counts lines as dropped if they are given up before being queued (a
/// receipt dropped unawaited, or a request gone while waiting for room).
struct Unsent {
    shared: Option<Arc<Shared>>,
    lines: u64,
}

impl Unsent {
    fn sent(mut self) {
        self.shared = None;
    }
}

impl Drop for Unsent {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.count_dropped(self.lines);
        }
    }
}

impl LogReceipt {
    pub(super) fn done(outcome: LogOutcome) -> Self {
        Self(Receipt::Done(outcome))
    }

    /// What became of the lines; under `always` this waits (without
    /// blocking a thread) until they are synced.
    pub async fn outcome(self) -> LogOutcome {
        let acked = match self.0 {
            Receipt::Done(outcome) => return outcome,
            Receipt::Acked(rx) => rx,
            Receipt::Waiting {
                job,
                tx,
                room,
                units,
                unsent,
            } => {
                let Ok(permit) = room.acquire_many_owned(units).await else {
                    return LogOutcome::Dropped;
                };
                let (ack, rx) = oneshot::channel();
                let sent = tx.send(Job::Lines {
                    bytes: job,
                    ack: Some(ack),
                    _room: permit,
                });
                if sent.is_err() {
                    return LogOutcome::Dropped;
                }
                unsent.sent();
                rx
            }
        };
        match acked.await {
            Ok(true) => LogOutcome::Synced,
            _ => LogOutcome::Failed,
        }
    }
}

impl LogWriter {
    /// Starts the writer thread for `log`, with a queue of `queue_bytes`.
    pub(super) fn start(log: FeedbackLog, queue_bytes: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
            last_drop_report: AtomicU64::new(0),
            epoch: Instant::now(),
            paused: Mutex::new(false),
            resumed: Condvar::new(),
        });
        let fsync = log.fsync;
        let room_units = u32::try_from((queue_bytes / UNIT).max(1)).unwrap_or(u32::MAX);
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("feedback-log".into())
            .spawn(move || run(log, &rx, &thread_shared))?;
        Ok(Self {
            tx,
            fsync,
            room: Arc::new(Semaphore::new(room_units as usize)),
            room_units,
            shared,
        })
    }

    /// Hands `lines` (complete JSON lines) to the writer; never blocks.
    pub(super) fn submit(&self, lines: Vec<u8>) -> LogReceipt {
        // A job larger than the whole queue waits for (or needs) all of it.
        let units = u32::try_from(lines.len().div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(self.room_units);
        let Ok(permit) = Arc::clone(&self.room).try_acquire_many_owned(units) else {
            if self.fsync == LogFsync::Always {
                let unsent = Unsent {
                    shared: Some(Arc::clone(&self.shared)),
                    lines: count_lines(&lines),
                };
                return LogReceipt(Receipt::Waiting {
                    job: lines,
                    tx: self.tx.clone(),
                    room: Arc::clone(&self.room),
                    units,
                    unsent,
                });
            }
            self.shared.count_dropped(count_lines(&lines));
            return LogReceipt::done(LogOutcome::Dropped);
        };
        let (ack, receipt) = if self.fsync == LogFsync::Always {
            let (ack, rx) = oneshot::channel();
            (Some(ack), LogReceipt(Receipt::Acked(rx)))
        } else {
            (None, LogReceipt::done(LogOutcome::Queued))
        };
        let job = Job::Lines {
            bytes: lines,
            ack,
            _room: permit,
        };
        if self.tx.send(job).is_err() {
            // The writer thread is gone (it panicked): count, never block.
            self.shared.count_dropped(1);
            return LogReceipt::done(LogOutcome::Dropped);
        }
        receipt
    }

    /// Asks the writer to reopen the file before its next write (SIGHUP).
    pub(super) fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Job::Wake);
    }

    /// Waits until everything queued so far is written and synced, at most
    /// `within`; false if that did not happen in time.
    pub(super) async fn flush(&self, within: Duration) -> bool {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Job::Flush(done)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }

    /// Failed writes, syncs and reopens so far.
    pub(super) fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// Lines dropped so far because the queue was full.
    pub(super) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Makes the writer thread stop before its next write, as a stalled
    /// disk would, until the returned guard is dropped (for tests that show
    /// a stalled writer blocks no request).
    pub(super) fn pause(&self) -> WriterPause {
        *self.shared.paused.lock().unwrap_or_else(|e| e.into_inner()) = true;
        WriterPause(Arc::clone(&self.shared))
    }
}

/// Keeps the writer thread paused while alive (see [`LogWriter::pause`]).
pub struct WriterPause(Arc<Shared>);

impl Drop for WriterPause {
    fn drop(&mut self) {
        *self.0.paused.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.resumed.notify_all();
    }
}

fn count_lines(lines: &[u8]) -> u64 {
    lines.iter().filter(|&&b| b == b'\n').count().max(1) as u64
}

/// The writer thread: takes what is queued, writes it, syncs as the policy
/// says, answers the waiting requests; syncs when `interval` has one due
/// even if nothing arrives. Ends (after writing what is left) when the
/// store is dropped.
fn run(mut log: FeedbackLog, rx: &Receiver<Job>, shared: &Shared) {
    let always = log.fsync == LogFsync::Always;
    loop {
        let first = match rx.recv_timeout(LOG_INTERVAL) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                if shared.reopen.swap(false, Ordering::SeqCst) {
                    log.reopen();
                }
                log.sync_if_due();
                shared.errors.store(log.errors(), Ordering::Relaxed);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        {
            let mut paused = shared.paused.lock().unwrap_or_else(|e| e.into_inner());
            while *paused {
                paused = shared
                    .resumed
                    .wait(paused)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        if shared.reopen.swap(false, Ordering::SeqCst) {
            log.reopen();
        } else {
            log.follow_rotation();
        }
        let mut acks = Vec::new();
        let mut flushes = Vec::new();
        for job in jobs {
            match job {
                Job::Lines { bytes, ack, _room } => {
                    let written = log.write_lines(&bytes);
                    if let Some(ack) = ack {
                        acks.push((ack, written));
                    }
                }
                Job::Flush(done) => flushes.push(done),
                Job::Wake => {}
            }
        }
        if always || !flushes.is_empty() {
            log.sync_now();
        } else {
            log.sync_if_due();
        }
        let synced = !log.unsynced();
        shared.errors.store(log.errors(), Ordering::Relaxed);
        for (ack, written) in acks {
            let _ = ack.send(written && synced);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
    log.sync_now();
    shared.errors.store(log.errors(), Ordering::Relaxed);
}
