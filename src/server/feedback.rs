//! Prediction memory, label feedback, live evaluation and drift signals.
//!
//! Every prediction is remembered (id → predicted class, model, time) in
//! bounded memory: at most `capacity` entries, none older than `max_age`,
//! oldest dropped first. Feedback on a remembered prediction feeds a sliding
//! window of labelled predictions, scored with the same
//! [`ConfusionMatrix::evaluate`] as offline evaluation.
//!
//! Remembered predictions live in a ring of 16-byte [`Slot`]s that needs no
//! index: a prediction's id carries its sequence number, which names its slot
//! (see [`IdCodec`]). At the default capacity of 100,000 that is 1.6 MB, where
//! a hash index plus an eviction queue took ~10 MB.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

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

/// Bits of sequence number an id carries (enough for a million predictions a
/// second for 36,000 years).
const SEQ_BITS: u32 = 60;
/// Random bits an id carries: a guessed id that names a live slot still has
/// to match its nonce, a 1 in 2⁶² chance.
const NONCE_BITS: u32 = 62;
const NONCE_MASK: u64 = (1 << NONCE_BITS) - 1;
/// Feistel rounds of the sequence-number permutation.
const ROUNDS: usize = 4;
const HALF_BITS: u32 = SEQ_BITS / 2;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;

/// Issues and reads prediction ids.
///
/// An id is an RFC 9562 version-8 ("custom") UUID: 60 bits of sequence
/// number and 62 random bits (the nonce), around the 6 version and variant
/// bits. The sequence number finds the prediction's slot in the ring; the
/// nonce, stored in the slot, proves the id was issued. (An evicted
/// prediction's id is refused before its slot is read: its sequence number
/// is outside the remembered range.)
///
/// The sequence number goes through a keyed permutation (a 4-round Feistel
/// network over two 30-bit halves, keys drawn at start-up), so ids do not
/// show how many predictions were made, or were made between two ids, as a
/// random (v4) UUID did not. This hides a count; it is not what makes ids
/// unguessable: that is the nonce.
struct IdCodec {
    keys: [u64; ROUNDS],
}

impl IdCodec {
    fn new() -> Self {
        Self {
            keys: rand::random(),
        }
    }

    /// The Feistel round function: 30 well-mixed bits of `half` and a key.
    fn round(&self, round: usize, half: u64) -> u64 {
        splitmix64(half ^ self.keys[round]) & HALF_MASK
    }

    /// A bijection on 60-bit numbers.
    fn permute(&self, seq: u64) -> u64 {
        let (mut l, mut r) = (seq >> HALF_BITS, seq & HALF_MASK);
        for k in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(k, r));
        }
        (l << HALF_BITS) | r
    }

    /// The inverse of [`IdCodec::permute`].
    fn unpermute(&self, value: u64) -> u64 {
        let (mut l, mut r) = (value >> HALF_BITS, value & HALF_MASK);
        for k in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(k, l), l);
        }
        (l << HALF_BITS) | r
    }

    /// The id of prediction `seq` (< 2⁶⁰) with random `nonce` (< 2⁶²).
    fn encode(&self, seq: u64, nonce: u64) -> Uuid {
        let p = self.permute(seq);
        // UUID bit layout: 48 bits | version (4) | 12 bits | variant (2) | 62 bits.
        let high = ((p >> 12) << 16) | (0x8 << 12) | (p & 0xfff);
        let low = (0b10 << 62) | (nonce & NONCE_MASK);
        Uuid::from_u64_pair(high, low)
    }

    /// `(sequence number, nonce)` of an id this codec could have issued.
    fn decode(&self, id: Uuid) -> Option<(u64, u64)> {
        if id.get_version_num() != 8 || id.get_variant() != uuid::Variant::RFC4122 {
            return None;
        }
        let (high, low) = id.as_u64_pair();
        let p = ((high >> 16) << 12) | (high & 0xfff);
        Some((self.unpermute(p), low & NONCE_MASK))
    }
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn splitmix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One remembered prediction in 16 bytes: the id's nonce, and packed into
/// `stamp`: milliseconds since the store's epoch (bits 17–63, 4,000+ years),
/// whether feedback arrived (bit 16) and the predicted class (bits 0–15).
/// Its model is not stored per slot: see [`Inner::models`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    nonce: u64,
    stamp: u64,
}

impl Slot {
    const ANSWERED: u64 = 1 << 16;

    fn new(nonce: u64, at_ms: u64, predicted: u16) -> Self {
        Self {
            nonce,
            stamp: (at_ms << 17) | u64::from(predicted),
        }
    }
    fn at_ms(self) -> u64 {
        self.stamp >> 17
    }
    fn predicted(self) -> u16 {
        self.stamp as u16
    }
    fn answered(self) -> bool {
        self.stamp & Self::ANSWERED != 0
    }
    fn set_answered(&mut self) {
        self.stamp |= Self::ANSWERED;
    }
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

/// Everything behind the store's lock.
struct Inner {
    /// The ring: prediction `seq` sits at `slots[seq % capacity]` while
    /// `first <= seq < next`. Grows up to `capacity`, then wraps.
    slots: Vec<Slot>,
    /// Sequence number of the oldest remembered prediction.
    first: u64,
    /// Sequence number of the next prediction.
    next: u64,
    /// The models of the remembered predictions, as runs: `(first sequence
    /// number it predicted, model)`, oldest first. Usually one entry; a
    /// reload adds one, dropped once its last prediction is.
    models: VecDeque<(u64, Arc<ModelLabels>)>,
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

impl Inner {
    /// The model that made prediction `seq` (which must be remembered).
    fn model_of(&self, seq: u64) -> &Arc<ModelLabels> {
        let i = self.models.partition_point(|(start, _)| *start <= seq);
        &self.models[i - 1].1
    }
}

/// Predictions the store reserves room for up front (see [`FeedbackStore::new`]).
const PREALLOCATE_MAX: usize = 1 << 20;

/// The store; cheap to share behind an `Arc`.
pub struct FeedbackStore {
    capacity: usize,
    max_age: Duration,
    window: usize,
    ids: IdCodec,
    /// Slot times count milliseconds from here.
    epoch: Instant,
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
        // Settings refuse 0; a store that can remember nothing has no use.
        assert!(capacity > 0, "feedback store capacity must be > 0");
        let log = match log_path {
            Some(p) => Some(Mutex::new(FeedbackLog::open(p)?)),
            None => None,
        };
        Ok(Self {
            capacity,
            max_age,
            window,
            ids: IdCodec::new(),
            epoch: Instant::now(),
            inner: Mutex::new(Inner {
                // Reserved once for the configured capacity (up to a million
                // predictions; beyond that the ring grows on demand), so it
                // is never copied while growing. Pages of the reservation
                // cost memory only once predictions are written to them.
                slots: Vec::with_capacity(capacity.min(PREALLOCATE_MAX)),
                first: 0,
                next: 0,
                models: VecDeque::new(),
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

    /// Milliseconds from the store's epoch to `t`.
    fn millis(&self, t: Instant) -> u64 {
        t.duration_since(self.epoch).as_millis() as u64
    }

    /// Whether a prediction made at `at_ms` is past `max_age` at `now_ms`.
    fn expired(&self, at_ms: u64, now_ms: u64) -> bool {
        u128::from(now_ms.saturating_sub(at_ms)) > self.max_age.as_millis()
    }

    /// The ring index of prediction `seq`.
    fn slot_index(&self, seq: u64) -> usize {
        (seq % self.capacity as u64) as usize
    }

    /// Remembers a prediction and returns its id.
    pub fn remember(
        &self,
        model: &Arc<ModelLabels>,
        predicted: usize,
        confidence: f64,
        oov: Option<f64>,
    ) -> Uuid {
        let nonce = rand::random::<u64>() & NONCE_MASK;
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *g;
        // Read under the lock, so slot times never decrease along the ring.
        let now_ms = self.millis(Instant::now());
        // Expire by age, then make room by evicting the oldest.
        while inner.first < inner.next {
            let oldest = inner.slots[self.slot_index(inner.first)];
            let full = inner.next - inner.first >= self.capacity as u64;
            if full || self.expired(oldest.at_ms(), now_ms) {
                inner.first += 1;
            } else {
                break;
            }
        }
        // A model whose last remembered prediction is gone is let go.
        while inner.models.len() > 1 && inner.models[1].0 <= inner.first {
            inner.models.pop_front();
        }
        let seq = inner.next;
        debug_assert!(seq < 1 << SEQ_BITS);
        inner.next += 1;
        let same_model = inner
            .models
            .back()
            .is_some_and(|(_, m)| Arc::ptr_eq(m, model) || m == model);
        if !same_model {
            inner.models.push_back((seq, Arc::clone(model)));
        }
        let slot = Slot::new(nonce, now_ms, predicted as u16);
        if inner.slots.len() < self.capacity {
            // Not wrapped yet: sequence numbers and ring indices coincide.
            debug_assert_eq!(inner.slots.len() as u64, seq);
            inner.slots.push(slot);
        } else {
            let i = self.slot_index(seq);
            inner.slots[i] = slot;
        }
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
        drop(g);
        self.ids.encode(seq, nonce)
    }

    /// Records the true `label` of prediction `id`.
    pub fn submit(&self, id: &str, label: &str) -> Result<FeedbackRecord, FeedbackError> {
        // `parse_str` also takes upper case, braces, `urn:uuid:` and no hyphens.
        let uuid = Uuid::parse_str(id).map_err(|_| FeedbackError::UnknownId)?;
        let (seq, nonce) = self.ids.decode(uuid).ok_or(FeedbackError::UnknownId)?;
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *g;
        let now_ms = self.millis(Instant::now());
        if !(inner.first..inner.next).contains(&seq) {
            return Err(FeedbackError::UnknownId);
        }
        let index = self.slot_index(seq);
        let slot = inner.slots[index];
        if slot.nonce != nonce || self.expired(slot.at_ms(), now_ms) {
            return Err(FeedbackError::UnknownId);
        }
        let model = Arc::clone(inner.model_of(seq));
        let truth = model
            .classes
            .iter()
            .position(|c| c == label)
            .ok_or_else(|| FeedbackError::InvalidLabel(model.classes.join(", ")))?;
        if slot.answered() {
            return Err(FeedbackError::Duplicate);
        }
        inner.slots[index].set_answered();
        let predicted = slot.predicted();
        // Wall time now, minus the monotonic age of the prediction: ordered
        // with `received_at` even if the system clock was stepped meanwhile.
        let received_at = Utc::now();
        let predicted_at = received_at - Duration::from_millis(now_ms.saturating_sub(slot.at_ms()));
        let record = FeedbackRecord {
            // The id as issued, whatever form it came in: the log is joined on it.
            prediction_id: uuid.hyphenated().to_string(),
            label: label.to_owned(),
            predicted_label: model.classes[predicted as usize].clone(),
            model_version: model.version.clone(),
            predicted_at: predicted_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            received_at: received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
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
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (g.next - g.first) as usize
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
    use chrono::DateTime;

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
    fn ids_are_version_8_uuids_that_round_trip() {
        let codec = IdCodec::new();
        let mut rng = rand::thread_rng();
        let mut seen = std::collections::HashSet::new();
        let seqs = (0..1000u64).chain([(1 << SEQ_BITS) - 1, 1 << 40, 12_345_678_901]);
        for seq in seqs {
            let nonce = rand::Rng::gen::<u64>(&mut rng) & NONCE_MASK;
            let id = codec.encode(seq, nonce);
            assert_eq!(id.get_version_num(), 8);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(codec.decode(id), Some((seq, nonce)));
            assert!(seen.insert(codec.permute(seq)), "permutation collides");
        }
        // Another store's keys read the same id as another prediction.
        let other = IdCodec::new();
        assert_ne!(other.decode(codec.encode(7, 1)), Some((7, 1)));
        // Version 4 (or anything not issued as version 8) is never read.
        assert_eq!(codec.decode(Uuid::new_v4()), None);
    }

    #[test]
    fn ids_do_not_show_the_prediction_count() {
        let codec = IdCodec::new();
        // Consecutive sequence numbers land far apart: on average half of
        // the 60 permuted bits differ between neighbours.
        let flipped: u32 = (0..1000u64)
            .map(|s| (codec.permute(s) ^ codec.permute(s + 1)).count_ones())
            .sum();
        let mean = f64::from(flipped) / 1000.0;
        assert!((25.0..35.0).contains(&mean), "mean bits flipped {mean}");
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
    fn evicted_predictions_are_unknown_after_their_slots_are_reused() {
        let s = FeedbackStore::new(4, Duration::from_secs(60), 100, None).unwrap();
        let m = model();
        let ids: Vec<Uuid> = (0..11).map(|i| s.remember(&m, i % 2, 0.9, None)).collect();
        assert_eq!(s.remembered(), 4);
        for (i, id) in ids.iter().enumerate() {
            let r = s.submit(&id.to_string(), "ham");
            if i < 7 {
                assert_eq!(r.unwrap_err(), FeedbackError::UnknownId, "prediction {i}");
            } else {
                let r = r.unwrap();
                assert_eq!(r.predicted_label, ["ham", "spam"][i % 2], "prediction {i}");
            }
        }
        // The ring never grew past the capacity.
        assert_eq!(s.inner.lock().unwrap().slots.len(), 4);
    }

    #[test]
    fn feedback_is_judged_against_the_model_that_predicted() {
        let s = FeedbackStore::new(3, Duration::from_secs(60), 100, None).unwrap();
        let old = model();
        let new = Arc::new(ModelLabels {
            version: "v2".into(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            prior: vec![0.2, 0.3, 0.5],
        });
        let by_old = s.remember(&old, 1, 0.9, None).to_string();
        // A reload of an identical model continues the same run.
        let by_same = s.remember(&model(), 0, 0.9, None).to_string();
        let by_new = s.remember(&new, 2, 0.9, None).to_string();
        assert_eq!(s.inner.lock().unwrap().models.len(), 2);
        assert_eq!(
            s.submit(&by_old, "c").unwrap_err(),
            FeedbackError::InvalidLabel("ham, spam".into())
        );
        let r = s.submit(&by_old, "ham").unwrap();
        assert_eq!(
            (r.model_version.as_str(), r.predicted_label.as_str()),
            ("v1", "spam")
        );
        let r = s.submit(&by_new, "c").unwrap();
        assert_eq!(
            (r.model_version.as_str(), r.predicted_label.as_str()),
            ("v2", "c")
        );
        assert_eq!(s.submit(&by_same, "ham").unwrap().model_version, "v1");
        // Once its predictions are evicted, the old model is let go.
        for _ in 0..2 {
            s.remember(&new, 0, 0.9, None);
        }
        let g = s.inner.lock().unwrap();
        assert_eq!(g.models.len(), 1);
        assert!(Arc::ptr_eq(&g.models[0].1, &new));
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

    #[test]
    fn memory_is_16_bytes_per_remembered_prediction() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        let s = FeedbackStore::new(100_000, Duration::from_secs(60), 10, None).unwrap();
        let m = model();
        for _ in 0..150_000 {
            s.remember(&m, 0, 0.9, None);
        }
        let g = s.inner.lock().unwrap();
        assert_eq!(g.slots.len(), 100_000);
        assert_eq!(g.slots.capacity(), 100_000, "reserved once, never regrown");
    }

    #[test]
    fn slots_pack_time_class_and_answer() {
        let at = (1 << 47) - 1; // the largest time a slot holds: 4,400+ years
        let mut slot = Slot::new(NONCE_MASK, at, u16::MAX);
        assert_eq!(
            (slot.at_ms(), slot.predicted(), slot.answered()),
            (at, u16::MAX, false)
        );
        slot.set_answered();
        assert_eq!(
            (slot.at_ms(), slot.predicted(), slot.answered()),
            (at, u16::MAX, true)
        );
        assert_eq!(slot.nonce, NONCE_MASK);
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
