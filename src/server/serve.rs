//! The accept loop and the drain: how connections are served and how they
//! are let finish on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use super::connection::{close, Closed, ConnectionSlots, Linger, WriteTimeout};
use super::edge::Direct;
use super::routes::{direct_route, is_direct, router};
use super::state::AppState;
use super::MAX_HEAD_BYTES;

/// Most connections taken from the accept queue after the shutdown signal.
const MAX_LATE_CONNECTIONS: u64 = 4096;

/// A closing connection stops reading once its client has been silent this
/// long (at most the header timeout): a client still sending keeps sending.
const LINGER_QUIET: Duration = Duration::from_secs(2);

/// Serves on `listener` until `signal` completes, then drains: readiness
/// turns 503, serving goes on for `server.drain_delay_secs`, connections the kernel already completed are still taken, the
/// listener closes, in-flight requests finish (bounded by
/// `server.shutdown_timeout_secs`).
pub(super) async fn serve(
    listener: TcpListener,
    state: AppState,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (shutdown_tx, shutdown_rx) = watch::channel(());
    let connections = Connections::new(&state, shutdown_rx, direct_route(&state));
    let mut accepted = accept_until(&listener, &connections, signal).await;
    state.set_not_ready();
    let delay = Duration::from_secs(state.settings.server.drain_delay_secs);
    if !delay.is_zero() {
        // Kubernetes removes a terminating pod from its endpoints only after
        // readiness fails, and the image has no shell for a preStop sleep:
        // serve on until the endpoints are gone.
        tracing::info!(
            delay_secs = delay.as_secs(),
            "readiness is 503; serving on for server.drain_delay_secs before draining"
        );
        accepted += accept_until(&listener, &connections, tokio::time::sleep(delay)).await;
    }
    let late = take_queued(listener, &connections);
    let timeout = Duration::from_secs(state.settings.server.shutdown_timeout_secs);
    tracing::info!(
        timeout_secs = timeout.as_secs(),
        late_connections = late,
        connections_accepted = accepted + late,
        "shutting down: draining in-flight requests"
    );
    // The connection tasks hold the other receivers; the drain counts on it.
    drop(connections);
    let _ = shutdown_tx.send(());
    // Completes when every connection task has dropped its receiver.
    match tokio::time::timeout(timeout, shutdown_tx.closed()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
    Ok(())
}

/// Everything a connection task needs: one per server.
struct Connections<D> {
    app: Router,
    /// `POST /predict`, answered without the router ([`direct_route`]).
    direct: Arc<D>,
    http1: http1::Builder,
    header_read_timeout: Duration,
    write_timeout: Duration,
    linger: Linger,
    slots: ConnectionSlots,
    state: AppState,
    shutdown: watch::Receiver<()>,
}

impl<D: Direct> Connections<D> {
    fn new(state: &AppState, shutdown: watch::Receiver<()>, direct: D) -> Self {
        // HTTP/1.1 only. hyper-util's auto (HTTP/1 + h2c) builder first reads
        // a few bytes to pick the protocol, without any timeout (a silent
        // client held its connection forever) and, on graceful shutdown,
        // drops connections still at that step (requests sent just before
        // SIGTERM were reset). Nothing here used h2c.
        //
        // Slow clients cannot hold a connection: a connection must send its
        // first byte within the header timeout (see `spawn`), then hyper's
        // header timer gives it the timeout again to complete the head, and
        // restarts after every response (closing idle keep-alive
        // connections). A request head is capped at MAX_HEAD_BYTES.
        // hyper answers these itself, before the app: 431 (head too large or
        // > 100 headers), 400 (broken framing), with an empty body.
        let header_read_timeout =
            Duration::from_millis(state.settings.server.header_read_timeout_ms);
        let mut http1 = http1::Builder::new();
        // half_close: a client may shut down its write side once the request
        // is sent (`nc -N`, some health checkers); by default hyper treats
        // that EOF as "gone" and closes without answering.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .half_close(true);
        let server = &state.settings.server;
        let write_timeout = Duration::from_millis(server.write_timeout_ms);
        // A refused client may still be sending the rest of one request: it
        // gets as many bytes as an admitted request would, and as long as a
        // client has for a request head.
        let linger = Linger {
            quiet: header_read_timeout.min(LINGER_QUIET),
            max_time: header_read_timeout,
            max_bytes: server.body_limit_bytes.saturating_add(MAX_HEAD_BYTES),
            write_timeout,
        };
        Self {
            app: router(state.clone()),
            direct: Arc::new(direct),
            http1,
            header_read_timeout,
            write_timeout,
            linger,
            slots: ConnectionSlots::new(state.settings.server.max_connections),
            state: state.clone(),
            shutdown,
        }
    }

    /// Serves `stream` on its own task.
    ///
    /// Graceful shutdown by hand rather than hyper-util's GracefulShutdown:
    /// hyper closes a connection that has not read anything yet when asked
    /// to shut down — even if the client's request already sits in the
    /// socket. So each connection first waits until its first bytes can be
    /// peeked (`readable()` alone can wake spuriously; closed if none come
    /// within the header timeout) and is polled once before it looks at the
    /// shutdown signal; the request it was opened for is then served.
    ///
    /// Beyond `server.max_connections` the stream is closed at once (and
    /// counted): a flood of idle connections costs file descriptors, not
    /// the server's memory or its other clients' service.
    fn spawn(&self, stream: TcpStream) {
        let metrics = &self.state.metrics;
        let Some(slot) = self.slots.try_take(&metrics.connections_open) else {
            metrics.connections_refused.inc();
            return;
        };
        let timeouts = metrics.connections_write_timeouts.clone();
        let write_timeout = self.write_timeout;
        let _ = stream.set_nodelay(true);
        let app = self.app.clone();
        let direct = Arc::clone(&self.direct);
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let req = req.map(axum::body::Body::new);
                // Either future, decided before it is first polled.
                let answer = if is_direct(&req) {
                    Ok(direct.answer(req))
                } else {
                    Err(app.clone().oneshot(req))
                };
                async move {
                    match answer {
                        Ok(direct) => Ok::<_, Infallible>(direct.await),
                        Err(routed) => routed.await,
                    }
                }
            });
        let http1 = self.http1.clone();
        let header_read_timeout = self.header_read_timeout;
        let mut shutdown = self.shutdown.clone();
        let linger = self.linger;
        tokio::spawn(async move {
            // Released (and the gauge lowered) however the task ends.
            let _slot = slot;
            // A client silent for the whole header timeout is dropped.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_read_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let mut io = WriteTimeout::new(stream, write_timeout, timeouts.clone());
            {
                // hyper gets the stream by reference: the close below is
                // ours, whichever way hyper ends (answered, refused, timed out).
                let conn = http1.serve_connection(TokioIo::new(&mut io), service);
                tokio::pin!(conn);
                tokio::select! {
                    biased;
                    _ = conn.as_mut() => {}
                    _ = shutdown.changed() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            }
            // Nothing written, no answer to protect: a plain close (a silent
            // or too slow client gets no more than the header timeout).
            let abort = io.timed_out();
            if abort || io.wrote() {
                let closed = close(io.into_inner(), linger, abort).await;
                // A timed-out write was counted by the write timer already.
                if closed == Closed::Aborted && !abort {
                    timeouts.inc();
                }
            }
            // `shutdown` dropped here: the drain counts on it.
        });
    }
}

/// Accepts and serves connections until `signal`; returns how many.
async fn accept_until<D: Direct>(
    listener: &TcpListener,
    connections: &Connections<D>,
    signal: impl Future<Output = ()>,
) -> u64 {
    let mut accepted: u64 = 0;
    tokio::pin!(signal);
    loop {
        tokio::select! {
            result = listener.accept() => match result {
                Ok((stream, _peer)) => {
                    connections.spawn(stream);
                    accepted += 1;
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut signal => return accepted,
        }
    }
}

/// Serves the connections waiting in the accept queue, then closes the
/// listener; returns how many.
///
/// Connections the kernel completed before the signal wait in the accept
/// queue; closing the listener would reset them although their clients may
/// already have sent a request. They are taken (a bounded number) straight
/// from the socket. (One that completes between the last accept and the
/// close is still closed by the kernel, unanswered and unread: its client
/// sees it like a refusal.)
fn take_queued<D: Direct>(listener: TcpListener, connections: &Connections<D>) -> u64 {
    let listener = match listener.into_std() {
        Ok(l) => l,
        // Closed already (dropped by the failed conversion): drain anyway.
        Err(e) => {
            tracing::warn!(error = %e, "could not take queued connections");
            return 0;
        }
    };
    let mut late: u64 = 0;
    while late < MAX_LATE_CONNECTIONS {
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(true).is_ok() {
                    if let Ok(stream) = TcpStream::from_std(stream) {
                        connections.spawn(stream);
                        late += 1;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    late
}
