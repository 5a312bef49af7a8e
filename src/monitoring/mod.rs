//! Monitoring a served model: every prediction is remembered for label
//! feedback, feedback feeds a live evaluation, recent predictions feed drift
//! signals. No HTTP here: the server calls [`FeedbackStore`].
//!
//! One job per module, all behind the store's one lock:
//! - `ids`: prediction ids that name a ring slot and prove they were issued;
//! - `ring`: remembered predictions, 16 bytes each, in bounded memory (at
//!   most `capacity`, none older than `max_age`, oldest dropped first);
//! - `window`: the last `window` labelled predictions, scored with the same
//!   [`ConfusionMatrix::evaluate`](crate::classifier::ConfusionMatrix::evaluate)
//!   as offline evaluation;
//! - `drift`: the last `window` predictions, labelled or not;
//! - `texts`: with `feedback.keep_text`, the texts of remembered predictions
//!   within a byte budget, so feedback lines carry the text they label;
//! - `log`: the crash-safe JSON-lines log of accepted feedback and examples;
//! - `writer`: the thread that writes it, fed by a queue bounded in bytes, so
//!   no request ever waits on the disk with a thread blocked.

mod drift;
mod ids;
mod log;
mod ring;
mod texts;
mod window;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use drift::{js_divergence, DriftSignals};
pub use window::LiveQuality;
pub use writer::{LogOutcome, LogReceipt, WriterPause};

use drift::DriftWindow;
use ids::{IdCodec, NONCE_MASK};
use log::FeedbackLog;
use writer::LogWriter;

use crate::settings::{FeedbackSettings, LogFsync};
use ring::Ring;
use texts::TextStore;
use window::LabelledWindow;

/// Why feedback was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedbackError {
    /// Never issued, expired or evicted.
    #[error("unknown or expired prediction id")]
    UnknownId,
    /// Not one of the predicting model's classes.
    #[error("label is not one of the model's classes ({0})")]
    InvalidLabel(String),
    /// Feedback was already given for this prediction.
    #[error("feedback was already recorded for this prediction")]
    Duplicate,
}

impl FeedbackError {
    /// The `result` label value for `nbserve_feedback_total`.
    pub fn result_label(&self) -> &'static str {
        match self {
            FeedbackError::UnknownId => "unknown_id",
            FeedbackError::InvalidLabel(_) => "invalid_label",
            FeedbackError::Duplicate => "duplicate",
        }
    }
}

/// What a remembered prediction needs to know about the model that made it:
/// which of the server's models it is, its version, its classes and their
/// training prior (for drift).
#[derive(Debug, PartialEq)]
pub struct ModelProfile {
    /// The server's name for the model (its repository name).
    pub model: String,
    /// The model's place among the server's models: its live windows are
    /// `slot`'s (below `models.max_count`, stable while the server runs).
    pub slot: usize,
    /// Model version.
    pub version: String,
    /// Class labels in index order.
    pub classes: Vec<String>,
    /// Training class prior (shares), for drift.
    pub prior: Vec<f64>,
}

/// Accepted feedback, as returned to the caller and appended to the log.
#[derive(Debug, Clone, Serialize)]
pub struct FeedbackRecord {
    /// The prediction.
    pub prediction_id: String,
    /// The true label given.
    pub label: String,
    /// The label the model predicted.
    pub predicted_label: String,
    /// The server's name for the model that predicted.
    pub model: String,
    /// Version of the model that predicted.
    pub model_version: String,
    /// When the prediction was made (RFC 3339).
    pub predicted_at: String,
    /// When feedback arrived (RFC 3339).
    pub received_at: String,
    /// Always `feedback` (an example sent to `POST /examples` says `example`).
    pub source: &'static str,
    /// The predicted text, with `feedback.keep_text` while it is within the
    /// budget (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A labelled text sent directly (`POST /examples`), as appended to the log.
#[derive(Debug, Clone, Serialize)]
pub struct ExampleRecord<'a> {
    /// Always `example`.
    pub source: &'static str,
    /// The text.
    pub text: &'a str,
    /// Its true label.
    pub label: &'a str,
    /// The server's name for the model whose classes validated the label.
    pub model: &'a str,
    /// That model's version.
    pub model_version: &'a str,
    /// When it arrived (RFC 3339).
    pub received_at: &'a str,
}

impl<'a> ExampleRecord<'a> {
    /// An example record (`"source": "example"`).
    pub fn new(
        text: &'a str,
        label: &'a str,
        model: &'a ModelProfile,
        received_at: &'a str,
    ) -> Self {
        Self {
            source: "example",
            text,
            label,
            model: &model.model,
            model_version: &model.version,
            received_at,
        }
    }
}

/// The current time as the log writes it (RFC 3339, milliseconds, UTC).
pub fn log_timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One model's live windows.
struct Windows {
    labelled: LabelledWindow,
    drift: DriftWindow,
}

/// Everything behind the store's lock.
struct Inner {
    ring: Ring,
    /// The live windows of each model, by [`ModelProfile::slot`] (grown
    /// when a model first predicts: at most `models.max_count`).
    windows: Vec<Windows>,
    /// Size of every window.
    window: usize,
    /// Kept texts (`feedback.keep_text`).
    texts: Option<TextStore>,
}

impl Inner {
    /// The windows of the model in `slot`, made on first use.
    fn windows(&mut self, slot: usize) -> &mut Windows {
        if self.windows.len() <= slot {
            let window = self.window;
            self.windows.resize_with(slot + 1, || Windows {
                labelled: LabelledWindow::new(window),
                drift: DriftWindow::new(window),
            });
        }
        &mut self.windows[slot]
    }
}

/// The store; cheap to share behind an `Arc`.
pub struct FeedbackStore {
    window: usize,
    /// Whether `Inner::texts` is kept (known without the lock).
    keep_text: bool,
    ids: IdCodec,
    inner: Mutex<Inner>,
    log: Option<LogWriter>,
}

impl FeedbackStore {
    /// A store remembering `capacity` predictions for `max_age`, appending
    /// feedback to `log_path` if given (synced per `interval`), keeping no
    /// texts. `window` sizes both windows: the last `window` labelled
    /// predictions are scored, and the last `window` predictions give the
    /// drift signals.
    pub fn new(
        capacity: usize,
        max_age: std::time::Duration,
        window: usize,
        log_path: Option<&Path>,
    ) -> std::io::Result<Self> {
        let log = log_path.map(|p| (p, LogFsync::Interval));
        Self::build(capacity, max_age, window, log, None, writer::QUEUE_BYTES)
    }

    /// The store the `feedback.*` settings describe.
    pub fn from_settings(f: &FeedbackSettings) -> std::io::Result<Self> {
        Self::build(
            f.capacity,
            std::time::Duration::from_secs(f.max_age_secs),
            f.window,
            f.log_path.as_deref().map(|p| (p, f.log_fsync)),
            f.keep_text.then_some(f.text_budget_bytes),
            writer::QUEUE_BYTES,
        )
    }

    fn build(
        capacity: usize,
        max_age: std::time::Duration,
        window: usize,
        log: Option<(&Path, LogFsync)>,
        text_budget: Option<usize>,
        queue_bytes: usize,
    ) -> std::io::Result<Self> {
        let log = match log {
            Some((path, fsync)) => Some(LogWriter::start(
                FeedbackLog::open(path, fsync)?,
                queue_bytes,
            )?),
            None => None,
        };
        Ok(Self {
            window,
            keep_text: text_budget.is_some(),
            ids: IdCodec::new(),
            inner: Mutex::new(Inner {
                ring: Ring::new(capacity, max_age),
                windows: Vec::new(),
                window,
                texts: text_budget.map(TextStore::new),
            }),
            log,
        })
    }

    /// Asks the log writer to reopen the log at its path (SIGHUP: after
    /// rotation by copy or rename); done before its next write.
    pub fn reopen_log(&self) {
        if let Some(log) = &self.log {
            log.reopen();
        }
    }

    /// Waits (at most `within`) until every line queued so far is written
    /// and synced; true if it was (or there is no log).
    pub async fn flush_log(&self, within: std::time::Duration) -> bool {
        match &self.log {
            Some(log) => log.flush(within).await,
            None => true,
        }
    }

    /// Failed writes, syncs and reopens of the log so far.
    pub fn log_errors(&self) -> u64 {
        self.log.as_ref().map_or(0, LogWriter::errors)
    }

    /// Log lines dropped so far because the writer's queue was full.
    pub fn log_dropped(&self) -> u64 {
        self.log.as_ref().map_or(0, LogWriter::dropped)
    }

    /// Pauses the log writer thread before its next write, as a stalled
    /// disk would, until the guard is dropped; `None` without a log. For
    /// tests that show a stalled writer blocks no request.
    pub fn pause_log_writer(&self) -> Option<WriterPause> {
        self.log.as_ref().map(LogWriter::pause)
    }

    /// Forgets the predictions past `feedback.max_age_secs` and frees their
    /// kept texts. A prediction does this too, so the server calls it on a
    /// timer: without traffic, the user text of predictions whose feedback
    /// window has closed would otherwise stay in memory indefinitely.
    pub fn forget_expired(&self) {
        let mut g = self.lock();
        g.ring.expire();
        let first = g.ring.first();
        if let Some(texts) = &mut g.texts {
            texts.forget_before(first);
        }
    }

    /// Whether prediction texts are kept (`feedback.keep_text`).
    pub fn keeps_text(&self) -> bool {
        self.keep_text
    }

    /// Bytes of prediction text kept (`feedback.keep_text`).
    pub fn kept_text_bytes(&self) -> usize {
        self.lock().texts.as_ref().map_or(0, TextStore::bytes)
    }

    /// Appends labelled examples (`POST /examples`) to the log, as one job:
    /// in order, together.
    pub fn log_examples(&self, examples: &[ExampleRecord<'_>]) -> LogReceipt {
        let Some(log) = &self.log else {
            return LogReceipt::done(LogOutcome::NoLog);
        };
        let mut lines = Vec::new();
        for example in examples {
            serde_json::to_writer(&mut lines, example).expect("serialisable");
            lines.push(b'\n');
        }
        log.submit(lines)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a prediction (without its text) and returns its id.
    pub fn remember(
        &self,
        model: &Arc<ModelProfile>,
        predicted: usize,
        confidence: f64,
        oov: Option<f64>,
    ) -> Uuid {
        self.remember_text(model, predicted, confidence, oov, "")
    }

    /// Remembers a prediction of `text` and returns its id; the text is
    /// kept (a copy) only with `feedback.keep_text`.
    pub fn remember_text(
        &self,
        model: &Arc<ModelProfile>,
        predicted: usize,
        confidence: f64,
        oov: Option<f64>,
        text: &str,
    ) -> Uuid {
        let nonce = rand::random::<u64>() & NONCE_MASK;
        // Copied before taking the lock, which other requests wait for.
        let text: Option<Box<str>> = (self.keep_text && !text.is_empty()).then(|| text.into());
        let mut g = self.lock();
        let seq = g.ring.push(model, nonce, predicted);
        let first = g.ring.first();
        if let Some(texts) = &mut g.texts {
            texts.forget_before(first);
            if let Some(text) = text {
                texts.keep(seq, text);
            }
        }
        g.windows(model.slot)
            .drift
            .push(model, predicted, confidence, oov);
        drop(g);
        self.ids.encode(seq, nonce)
    }

    /// Records the true `label` of prediction `id` (its log line queued; see
    /// [`FeedbackStore::submit_logged`] to wait for it).
    pub fn submit(&self, id: &str, label: &str) -> Result<FeedbackRecord, FeedbackError> {
        self.submit_logged(id, label).map(|(record, _)| record)
    }

    /// Records the true `label` of prediction `id`; the receipt says, once
    /// awaited, what became of its log line (under `always`: synced).
    pub fn submit_logged(
        &self,
        id: &str,
        label: &str,
    ) -> Result<(FeedbackRecord, LogReceipt), FeedbackError> {
        // `parse_str` also takes upper case, braces, `urn:uuid:` and no hyphens.
        let uuid = Uuid::parse_str(id).map_err(|_| FeedbackError::UnknownId)?;
        let (seq, nonce) = self.ids.decode(uuid).ok_or(FeedbackError::UnknownId)?;
        let mut g = self.lock();
        let answered = g.ring.answer(seq, nonce, label)?;
        g.windows(answered.model.slot).labelled.push(
            &answered.model,
            answered.truth,
            answered.predicted,
        );
        let text = g.texts.as_mut().and_then(|t| t.take(seq));
        drop(g);
        // Wall time now, minus the monotonic age of the prediction: ordered
        // with `received_at` even if the system clock was stepped meanwhile.
        let received_at = Utc::now();
        let predicted_at = received_at - answered.age;
        let model = &answered.model;
        let record = FeedbackRecord {
            // The id as issued, whatever form it came in: the log is joined on it.
            prediction_id: uuid.hyphenated().to_string(),
            label: label.to_owned(),
            predicted_label: model.classes[answered.predicted].clone(),
            model: model.model.clone(),
            model_version: model.version.clone(),
            predicted_at: predicted_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            received_at: received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            source: "feedback",
            text,
        };
        let receipt = match &self.log {
            Some(log) => {
                let mut line = serde_json::to_vec(&record).expect("serialisable");
                line.push(b'\n');
                log.submit(line)
            }
            None => LogReceipt::done(LogOutcome::NoLog),
        };
        Ok((record, receipt))
    }

    /// The live evaluation of the labelled window of the model in `slot`.
    pub fn live_quality(&self, slot: usize) -> LiveQuality {
        let g = self.lock();
        match g.windows.get(slot) {
            Some(w) => w.labelled.quality(),
            None => LiveQuality {
                samples: 0,
                evaluation: None,
            },
        }
    }

    /// Drift signals over the recent predictions of the model in `slot`.
    pub fn drift(&self, slot: usize) -> Option<DriftSignals> {
        self.lock().windows.get(slot)?.drift.signals()
    }

    /// Predictions currently remembered.
    pub fn remembered(&self) -> usize {
        self.lock().ring.len()
    }

    /// Window size setting (of both windows).
    pub fn window_size(&self) -> usize {
        self.window
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use chrono::DateTime;

    use super::ids::NONCE_BITS;
    use super::*;

    pub(crate) fn model() -> Arc<ModelProfile> {
        Arc::new(ModelProfile {
            model: "spam".into(),
            slot: 0,
            version: "v1".into(),
            classes: vec!["ham".into(), "spam".into()],
            prior: vec![0.7, 0.3],
        })
    }

    /// Runs `f` to completion on a one-thread runtime.
    pub(crate) fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Waits until the store's log has written everything queued.
    pub(crate) fn flush(s: &FeedbackStore) {
        assert!(
            block_on(s.flush_log(Duration::from_secs(60))),
            "log flushed"
        );
    }

    fn log_lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A store with a log at `dir/fb.jsonl` and kept texts within `budget`.
    fn store_keeping_texts(
        dir: &Path,
        capacity: usize,
        budget: usize,
        fsync: LogFsync,
        queue_bytes: usize,
    ) -> (FeedbackStore, std::path::PathBuf) {
        let path = dir.join("fb.jsonl");
        let s = FeedbackStore::build(
            capacity,
            Duration::from_secs(60),
            10,
            Some((&path, fsync)),
            Some(budget),
            queue_bytes,
        )
        .unwrap();
        (s, path)
    }

    #[test]
    fn feedback_lines_carry_kept_texts_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let (s, path) = store_keeping_texts(dir.path(), 100, 20, LogFsync::Interval, 1 << 20);
        let m = model();
        let a = s.remember_text(&m, 0, 0.9, None, "first text").to_string(); // 10 B
        let b = s
            .remember_text(&m, 1, 0.9, None, "2nd \"text\"\n")
            .to_string(); // 11 B: drops a
        assert_eq!(s.kept_text_bytes(), 11);
        let r = s.submit(&b, "spam").unwrap();
        assert_eq!(r.text.as_deref(), Some("2nd \"text\"\n"));
        assert_eq!(s.kept_text_bytes(), 0, "taken by its feedback");
        let r = s.submit(&a, "ham").unwrap();
        assert_eq!(
            r.text, None,
            "over the budget: dropped, feedback still accepted"
        );
        flush(&s);
        let lines = log_lines(&path);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["text"], "2nd \"text\"\n");
        assert_eq!(lines[0]["source"], "feedback");
        assert_eq!(lines[0]["label"], "spam");
        assert!(lines[1].get("text").is_none());
        assert_eq!(lines[1]["source"], "feedback");
    }

    /// Heap bytes per kept text, as glibc counts the bytes in use
    /// (`mallinfo2()`: chunk sizes, headers included) before and
    /// after 100,000 predictions with texts of each length; the texts to
    /// send are allocated before the first reading. Reads process-wide
    /// counters, so it runs alone:
    /// `cargo test --lib kept_text_memory -- --ignored --nocapture --test-threads=1`.
    #[test]
    #[ignore = "measurement: process-wide allocator counters; run alone"]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn kept_text_memory() {
        fn in_use() -> usize {
            // SAFETY: mallinfo2 only reads the allocator's statistics.
            let info = unsafe { libc::mallinfo2() };
            // Chunks in the heap, plus large blocks glibc maps on their own
            // (the texts' index, once it grows past the mmap threshold).
            info.uordblks + info.hblkhd
        }
        const N: usize = 100_000;
        let m = model();
        for len in [20, 100, 500, 2000] {
            let texts: Vec<String> = (0..N)
                .map(|i| {
                    let mut t = format!("{i:09}");
                    t.extend(std::iter::repeat_n('w', len - t.len()));
                    t
                })
                .collect();
            let s = FeedbackStore::build(
                N,
                Duration::from_secs(3600),
                10,
                None,
                Some(N * len),
                writer::QUEUE_BYTES,
            )
            .unwrap();
            let before = in_use();
            for t in &texts {
                s.remember_text(&m, 0, 0.9, None, t);
            }
            let after = in_use();
            assert_eq!(s.kept_text_bytes(), N * len, "every text kept");
            let per = (after - before) as f64 / N as f64;
            println!(
                "text length {len:>5} B: {per:.1} heap bytes per kept text, overhead {:.1} B",
                per - len as f64
            );
            assert!(per - len as f64 <= 64.0, "{per} bytes per {len}-byte text");
        }
    }

    #[test]
    fn texts_of_evicted_predictions_are_freed() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = store_keeping_texts(dir.path(), 3, 1 << 20, LogFsync::Never, 1 << 20);
        let m = model();
        let ids: Vec<String> = (0..10)
            .map(|i| {
                s.remember_text(&m, 0, 0.9, None, &format!("text {i:02}"))
                    .to_string()
            })
            .collect();
        // Only the 3 remembered predictions keep their 7-byte texts.
        assert_eq!(s.kept_text_bytes(), 21);
        assert_eq!(
            s.submit(&ids[9], "ham").unwrap().text.as_deref(),
            Some("text 09")
        );
        assert_eq!(s.kept_text_bytes(), 14);
    }

    #[test]
    fn texts_of_expired_predictions_are_freed_without_new_traffic() {
        let s = FeedbackStore::build(
            10,
            Duration::from_millis(1),
            10,
            None,
            Some(1 << 20),
            writer::QUEUE_BYTES,
        )
        .unwrap();
        s.remember_text(&model(), 0, 0.9, None, "private text");
        assert_eq!(s.kept_text_bytes(), 12);
        // Past max_age (1 ms); no prediction comes to push it out.
        std::thread::sleep(Duration::from_millis(20));
        s.forget_expired();
        assert_eq!(s.kept_text_bytes(), 0);
        assert_eq!(s.remembered(), 0);
    }

    #[test]
    fn examples_are_appended_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb.jsonl");
        let s = FeedbackStore::new(10, Duration::from_secs(60), 10, Some(&path)).unwrap();
        let at = log_timestamp();
        let m = model();
        let examples = [
            ExampleRecord::new("buy now", "spam", &m, &at),
            ExampleRecord::new("lunch?", "ham", &m, &at),
        ];
        assert_eq!(
            block_on(s.log_examples(&examples).outcome()),
            LogOutcome::Queued
        );
        flush(&s);
        let lines = log_lines(&path);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            serde_json::json!({"source": "example", "text": "buy now", "label": "spam",
                "model": "spam", "model_version": "v1", "received_at": at})
        );
        assert_eq!(lines[1]["text"], "lunch?");
        let none = FeedbackStore::new(10, Duration::from_secs(60), 10, None).unwrap();
        assert_eq!(
            block_on(none.log_examples(&examples).outcome()),
            LogOutcome::NoLog
        );
    }

    /// A stalled writer: under `interval`, feedback is accepted at once and,
    /// once the queue is full, lines are dropped and counted; nothing waits.
    #[test]
    fn a_stalled_writer_drops_and_counts_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        // Room for 2 KiB of lines: each feedback line (~250 B with its
        // text) takes one 1 KiB unit.
        let (s, path) = store_keeping_texts(dir.path(), 100, 1 << 20, LogFsync::Interval, 2048);
        let m = model();
        let pause = s.pause_log_writer().unwrap();
        let mut outcomes = Vec::new();
        for i in 0..5 {
            let id = s
                .remember_text(&m, 0, 0.9, None, &format!("text {i}"))
                .to_string();
            let (_, receipt) = s.submit_logged(&id, "ham").unwrap();
            outcomes.push(block_on(receipt.outcome()));
        }
        assert_eq!(
            outcomes,
            [
                LogOutcome::Queued,
                LogOutcome::Queued,
                LogOutcome::Dropped,
                LogOutcome::Dropped,
                LogOutcome::Dropped
            ]
        );
        assert_eq!(s.log_dropped(), 3);
        assert_eq!(s.live_quality(0).samples, 5, "all feedback counted");
        drop(pause);
        flush(&s);
        let lines = log_lines(&path);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0]["text"].as_str(), lines[1]["text"].as_str()),
            (Some("text 0"), Some("text 1"))
        );
        // Room again once written.
        let id = s.remember(&m, 0, 0.9, None).to_string();
        let (_, receipt) = s.submit_logged(&id, "ham").unwrap();
        assert_eq!(block_on(receipt.outcome()), LogOutcome::Queued);
    }

    /// Under `always` a full queue makes the request wait for room (never
    /// dropped while it waits); lines given up before they were queued (the
    /// request went away) are counted as dropped.
    #[test]
    fn always_waits_for_room_and_counts_lines_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let (s, path) = store_keeping_texts(dir.path(), 100, 1 << 20, LogFsync::Always, 1024);
        let m = model();
        let pause = s.pause_log_writer().unwrap();
        let ids: Vec<String> = (0..3)
            .map(|i| {
                s.remember_text(&m, 0, 0.9, None, &format!("t{i}"))
                    .to_string()
            })
            .collect();
        let (_, first) = s.submit_logged(&ids[0], "ham").unwrap(); // takes the room
        let (_, second) = s.submit_logged(&ids[1], "ham").unwrap(); // waits for room
        let (_, third) = s.submit_logged(&ids[2], "ham").unwrap();
        drop(third); // its request went away before there was room
        assert_eq!(s.log_dropped(), 1);
        drop(pause);
        let outcomes = block_on(async { (first.outcome().await, second.outcome().await) });
        assert_eq!(outcomes, (LogOutcome::Synced, LogOutcome::Synced));
        assert_eq!(s.log_dropped(), 1);
        let texts: Vec<String> = log_lines(&path)
            .iter()
            .map(|l| l["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(texts, ["t0", "t1"]);
    }

    /// Under `always`, a receipt completes only once its line is synced: not
    /// while the writer is stalled, and the line is on disk when it does.
    #[test]
    fn always_acknowledges_only_synced_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (s, path) = store_keeping_texts(dir.path(), 100, 1 << 20, LogFsync::Always, 1 << 20);
        let s = Arc::new(s);
        let m = model();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let pause = s.pause_log_writer().unwrap();
        let id = s.remember_text(&m, 1, 0.9, None, "kept").to_string();
        let (_, receipt) = s.submit_logged(&id, "spam").unwrap();
        let waiting = rt.spawn(receipt.outcome());
        rt.block_on(async {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        });
        // The runtime's one thread is free: other work goes on meanwhile.
        let other = s.remember(&m, 0, 0.9, None).to_string();
        assert!(s.submit(&other, "ham").is_ok());
        assert!(
            !waiting.is_finished(),
            "acknowledged while the writer is stalled"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        drop(pause);
        assert_eq!(rt.block_on(waiting).unwrap(), LogOutcome::Synced);
        let lines = log_lines(&path);
        assert_eq!(lines[0]["text"], "kept");
        assert_eq!(lines[0]["prediction_id"], id.as_str());
    }

    #[test]
    fn feedback_lifecycle_and_errors() {
        let s = FeedbackStore::new(10, Duration::from_secs(60), 100, None).unwrap();
        let m = model();
        let id = s.remember(&m, 1, 0.9, Some(0.1)).to_string();
        assert_eq!(
            s.submit(&id, "nope").unwrap_err(),
            FeedbackError::InvalidLabel("ham, spam".into())
        );
        let r = s.submit(&id, "ham").unwrap();
        assert_eq!(r.predicted_label, "spam");
        assert_eq!(s.submit(&id, "ham").unwrap_err(), FeedbackError::Duplicate);
        assert_eq!(
            s.submit("not-a-uuid", "ham").unwrap_err(),
            FeedbackError::UnknownId
        );
        assert_eq!(
            s.submit(&uuid::Uuid::new_v4().to_string(), "ham")
                .unwrap_err(),
            FeedbackError::UnknownId
        );
        let q = s.live_quality(0);
        assert_eq!(q.samples, 1);
        assert_eq!(q.evaluation.unwrap().accuracy, 0.0);
    }

    #[test]
    fn records_carry_the_id_as_issued() {
        let s = FeedbackStore::new(10, Duration::from_secs(60), 10, None).unwrap();
        let m = model();
        let id = s.remember(&m, 0, 0.9, None);
        let issued = id.to_string();
        let upper = format!("urn:uuid:{}", issued.to_uppercase());
        let r = s.submit(&upper, "ham").unwrap();
        assert_eq!(r.prediction_id, issued);
        let simple = id.simple().to_string();
        assert_eq!(
            s.submit(&simple, "ham").unwrap_err(),
            FeedbackError::Duplicate
        );
    }

    #[test]
    fn expired_predictions_are_unknown() {
        let s = FeedbackStore::new(10, Duration::from_millis(0), 100, None).unwrap();
        let id = s.remember(&model(), 0, 0.9, None).to_string();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.submit(&id, "ham").unwrap_err(), FeedbackError::UnknownId);
    }

    #[test]
    fn a_forged_or_altered_id_is_unknown() {
        let s = FeedbackStore::new(10, Duration::from_secs(60), 10, None).unwrap();
        let id = s.remember(&model(), 0, 0.9, None);
        let (high, low) = id.as_u64_pair();
        // Every bit of the nonce is checked.
        for bit in 0..NONCE_BITS {
            let forged = Uuid::from_u64_pair(high, low ^ (1 << bit)).to_string();
            assert_eq!(
                s.submit(&forged, "ham").unwrap_err(),
                FeedbackError::UnknownId
            );
        }
        // A neighbouring sequence number that was never issued.
        let (seq, nonce) = s.ids.decode(id).unwrap();
        let next = s.ids.encode(seq + 1, nonce).to_string();
        assert_eq!(
            s.submit(&next, "ham").unwrap_err(),
            FeedbackError::UnknownId
        );
        assert!(s.submit(&id.to_string(), "ham").is_ok());
    }

    #[test]
    fn records_carry_the_prediction_time() {
        let s = FeedbackStore::new(10, Duration::from_secs(60), 10, None).unwrap();
        let before = Utc::now();
        let id = s.remember(&model(), 0, 0.9, None).to_string();
        let after = Utc::now();
        std::thread::sleep(Duration::from_millis(20));
        let submit_started = Utc::now();
        let r = s.submit(&id, "ham").unwrap();
        let submit_ended = Utc::now();
        let at = DateTime::parse_from_rfc3339(&r.predicted_at).unwrap();
        let received = DateTime::parse_from_rfc3339(&r.received_at).unwrap();
        // Bounds from clock readings only, none on how fast this machine is:
        // the prediction time is the feedback time minus the monotonic age of
        // the prediction, so it is no earlier than `before` and no later than
        // `after` plus however long `submit` took (the age is read inside
        // it); milliseconds as written to the log, so 2 ms of rounding.
        let ms = chrono::Duration::milliseconds(1);
        let slack = submit_ended - submit_started + ms * 2;
        assert!(
            at >= before - ms * 2 && at <= after + slack,
            "{at} not within {before}..{after} + {slack}"
        );
        assert!(received >= submit_started - ms && received <= submit_ended + ms);
        assert!(received - at >= ms * 19, "{at} then {received}");
    }
}
