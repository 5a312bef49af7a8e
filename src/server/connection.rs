//! Per-connection bounds: a cap on open connections, a write timeout and a
//! bounded close, so neither many idle clients nor one that never reads its
//! response can hold the server's sockets and buffers forever, and a client
//! refused before its body was read still hears the answer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
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
    /// A write timed out: the client does not read, so what is still queued
    /// for it is dropped at close (see [`close`]).
    timed_out: bool,
    /// Some bytes were written: an answer the close must not destroy.
    wrote: bool,
}

impl<S> WriteTimeout<S> {
    pub(super) fn new(inner: S, timeout: Duration, timeouts: IntCounter) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
            timeouts,
            timed_out: false,
            wrote: false,
        }
    }

    /// Whether a write timed out (the client stopped reading).
    pub(super) fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Whether any bytes were written (an answer was sent, at least partly).
    pub(super) fn wrote(&self) -> bool {
        self.wrote
    }

    /// The wrapped stream.
    pub(super) fn into_inner(self) -> S {
        self.inner
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
            self.timed_out = true;
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
        self.wrote |= matches!(result, Poll::Ready(Ok(n)) if n > 0);
        self.guard(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote |= matches!(result, Poll::Ready(Ok(n)) if n > 0);
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

/// How long and how much a closing connection may linger: see [`close`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Linger {
    /// Reading stops once the client has sent nothing for this long.
    pub quiet: Duration,
    /// Reading stops after this long in all.
    pub max_time: Duration,
    /// Reading stops after this many bytes were discarded.
    pub max_bytes: usize,
    /// What is still queued for the client is dropped (a reset) once the
    /// queue has not moved for this long.
    pub write_timeout: Duration,
}

/// How [`close`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Closed {
    /// Everything queued left for the client; the socket closed normally.
    Clean,
    /// The client did not take what was queued for it: dropped with a reset.
    Aborted,
}

/// How often a lingering close looks at the send queue.
const LINGER_TICK: Duration = Duration::from_millis(100);

/// Closes a connection hyper is done with, so that the client hears the
/// answer and the socket does not outlive the bounds.
///
/// A plain close is not enough either way:
/// - a socket closed with unread bytes (the rest of a request body the
///   server refused without reading: 503, 413, 401, 408) makes the kernel
///   answer with a reset, which can destroy the answer before the client
///   reads it. So the server first half-closes (the answer is followed by
///   its end of stream), then reads and discards what the client still
///   sends until it closes too, falls silent for `quiet`, or `max_time` /
///   `max_bytes` are reached (the caller skips this when nothing was
///   written: no answer to protect);
/// - a socket closed while the client is not reading keeps its queued bytes
///   and its end of stream in the kernel, retried for minutes while the
///   client still sees an open connection. So a send queue that does not
///   move for `write_timeout` is dropped with a reset (`SO_LINGER` 0), and a
///   stream whose write already timed out is reset at once (`abort`).
///
/// A slow reader that keeps taking bytes is given the time it takes.
pub(super) async fn close(mut stream: TcpStream, linger: Linger, abort: bool) -> Closed {
    if abort {
        return reset(stream);
    }
    // After hyper's own shutdown this fails harmlessly.
    let _ = stream.shutdown().await;
    let started = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let (mut reading, mut discarded, mut heard) = (true, 0usize, started);
    let (mut queued, mut moved) = (unsent_bytes(&stream), started);
    loop {
        if reading {
            match tokio::time::timeout(LINGER_TICK, stream.read(&mut buf)).await {
                // End of stream (the client closed) or an error (reset).
                Ok(Ok(0)) | Ok(Err(_)) => reading = false,
                Ok(Ok(n)) => {
                    discarded += n;
                    heard = Instant::now();
                }
                Err(_) => {}
            }
            reading &= discarded < linger.max_bytes
                && heard.elapsed() < linger.quiet
                && started.elapsed() < linger.max_time;
        } else if queued > 0 {
            sleep(LINGER_TICK).await;
        }
        let now = unsent_bytes(&stream);
        if now < queued {
            moved = Instant::now();
        }
        queued = now;
        if queued == 0 && !reading {
            return Closed::Clean;
        }
        if queued > 0 && moved.elapsed() >= linger.write_timeout {
            return reset(stream);
        }
    }
}

/// Closes with a reset, dropping whatever is still queued for the client.
fn reset(stream: TcpStream) -> Closed {
    let _ = stream.set_zero_linger();
    Closed::Aborted
}

/// Bytes the kernel still holds for the peer (not yet sent or not yet
/// acknowledged).
#[cfg(target_os = "linux")]
fn unsent_bytes(stream: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ on a socket) writes one int through the
    // pointer; the descriptor stays open for the borrow.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc == 0 {
        usize::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

/// Not measurable here: the close does not wait on the send queue.
#[cfg(not(target_os = "linux"))]
fn unsent_bytes(_: &TcpStream) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

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

    const LINGER: Linger = Linger {
        quiet: Duration::from_secs(30),
        max_time: Duration::from_secs(60),
        max_bytes: 64 * 1024 * 1024,
        write_timeout: Duration::from_millis(200),
    };

    /// A connected pair of real sockets (server side first): the kernel's
    /// behaviour on close is what is tested.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    #[tokio::test]
    async fn a_client_still_sending_its_body_sends_it_all_then_reads_the_answer() {
        let (mut server, client) = pair().await;
        // Answered before the body was read, as a refusal is.
        server.write_all(b"HTTP/1.1 503 \r\n\r\n").await.unwrap();
        let closing = tokio::spawn(close(server, LINGER, false));
        let (mut rd, mut wr) = client.into_split();
        // Far more than the socket buffers hold: only a reading server takes it.
        wr.write_all(&vec![b' '; 32 * 1024 * 1024])
            .await
            .expect("the body is taken, not reset");
        let mut answer = Vec::new();
        rd.read_to_end(&mut answer).await.expect("answer, then EOF");
        assert_eq!(answer, b"HTTP/1.1 503 \r\n\r\n");
        drop((rd, wr));
        assert_eq!(closing.await.unwrap(), Closed::Clean);
    }

    #[tokio::test]
    async fn answers_a_client_never_reads_are_dropped_with_a_reset() {
        let (mut server, client) = pair().await;
        // Fill the buffers until a write stalls: the client reads nothing.
        let chunk = vec![0u8; 1024 * 1024];
        while tokio::time::timeout(Duration::from_millis(200), server.write_all(&chunk))
            .await
            .is_ok()
        {}
        assert_eq!(close(server, LINGER, false).await, Closed::Aborted);
        // The client's side is gone too (a plain close would leave it open).
        let mut client = client;
        let mut buf = vec![0u8; 1024 * 1024];
        let error = loop {
            match client.read(&mut buf).await {
                Ok(0) => panic!("a clean end of stream, not a reset"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn a_timed_out_write_resets_at_once_and_a_closed_client_closes_cleanly() {
        let (server, mut client) = pair().await;
        assert_eq!(close(server, LINGER, true).await, Closed::Aborted);
        let mut buf = [0u8; 16];
        let read = client.read(&mut buf).await;
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::ConnectionReset);

        let (server, client) = pair().await;
        drop(client);
        assert_eq!(close(server, LINGER, false).await, Closed::Clean);
    }
}
