//! Prediction memory, label feedback, live evaluation and drift signals.
//!
//! Every prediction is remembered (id → predicted class, model version, time)
//! in bounded memory: at most `capacity` entries, none older than `max_age`,
//! oldest dropped first. Feedback on a remembered prediction feeds a sliding
//! window of labelled predictions, scored with the same
//! [`ConfusionMatrix::evaluate`] as offline evaluation.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rustc_hash::FxBuildHasher;
use serde::Serialize;

use crate::classifier::{ConfusionMatrix, Evaluation};

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

/// What a remembered prediction needs to know about its model.
#[derive(Debug, PartialEq)]
pub struct ModelLabels {
    /// Model version.
    pub version: String,
    /// Class labels in index order.
    pub classes: Vec<String>,
    /// Training class prior (shares), for drift.
    pub prior: Vec<f64>,
}

struct Remembered {
    /// The prediction id as two halves (`u128` would force 16-byte alignment
    /// and pad every entry).
    id: [u64; 2],
    predicted: u16,
    model: Arc<ModelLabels>,
    at: Instant,
    at_wall: DateTime<Utc>,
    answered: bool,
}

fn id_halves(id: uuid::Uuid) -> [u64; 2] {
    let v = id.as_u128();
    [(v >> 64) as u64, v as u64]
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
    /// Version of the model that predicted.
    pub model_version: String,
    /// When the prediction was made (RFC 3339).
    pub predicted_at: String,
    /// When feedback arrived (RFC 3339).
    pub received_at: String,
}

/// Live figures over the feedback window.
#[derive(Debug, Clone, Serialize)]
pub struct LiveQuality {
    /// Labelled predictions in the window.
    pub samples: u64,
    /// The evaluation of the window (`None` while empty).
    pub evaluation: Option<Evaluation>,
}

/// Label-free drift signals over recent predictions.
#[derive(Debug, Clone, Serialize)]
pub struct DriftSignals {
    /// Predictions in the recent window.
    pub recent_predictions: u64,
    /// Share of each label among them.
    pub predicted_label_share: Vec<(String, f64)>,
    /// Jensen–Shannon divergence (base 2, in [0, 1]) vs. the training prior.
    pub label_js_divergence: f64,
    /// Mean probability of the predicted class.
    pub mean_confidence: f64,
    /// Mean out-of-vocabulary share (documents with tokens only).
    pub mean_oov_ratio: f64,
}

struct Recent {
    label: u16,
    confidence: f64,
    oov: Option<f64>,
}

/// Remembered predictions live in `order`, oldest first, and are found
/// through `by_id`: high half of the id → sequence number, where entry `seq`
/// sits at `order[seq - first_seq]`. Compared with a map from the full id to
/// the entry, the index holds 16-byte pairs instead of 64-byte entries, which
/// matters because a hash map that keeps deleting (every prediction evicts
/// one at capacity) fills with tombstones and doubles its table: at the
/// default 100,000 predictions that was ~30 MB of peak RSS, most of the server's.
struct Inner {
    by_id: HashMap<u64, u64, FxBuildHasher>,
    order: VecDeque<Remembered>,
    /// Sequence number of `order[0]`.
    first_seq: u64,
    window: VecDeque<(u16, u16)>,
    window_model: Option<Arc<ModelLabels>>,
    matrix: ConfusionMatrix,
    recent: VecDeque<Recent>,
    recent_model: Option<Arc<ModelLabels>>,
    label_counts: Vec<u64>,
    confidence_sum: f64,
    oov_sum: f64,
    oov_n: u64,
}

/// Predictions the store reserves room for up front (see [`FeedbackStore::new`]).
const PREALLOCATE_MAX: usize = 1 << 20;

/// The store; cheap to share behind an `Arc`.
pub struct FeedbackStore {
    capacity: usize,
    max_age: Duration,
    window: usize,
    inner: Mutex<Inner>,
    log: Option<Mutex<FeedbackLog>>,
}

/// The JSON-lines feedback log: complete lines only, except that a crash may
/// cut the very last one.
struct FeedbackLog<F = File> {
    file: F,
    /// Bytes up to the end of the last complete line.
    len: u64,
}

/// What [`FeedbackLog`] needs of its file (a seam for failing-disk tests).
trait LogFile: Write {
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
    fn open(path: &Path) -> std::io::Result<Self> {
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
    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
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

impl FeedbackStore {
    /// A store remembering `capacity` predictions for `max_age`, scoring the
    /// last `window` labelled ones, appending feedback to `log_path` if given.
    pub fn new(
        capacity: usize,
        max_age: Duration,
        window: usize,
        log_path: Option<&Path>,
    ) -> std::io::Result<Self> {
        let log = match log_path {
            Some(p) => Some(Mutex::new(FeedbackLog::open(p)?)),
            None => None,
        };
        Ok(Self {
            capacity,
            max_age,
            window,
            inner: Mutex::new(Inner {
                // Sized once for the configured capacity (up to a million
                // predictions; beyond that they grow on demand): growing by
                // doubling would briefly hold the old and new tables at once.
                // The index gets twice the room, so deletions (tombstones)
                // are cleaned by rehashing in place rather than by doubling.
                // Untouched pages of these allocations cost no memory.
                by_id: HashMap::with_capacity_and_hasher(
                    2 * capacity.min(PREALLOCATE_MAX),
                    FxBuildHasher,
                ),
                order: VecDeque::with_capacity(capacity.min(PREALLOCATE_MAX)),
                first_seq: 0,
                window: VecDeque::new(),
                window_model: None,
                matrix: ConfusionMatrix::new(0),
                recent: VecDeque::new(),
                recent_model: None,
                label_counts: Vec::new(),
                confidence_sum: 0.0,
                oov_sum: 0.0,
                oov_n: 0,
            }),
            log,
        })
    }

    /// Remembers a prediction and returns its id.
    pub fn remember(
        &self,
        model: &Arc<ModelLabels>,
        predicted: usize,
        confidence: f64,
        oov: Option<f64>,
    ) -> uuid::Uuid {
        let id = uuid::Uuid::new_v4();
        let now = Instant::now();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *g;
        // Expire by age, then make room by evicting the oldest.
        while let Some(old) = inner.order.front() {
            if now.duration_since(old.at) > self.max_age || inner.order.len() >= self.capacity {
                let [hi, _] = old.id;
                // Another live id may share the high half (~n²/2⁶⁵ odds) and
                // have replaced this one in the index: leave that one alone.
                if inner.by_id.get(&hi) == Some(&inner.first_seq) {
                    inner.by_id.remove(&hi);
                }
                inner.order.pop_front();
                inner.first_seq += 1;
            } else {
                break;
            }
        }
        let halves = id_halves(id);
        let seq = inner.first_seq + inner.order.len() as u64;
        inner.by_id.insert(halves[0], seq);
        inner.order.push_back(Remembered {
            id: halves,
            predicted: predicted as u16,
            model: Arc::clone(model),
            at: now,
            at_wall: Utc::now(),
            answered: false,
        });
        // Drift window over recent predictions.
        if inner.recent_model.as_ref() != Some(model) {
            inner.recent.clear();
            inner.label_counts = vec![0; model.classes.len()];
            inner.confidence_sum = 0.0;
            inner.oov_sum = 0.0;
            inner.oov_n = 0;
            inner.recent_model = Some(Arc::clone(model));
        }
        if inner.recent.len() >= self.window {
            if let Some(old) = inner.recent.pop_front() {
                inner.label_counts[old.label as usize] -= 1;
                inner.confidence_sum -= old.confidence;
                if let Some(o) = old.oov {
                    inner.oov_sum -= o;
                    inner.oov_n -= 1;
                }
            }
        }
        inner.label_counts[predicted] += 1;
        inner.confidence_sum += confidence;
        if let Some(o) = oov {
            inner.oov_sum += o;
            inner.oov_n += 1;
        }
        inner.recent.push_back(Recent {
            label: predicted as u16,
            confidence,
            oov,
        });
        id
    }

    /// Records the true `label` of prediction `id`.
    pub fn submit(&self, id: &str, label: &str) -> Result<FeedbackRecord, FeedbackError> {
        // `parse_str` also takes upper case, braces, `urn:uuid:` and no hyphens.
        let uuid = uuid::Uuid::parse_str(id).map_err(|_| FeedbackError::UnknownId)?;
        let key = id_halves(uuid);
        let now = Instant::now();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *g;
        let seq = *inner.by_id.get(&key[0]).ok_or(FeedbackError::UnknownId)?;
        let entry = seq
            .checked_sub(inner.first_seq)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| inner.order.get_mut(i))
            .filter(|e| e.id == key)
            .ok_or(FeedbackError::UnknownId)?;
        if now.duration_since(entry.at) > self.max_age {
            return Err(FeedbackError::UnknownId);
        }
        let truth = entry
            .model
            .classes
            .iter()
            .position(|c| c == label)
            .ok_or_else(|| FeedbackError::InvalidLabel(entry.model.classes.join(", ")))?;
        if entry.answered {
            return Err(FeedbackError::Duplicate);
        }
        entry.answered = true;
        let predicted = entry.predicted;
        let model = Arc::clone(&entry.model);
        let record = FeedbackRecord {
            // The id as issued, whatever form it came in: the log is joined on it.
            prediction_id: uuid.hyphenated().to_string(),
            label: label.to_owned(),
            predicted_label: model.classes[predicted as usize].clone(),
            model_version: model.version.clone(),
            predicted_at: entry.at_wall.to_rfc3339_opts(SecondsFormat::Millis, true),
            received_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        // A reload that changes the class list starts a new window.
        if inner.window_model.as_ref().map(|m| &m.classes) != Some(&model.classes) {
            inner.window.clear();
            inner.matrix = ConfusionMatrix::new(model.classes.len());
            inner.window_model = Some(Arc::clone(&model));
        }
        if inner.window.len() >= self.window {
            if let Some((t, p)) = inner.window.pop_front() {
                inner.matrix.remove(t as usize, p as usize);
            }
        }
        inner.window.push_back((truth as u16, predicted));
        let _ = inner.matrix.add(truth, predicted as usize);
        drop(g);
        if let Some(log) = &self.log {
            self.append(log, &record);
        }
        Ok(record)
    }

    /// One `write` per line on an append-only file: a crash can only cut the
    /// line being written, never an earlier one.
    fn append(&self, log: &Mutex<FeedbackLog>, record: &FeedbackRecord) {
        let mut line = serde_json::to_vec(record).expect("serialisable");
        line.push(b'\n');
        let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.append(&line) {
            tracing::error!(error = %e, "cannot append to the feedback log");
        }
    }

    /// The live evaluation of the window.
    pub fn live_quality(&self) -> LiveQuality {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let samples = g.matrix.total();
        let evaluation = g
            .window_model
            .as_ref()
            .and_then(|m| g.matrix.evaluate(&m.classes).ok());
        LiveQuality {
            samples,
            evaluation,
        }
    }

    /// Drift signals over recent predictions.
    pub fn drift(&self) -> Option<DriftSignals> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let model = g.recent_model.as_ref()?;
        let n = g.recent.len() as u64;
        if n == 0 {
            return None;
        }
        let shares: Vec<f64> = g
            .label_counts
            .iter()
            .map(|&c| c as f64 / n as f64)
            .collect();
        Some(DriftSignals {
            recent_predictions: n,
            label_js_divergence: js_divergence(&shares, &model.prior),
            predicted_label_share: model.classes.iter().cloned().zip(shares).collect(),
            mean_confidence: g.confidence_sum / n as f64,
            mean_oov_ratio: if g.oov_n == 0 {
                0.0
            } else {
                g.oov_sum / g.oov_n as f64
            },
        })
    }

    /// Predictions currently remembered.
    pub fn remembered(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .order
            .len()
    }

    /// Window size setting.
    pub fn window_size(&self) -> usize {
        self.window
    }
}

/// Jensen–Shannon divergence in bits (0 = same distribution, 1 = disjoint).
pub fn js_divergence(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(&x, _)| x > 0.0)
            .map(|(&x, &y)| x * (x / y).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| 0.5 * (a + b)).collect();
    (0.5 * kl(p, &m) + 0.5 * kl(q, &m)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Arc<ModelLabels> {
        Arc::new(ModelLabels {
            version: "v1".into(),
            classes: vec!["ham".into(), "spam".into()],
            prior: vec![0.7, 0.3],
        })
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
        let q = s.live_quality();
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
    fn capacity_evicts_oldest_first() {
        let s = FeedbackStore::new(3, Duration::from_secs(60), 100, None).unwrap();
        let m = model();
        let ids: Vec<String> = (0..5)
            .map(|_| s.remember(&m, 0, 0.9, None).to_string())
            .collect();
        assert_eq!(s.remembered(), 3);
        assert_eq!(
            s.submit(&ids[0], "ham").unwrap_err(),
            FeedbackError::UnknownId
        );
        assert_eq!(
            s.submit(&ids[1], "ham").unwrap_err(),
            FeedbackError::UnknownId
        );
        assert!(s.submit(&ids[4], "ham").is_ok());
    }

    #[test]
    fn expired_predictions_are_unknown() {
        let s = FeedbackStore::new(10, Duration::from_millis(0), 100, None).unwrap();
        let id = s.remember(&model(), 0, 0.9, None).to_string();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.submit(&id, "ham").unwrap_err(), FeedbackError::UnknownId);
    }

    #[test]
    fn window_slides() {
        let s = FeedbackStore::new(100, Duration::from_secs(60), 2, None).unwrap();
        let m = model();
        for truth in ["spam", "ham", "ham"] {
            let id = s.remember(&m, 0, 0.9, None).to_string();
            s.submit(&id, truth).unwrap();
        }
        let q = s.live_quality();
        assert_eq!(q.samples, 2);
        assert_eq!(q.evaluation.unwrap().accuracy, 1.0);
    }

    #[test]
    fn drift_is_zero_at_prior_and_positive_away_from_it() {
        assert!(js_divergence(&[0.7, 0.3], &[0.7, 0.3]).abs() < 1e-12);
        assert!((js_divergence(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        let s = FeedbackStore::new(100, Duration::from_secs(60), 10, None).unwrap();
        let m = model();
        for _ in 0..10 {
            s.remember(&m, 1, 0.8, Some(0.5));
        }
        let d = s.drift().unwrap();
        assert!(d.label_js_divergence > 0.1);
        assert!((d.mean_confidence - 0.8).abs() < 1e-12);
        assert!((d.mean_oov_ratio - 0.5).abs() < 1e-12);
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
