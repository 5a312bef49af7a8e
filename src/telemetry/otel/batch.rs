//! The bounded batch span processor.
//!
//! The SDK's own batch processor drops spans when its queue is full but only
//! says how many in a log line at shutdown. This one is the same design (a
//! bounded queue, one export thread) with every lost span counted where
//! `/metrics` can read it: a request's thread only ever does a `try_send`,
//! so a collector that is down or slow costs spans, never request time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;

use super::config::BatchConfig;

/// What happened to the spans that ended, since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanCounts {
    /// Accepted by the collector.
    pub exported: u64,
    /// Dropped at once because the queue was full.
    pub dropped_queue_full: u64,
    /// Lost in an export the collector refused or that failed (down, slow).
    pub dropped_export_failed: u64,
}

static EXPORTED: AtomicU64 = AtomicU64::new(0);
static DROPPED_QUEUE_FULL: AtomicU64 = AtomicU64::new(0);
static DROPPED_EXPORT_FAILED: AtomicU64 = AtomicU64::new(0);

/// The process's span counts (all zero while tracing is off).
pub fn span_counts() -> SpanCounts {
    SpanCounts {
        exported: EXPORTED.load(Ordering::Relaxed),
        dropped_queue_full: DROPPED_QUEUE_FULL.load(Ordering::Relaxed),
        dropped_export_failed: DROPPED_EXPORT_FAILED.load(Ordering::Relaxed),
    }
}

enum Message {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(SyncSender<()>),
    /// Export what is queued, shut the exporter down and stop.
    Shutdown(SyncSender<()>),
}

/// A [`SpanProcessor`] with a bounded queue and a dedicated export thread.
pub struct BoundedBatch {
    queue: SyncSender<Message>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for BoundedBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoundedBatch")
    }
}

impl BoundedBatch {
    /// Starts the export thread for `exporter`.
    pub fn new<E: SpanExporter + 'static>(
        exporter: E,
        config: BatchConfig,
        resource: &Resource,
    ) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::sync_channel(config.max_queue_size);
        let mut exporter = exporter;
        exporter.set_resource(resource);
        let worker = std::thread::Builder::new()
            .name("otel-export".into())
            .spawn(move || export_loop(exporter, receiver, config))?;
        Ok(Self {
            queue,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Sends a control message and waits at most `timeout` for its answer.
    fn control(&self, make: fn(SyncSender<()>) -> Message, timeout: Duration) -> OTelSdkResult {
        let (tx, rx) = mpsc::sync_channel(1);
        let deadline = Instant::now() + timeout;
        let mut message = make(tx);
        // The queue may be full: retry until there is room or time is up.
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return Err(OTelSdkError::AlreadyShutdown),
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => return Err(OTelSdkError::Timeout(timeout)),
            }
        }
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for BoundedBatch {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queue.try_send(Message::Span(Box::new(span))).is_err() {
            DROPPED_QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.control(Message::Flush, Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.control(Message::Shutdown, timeout);
        if result.is_ok() {
            if let Some(worker) = self.worker.lock().ok().and_then(|mut w| w.take()) {
                let _ = worker.join();
            }
        }
        result
    }
}

/// The export thread: batches of up to `max_export_batch_size`, sent when
/// full or `schedule_delay` after the first span of the batch arrived.
fn export_loop<E: SpanExporter>(mut exporter: E, queue: Receiver<Message>, config: BatchConfig) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(config.max_export_batch_size);
    let mut due: Option<Instant> = None;
    loop {
        let message = match due {
            None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(t) => queue.recv_timeout(t.saturating_duration_since(Instant::now())),
        };
        match message {
            Ok(Message::Span(span)) => {
                batch.push(*span);
                due.get_or_insert_with(|| Instant::now() + config.schedule_delay);
                if batch.len() >= config.max_export_batch_size {
                    export(&exporter, &mut batch);
                    due = None;
                }
            }
            Ok(Message::Flush(done)) => {
                let stop = flush(&exporter, &queue, &mut batch, config, done);
                due = None;
                if stop {
                    let _ = exporter.shutdown();
                    return;
                }
            }
            Ok(Message::Shutdown(done)) => {
                flush(&exporter, &queue, &mut batch, config, done);
                let _ = exporter.shutdown();
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                export(&exporter, &mut batch);
                due = None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                export_all(&exporter, &mut batch, config.max_export_batch_size);
                return;
            }
        }
    }
}

/// Exports the batch and every span already queued, then answers `done`
/// and any control message found in the queue. True when one of them was a
/// shutdown (the exporter is then shut down here).
fn flush<E: SpanExporter>(
    exporter: &E,
    queue: &Receiver<Message>,
    batch: &mut Vec<SpanData>,
    config: BatchConfig,
    done: SyncSender<()>,
) -> bool {
    let mut answers = vec![done];
    let mut stop = false;
    while let Ok(message) = queue.try_recv() {
        match message {
            Message::Span(span) => batch.push(*span),
            Message::Flush(done) => answers.push(done),
            Message::Shutdown(done) => {
                answers.push(done);
                stop = true;
            }
        }
    }
    export_all(exporter, batch, config.max_export_batch_size);
    for done in answers {
        let _ = done.send(());
    }
    stop
}

fn export_all<E: SpanExporter>(exporter: &E, batch: &mut Vec<SpanData>, size: usize) {
    while !batch.is_empty() {
        let rest = batch.split_off(batch.len().min(size));
        export(exporter, batch);
        *batch = rest;
    }
}

/// Sends `batch` (emptied) and counts the outcome. The exporter's own
/// timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`) bounds the wait; the blocking HTTP
/// client makes the future ready when polled once it has the answer.
fn export<E: SpanExporter>(exporter: &E, batch: &mut Vec<SpanData>) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::take(batch);
    let n = spans.len() as u64;
    match futures_executor::block_on(exporter.export(spans)) {
        Ok(()) => EXPORTED.fetch_add(n, Ordering::Relaxed),
        Err(_) => DROPPED_EXPORT_FAILED.fetch_add(n, Ordering::Relaxed),
    };
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::Receiver;
    use std::sync::Arc;

    use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    /// An exporter that holds each export until the test lets it go, then
    /// fails or succeeds as told.
    #[derive(Debug)]
    struct Gate {
        release: Mutex<Receiver<bool>>,
        seen: Arc<AtomicU64>,
    }

    impl SpanExporter for Gate {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.seen.fetch_add(batch.len() as u64, Ordering::SeqCst);
            match self.release.lock().unwrap().recv() {
                Ok(true) => Ok(()),
                _ => Err(OTelSdkError::InternalFailure("collector down".into())),
            }
        }
    }

    #[test]
    fn a_stalled_exporter_costs_counted_spans_never_a_blocked_caller() {
        let (release, gate) = mpsc::channel();
        let seen = Arc::new(AtomicU64::new(0));
        let exporter = Gate {
            release: Mutex::new(gate),
            seen: seen.clone(),
        };
        let config = BatchConfig {
            max_queue_size: 4,
            max_export_batch_size: 1,
            schedule_delay: Duration::from_millis(1),
        };
        let processor = BoundedBatch::new(exporter, config, &Resource::builder_empty().build())
            .expect("thread");
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("test");
        let before = span_counts();
        // The first span is taken by the exporter, which then stalls: the
        // queue holds 4 more, the other 15 are dropped at once.
        tracer.start("first").end();
        while seen.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..19 {
            tracer.start("more").end();
        }
        let stalled = span_counts();
        assert_eq!(stalled.dropped_queue_full - before.dropped_queue_full, 15);
        // The collector fails the stalled export, then accepts the rest.
        release.send(false).unwrap();
        for _ in 0..4 {
            release.send(true).unwrap();
        }
        provider.shutdown().unwrap();
        let after = span_counts();
        assert_eq!(
            after.dropped_export_failed - before.dropped_export_failed,
            1
        );
        assert_eq!(after.exported - before.exported, 4);
        assert_eq!(seen.load(Ordering::SeqCst), 5);
    }
}
