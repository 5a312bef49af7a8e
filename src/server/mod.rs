//! The HTTP server: start-up with the gate, routing, graceful shutdown.

pub mod error;
pub mod extract;
pub mod feedback;
pub mod metrics;
pub mod routes;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use routes::{router, ApiDoc};
pub use state::{load_gated, AppState, LoadError, ServingModel};

use crate::cli::exit;
use crate::settings::Settings;
use feedback::FeedbackStore;
use metrics::Metrics;

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Model invalid or rejected by the gate.
    #[error("cannot serve model {path}: {source}")]
    Model {
        /// The configured model file.
        path: String,
        /// Why.
        source: LoadError,
    },
    /// The feedback log could not be opened.
    #[error("cannot open feedback log: {0}")]
    FeedbackLog(std::io::Error),
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

impl StartupError {
    /// The documented process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::Model {
                source: LoadError::Gate(crate::gate::GateError::Rejected { .. }),
                ..
            } => exit::GATE_REJECTED,
            StartupError::Model { .. } => exit::INVALID_MODEL,
            StartupError::FeedbackLog(_) => exit::SETTINGS,
            StartupError::Bind { .. } => exit::FAILURE,
        }
    }
}

/// Largest request head (request line + headers) hyper buffers: 64 KiB.
/// Larger heads get hyper's 431 before the app sees them.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A built server: model loaded and gated, port bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
}

impl Application {
    /// Loads and gates the model, then binds. Nothing is bound if the model
    /// is invalid or rejected.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let started = Instant::now();
        let path = settings.model.path.clone();
        let gate_settings = settings.gate.clone();
        let model = tokio::task::spawn_blocking(move || load_gated(&path, &gate_settings))
            .await
            .expect("model loading does not panic")
            .map_err(|source| StartupError::Model {
                path: settings.model.path.display().to_string(),
                source,
            })?;
        let f = &settings.feedback;
        let feedback = FeedbackStore::new(
            f.capacity,
            Duration::from_secs(f.max_age_secs),
            f.window,
            f.log_path.as_deref(),
        )
        .map_err(StartupError::FeedbackLog)?;
        let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let meta = &model.loaded.meta;
        tracing::info!(
            model = %meta.model.name,
            version = %meta.model.version,
            f1_macro = model.gate.f1_macro,
            gate_min_f1_macro = model.gate.threshold,
            gate_source = %model.gate.basis,
            address = %format!("{}:{port}", settings.server.host),
            startup_ms = started.elapsed().as_millis() as u64,
            "model passed the gate; listening"
        );
        let state = AppState::new(settings, model, metrics, feedback);
        Ok(Self {
            listener,
            port,
            state,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests inspect it).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until SIGTERM or SIGINT; SIGHUP reloads the model.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let state = self.state.clone();
        tokio::spawn(reload_on_sighup(state));
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes, then drains: readiness turns 503,
    /// the listener closes, in-flight requests finish (bounded by
    /// `server.shutdown_timeout_secs`).
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        let state = self.state.clone();
        let app = router(state.clone());
        let header_read_timeout =
            Duration::from_millis(state.settings.server.header_read_timeout_ms);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Slow clients cannot hold a connection by trickling headers (the
        // timer also closes idle keep-alive connections), and a request head
        // (request line + headers) is capped at MAX_HEAD_BYTES. hyper answers
        // these itself, before the app: 431 (head too large or > 100
        // headers), 400 (broken framing), with an empty body.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEAD_BYTES as u32)
            .keep_alive_interval(Duration::from_secs(30));
        let graceful = GracefulShutdown::new();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let stream = OpeningDeadline::new(stream, header_read_timeout);
                    let app = app.clone();
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        app.clone().oneshot(req.map(axum::body::Body::new))
                    });
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                () = &mut signal => break,
            }
        }
        state.set_not_ready();
        drop(self.listener);
        let timeout = Duration::from_secs(state.settings.server.shutdown_timeout_secs);
        tracing::info!(
            timeout_secs = timeout.as_secs(),
            "shutting down: draining in-flight requests"
        );
        match tokio::time::timeout(timeout, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!("drain timeout reached; closing remaining connections"),
        }
        Ok(())
    }
}

/// The HTTP/2 connection preface; hyper-util reads up to this many bytes to
/// choose between HTTP/1 and HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection that must show which protocol it speaks before a deadline.
///
/// hyper's header-read timer only starts once hyper-util has chosen HTTP/1,
/// and it chooses only after the first bytes differ from the HTTP/2 preface
/// (or all 24 match). A client that connects and sends nothing — or a few
/// bytes of the preface — would otherwise hold the connection forever. Until
/// the choice is made, a read still pending at the deadline fails with
/// `TimedOut` and the connection is closed; after it, hyper's own timers
/// (header read for HTTP/1, keep-alive pings for HTTP/2) apply.
struct OpeningDeadline<T> {
    inner: T,
    seen: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> OpeningDeadline<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            seen: 0,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for OpeningDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if this.deadline.is_some() {
                    let new = &buf.filled()[before..];
                    let expected = &H2_PREFACE[this.seen.min(H2_PREFACE.len())..];
                    let n = new.len().min(expected.len());
                    this.seen += new.len();
                    // Decided: not the HTTP/2 preface (so HTTP/1), or all of it.
                    if new[..n] != expected[..n] || this.seen >= H2_PREFACE.len() {
                        this.deadline = None;
                    }
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no request in time",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for OpeningDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

async fn reload_on_sighup(state: AppState) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the model");
            let _ = state.reload(None).await;
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}

/// Keeps `Arc` in the public signature of handlers that share the model.
pub type SharedModel = Arc<ServingModel>;
