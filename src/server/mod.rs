//! The HTTP server: start-up with the gate, routing, graceful shutdown.

pub mod error;
pub mod extract;
pub mod feedback;
pub mod metrics;
pub mod routes;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
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
    /// The signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
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
            StartupError::Signals(_) | StartupError::Bind { .. } => exit::FAILURE,
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
    signals: Option<Signals>,
}

impl Application {
    /// Loads and gates the model, then binds. Nothing is bound if the model
    /// is invalid or rejected. Installs no signal handlers (tests, embedding).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_inner(settings, false).await
    }

    /// Like [`Application::build`], and installs the SIGTERM, SIGINT and
    /// SIGHUP handlers of [`Application::run_until_stopped`] before the port is
    /// bound: whoever sees the port open may signal the process without
    /// killing it with the default action.
    pub async fn build_with_signals(settings: Settings) -> Result<Self, StartupError> {
        Self::build_inner(settings, true).await
    }

    async fn build_inner(settings: Settings, with_signals: bool) -> Result<Self, StartupError> {
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
        let signals = if with_signals {
            Some(Signals::install().map_err(StartupError::Signals)?)
        } else {
            None
        };
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
            signals,
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

    /// Serves until SIGTERM or SIGINT; SIGHUP reloads the model. Uses the
    /// handlers installed by [`Application::build_with_signals`], or installs
    /// them now.
    pub async fn run_until_stopped(mut self) -> std::io::Result<()> {
        let signals = match self.signals.take() {
            Some(s) => s,
            None => Signals::install()?,
        };
        let (shutdown, hangup) = signals.split();
        tokio::spawn(reload_on_sighup(self.state.clone(), hangup));
        self.run_until(shutdown).await
    }

    /// Serves until `signal` completes, then drains: readiness turns 503,
    /// connections the kernel already completed are still taken, the listener
    /// closes, in-flight requests finish (bounded by
    /// `server.shutdown_timeout_secs`).
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        let state = self.state.clone();
        let app = router(state.clone());
        // HTTP/1.1 only. hyper-util's auto (HTTP/1 + h2c) builder first reads
        // a few bytes to pick the protocol, without any timeout (a silent
        // client held its connection forever) and, on graceful shutdown,
        // drops connections still at that step (requests sent just before
        // SIGTERM were reset). Nothing here used h2c.
        //
        // Slow clients cannot hold a connection: a connection must send its
        // first byte within the header timeout (below), then hyper's header
        // timer gives it the timeout again to complete the head, and restarts
        // after every response (closing idle keep-alive connections). A
        // request head is capped at MAX_HEAD_BYTES.
        // hyper answers these itself, before the app: 431 (head too large or
        // > 100 headers), 400 (broken framing), with an empty body.
        let header_read_timeout =
            Duration::from_millis(state.settings.server.header_read_timeout_ms);
        let mut http1 = hyper::server::conn::http1::Builder::new();
        // half_close: a client may shut down its write side once the request
        // is sent (`nc -N`, some health checkers); by default hyper treats
        // that EOF as "gone" and closes without answering.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .half_close(true);
        // Graceful shutdown by hand rather than hyper-util's GracefulShutdown:
        // hyper closes a connection that has not read anything yet when asked
        // to shut down — even if the client's request already sits in the
        // socket. So each connection first waits until its first bytes can be
        // peeked (`readable()` alone can wake spuriously; closed if none come
        // within the header timeout) and is polled once before it looks at
        // the shutdown signal; the request it was opened for is then served.
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(());
        let serve = |stream: TcpStream| {
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let http1 = http1.clone();
            let mut shutdown = shutdown_rx.clone();
            tokio::spawn(async move {
                // A client silent for the whole header timeout is dropped.
                let mut first = [0u8; 1];
                match tokio::time::timeout(header_read_timeout, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
                let conn = http1.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    biased;
                    _ = conn.as_mut() => return,
                    _ = shutdown.changed() => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
                // `shutdown` dropped here: the drain below counts on it.
            });
        };
        let mut connections: u64 = 0;
        tokio::pin!(signal);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, _peer): (TcpStream, SocketAddr) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    serve(stream);
                    connections += 1;
                }
                () = &mut signal => break,
            }
        }
        state.set_not_ready();
        // Connections the kernel completed before the signal wait in the
        // accept queue; closing the listener would reset them although their
        // clients may already have sent a request. Take them (a bounded
        // number) straight from the socket, then close. (One that completes
        // between the last accept and the close is still closed by the
        // kernel, unanswered and unread: its client sees it like a refusal.)
        let mut late: u64 = 0;
        match self.listener.into_std() {
            Ok(listener) => {
                while late < 4096 {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if stream.set_nonblocking(true).is_ok() {
                                if let Ok(stream) = TcpStream::from_std(stream) {
                                    serve(stream);
                                    late += 1;
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
            }
            // Closed already (dropped by the failed conversion): drain anyway.
            Err(e) => tracing::warn!(error = %e, "could not take queued connections"),
        }
        let timeout = Duration::from_secs(state.settings.server.shutdown_timeout_secs);
        tracing::info!(
            timeout_secs = timeout.as_secs(),
            late_connections = late,
            connections_accepted = connections + late,
            "shutting down: draining in-flight requests"
        );
        drop(shutdown_rx);
        let _ = shutdown_tx.send(());
        // Completes when every connection task has dropped its receiver.
        match tokio::time::timeout(timeout, shutdown_tx.closed()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!("drain timeout reached; closing remaining connections"),
        }
        Ok(())
    }
}

/// The process's signal handlers, installed (and catching) from creation on;
/// a signal that arrives before anyone waits is kept, not lost.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// (completes on SIGTERM or SIGINT, the SIGHUP stream)
    #[cfg(unix)]
    fn split(self) -> (impl Future<Output = ()>, Hangup) {
        let Self {
            mut term,
            mut int,
            hup,
        } = self;
        let shutdown = async move {
            tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
        };
        (shutdown, Hangup(hup))
    }

    #[cfg(not(unix))]
    fn split(self) -> (impl Future<Output = ()>, Hangup) {
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("SIGINT received");
        };
        (shutdown, Hangup)
    }
}

/// SIGHUP (nothing off Unix).
#[cfg(unix)]
struct Hangup(tokio::signal::unix::Signal);
#[cfg(not(unix))]
struct Hangup;

async fn reload_on_sighup(state: AppState, hangup: Hangup) {
    #[cfg(unix)]
    {
        let mut hup = hangup.0;
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the model");
            let _ = state.reload(None).await;
        }
    }
    #[cfg(not(unix))]
    let _ = (state, hangup);
}
