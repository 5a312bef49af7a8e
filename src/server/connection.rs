//! Per-connection bounds: a cap on open connections and a write timeout, so
//! neither many idle clients nor one that never reads its response can hold
//! the server's sockets and buffers forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, Instant, Sleep};

/// Hands out one slot per open connection, up to `server.max_connections`.
#[derive(Clone)]
pub(super) struct ConnectionSlots(Arc<Semaphore>);

impl ConnectionSlots {
    /// `max` slots.
    pub(super) fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max)))
    }

    /// A slot counted in `open`, or `None` at the cap (the caller closes
    /// the connection).
    pub(super) fn try_take(&self, open: &IntGauge) -> Option<Slot> {
        let permit = Arc::clone(&self.0).try_acquire_owned().ok()?;
        open.inc();
        Some(Slot {
            _permit: permit,
            open: open.clone(),
        })
    }
}

/// One open connection's slot; dropping it frees the slot.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Wraps a stream so that a write which makes no progress for `timeout`
/// fails with `TimedOut` (counted in `timeouts`), which ends the connection.
/// Reads are untouched: the header and request timeouts bound those.
pub(super) struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write is pending; reset whenever one makes progress.
    deadline: Option<Pin<Box<Sleep>>>,
    timeouts: IntCounter,
}

impl<S> WriteTimeout<S> {
    pub(super) fn new(inner: S, timeout: Duration, timeouts: IntCounter) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
            timeouts,
        }
    }

    /// Maps a pending write to `TimedOut` once the deadline passes.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.deadline = None;
            return result;
        }
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            // Re-armed, so a caller that retries gets another full timeout.
            deadline.as_mut().reset(Instant::now() + timeout);
            self.timeouts.inc();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not read its response",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.guard(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_times_out_and_is_counted() {
        // A pipe whose reader never reads: writes fill it, then stay pending.
        let (client, _reader) = tokio::io::duplex(64);
        let counter = IntCounter::new("t", "t").unwrap();
        let mut w = WriteTimeout::new(client, Duration::from_secs(5), counter.clone());
        let e = w.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(counter.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_cut() {
        use tokio::io::AsyncReadExt;
        let (client, mut reader) = tokio::io::duplex(64);
        let counter = IntCounter::new("t", "t").unwrap();
        let mut w = WriteTimeout::new(client, Duration::from_secs(5), counter.clone());
        let read = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0u8; 16];
            while total < 1024 {
                // Each read comes within the timeout; all of them take longer.
                tokio::time::sleep(Duration::from_secs(1)).await;
                total += reader.read(&mut buf).await.unwrap();
            }
        });
        w.write_all(&[0u8; 1024]).await.unwrap();
        read.await.unwrap();
        assert_eq!(counter.get(), 0);
    }
}
