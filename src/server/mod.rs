//! The HTTP server: start-up with the gate, routing, graceful shutdown.

mod auth;
pub mod auto_promote;
pub mod challenger;
mod connection;
mod edge;
pub mod error;
pub mod error_codes;
mod exemplars;
pub mod extract;
mod learning_log;
pub mod loader;
pub mod metrics;
mod middleware;
pub mod model_metrics;
pub mod openapi;
pub mod openmetrics;
mod poll;
mod registration;
pub mod repository;
pub mod routes;
mod scoring;
mod serve;
pub mod shadow;
mod signals;
pub mod state;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

pub use loader::{LoadError, ServingModel};
pub use repository::{ModelEntry, ModelState, Repository};
pub use routes::{router, ApiDoc};
pub use signals::{HeldSignals, Signals};
pub use state::AppState;

use crate::monitoring::FeedbackStore;
use crate::settings::{Settings, SettingsError};
use metrics::Metrics;
use repository::ops::Why;

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The repository cannot be made: a name invalid or given twice, too
    /// many models, a default that names none, a directory not readable.
    #[error("{0}")]
    Repository(SettingsError),
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
    /// SIGTERM or SIGINT came before the server was up: the start was
    /// abandoned (a stop, not a failure).
    #[error("stopped by {signal} before serving")]
    Stopped {
        /// Which signal.
        signal: &'static str,
    },
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
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
        Self::build_inner(settings, None).await
    }

    /// Like [`Application::build`], with the process's signal handlers,
    /// installed before (see [`Signals`]) and kept for
    /// [`Application::run_until_stopped`]: SIGTERM or SIGINT while the model
    /// loads abandons the start ([`StartupError::Stopped`]); SIGHUP then is
    /// kept, and reloads once the server runs.
    pub async fn build_with_signals(
        settings: Settings,
        signals: Signals,
    ) -> Result<Self, StartupError> {
        Self::build_inner(settings, Some(signals)).await
    }

    async fn build_inner(
        settings: Settings,
        mut signals: Option<Signals>,
    ) -> Result<Self, StartupError> {
        let started = Instant::now();
        let plan = settings.model_specs().map_err(StartupError::Repository)?;
        let registry = settings.registry().map_err(|e| StartupError::Model {
            path: settings.model.path.to_string(),
            source: e.into(),
        })?;
        let feedback =
            FeedbackStore::from_settings(&settings.feedback).map_err(StartupError::FeedbackLog)?;
        let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
        let models = repository::Repository::new(&settings, plan);
        let state = AppState::new(settings, models, metrics, feedback, registry);
        let load = load_at_start(&state);
        match signals.as_mut() {
            // Loading (a download, a holdout evaluation) may take long; a
            // stop does not wait for it. Nothing is served yet: no drain.
            Some(signals) => tokio::select! {
                biased;
                signal = signals.stop() => {
                    tracing::info!(signal, "stopped while loading the models; not serving");
                    return Err(StartupError::Stopped { signal });
                }
                loaded = load => loaded,
            },
            None => load.await,
        }?;
        let settings = &state.settings;
        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let model = state.default_model().expect("the default model loaded");
        let meta = &model.loaded.meta;
        let entries = state.models.entries();
        tracing::info!(
            model = %meta.model.name,
            version = %meta.model.version,
            registry_version = model.registry_version.as_ref().map(|v| v.version.as_str()),
            run_id = meta.mlflow_run_id.as_deref(),
            f1_macro = model.gate.f1_macro,
            gate_min_f1_macro = model.gate.threshold,
            gate_source = %model.gate.gate_source,
            models = entries.len(),
            models_served = entries.iter().filter(|e| e.serving().is_some()).count(),
            address = %format!("{}:{port}", settings.server.host),
            startup_ms = started.elapsed().as_millis() as u64,
            "model passed the gate; listening"
        );
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

    /// Serves until SIGTERM or SIGINT; SIGHUP reloads the model (a SIGHUP
    /// that came while loading included). Uses the handlers given to
    /// [`Application::build_with_signals`], or installs them now.
    pub async fn run_until_stopped(mut self) -> std::io::Result<()> {
        let handlers = match self.signals.take() {
            Some(s) => s,
            None => Signals::install()?,
        };
        let (shutdown, hangup) = handlers.split();
        tokio::spawn(signals::reload_on_sighup(self.state.clone(), hangup));
        self.run_until(shutdown).await
    }

    /// Serves until `signal` completes, then drains: readiness turns 503,
    /// connections the kernel already completed are still taken, the listener
    /// closes, in-flight requests finish (bounded by
    /// `server.shutdown_timeout_secs`).
    ///
    /// With `model.poll_interval_secs` set, the model's source is followed
    /// meanwhile.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        // Each model with a poll interval follows its own source.
        let pollers: Vec<_> = self
            .state
            .models
            .entries()
            .iter()
            .filter(|e| e.spec.poll_interval_secs > 0)
            .map(|e| {
                tokio::spawn(poll::follow_source(
                    self.state.clone(),
                    Arc::clone(e),
                    Duration::from_secs(e.spec.poll_interval_secs),
                ))
            })
            .collect();
        // Kept texts of predictions past feedback.max_age_secs are freed on
        // a timer too, not only when the next prediction comes.
        let sweeper = self.state.feedback.keeps_text().then(|| {
            let state = self.state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(EXPIRE_SWEEP);
                loop {
                    tick.tick().await;
                    state.feedback.forget_expired();
                }
            })
        });
        let state = self.state.clone();
        let result = serve::serve(self.listener, self.state, signal).await;
        for p in pollers {
            p.abort();
        }
        if let Some(s) = sweeper {
            s.abort();
        }
        // Lines accepted under `never`/`interval` may still be queued: write
        // them before the process ends (bounded: a stalled disk must not
        // hold the shutdown).
        if !state.feedback.flush_log(FLUSH_ON_SHUTDOWN).await {
            tracing::error!(
                timeout_secs = FLUSH_ON_SHUTDOWN.as_secs(),
                "feedback log not flushed at shutdown; queued lines may be lost"
            );
        }
        result
    }
}

/// Loads every model: the default one and the required ones must load
/// (else the start fails, naming the first that did not); any other that
/// does not is left unavailable, with its reason, and does not stop the
/// others.
async fn load_at_start(state: &AppState) -> Result<(), StartupError> {
    let mut entries: Vec<_> = state.models.entries().iter().cloned().collect();
    // The default model first, then the required ones: a start that fails
    // fails before loading the rest.
    entries.sort_by_key(|e| {
        (
            !Arc::ptr_eq(e, state.models.default_entry()),
            !e.spec.required,
        )
    });
    for entry in entries {
        let result = state.load_model(Arc::clone(&entry), None, Why::Start).await;
        if let Err(source) = result {
            if entry.spec.required {
                return Err(StartupError::Model {
                    path: entry.spec.source.to_string(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// How long the shutdown waits for the feedback log's queue to be written.
const FLUSH_ON_SHUTDOWN: Duration = Duration::from_secs(10);

/// How often kept texts of expired predictions are freed without traffic.
const EXPIRE_SWEEP: Duration = Duration::from_secs(5);
