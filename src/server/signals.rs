//! The process's stop and reload signals (SIGTERM, SIGINT, SIGHUP).
//!
//! `nbserve serve` catches them from its first moment, before the model is
//! loaded: log rotation and `systemctl reload` send SIGHUP by PID whenever
//! they run, and the default action would kill a server still loading. A
//! SIGHUP that arrives while loading is kept and applied as a reload once
//! the server is up; SIGTERM or SIGINT while loading abandons the start.

use std::future::Future;
use std::io;

use super::AppState;

/// Keeps SIGTERM, SIGINT and SIGHUP pending (blocked) on the calling thread
/// until dropped, so that a signal sent before the handlers exist is
/// delivered to them afterwards instead of killing the process.
///
/// Threads started meanwhile (the runtime's workers) inherit the block and
/// keep it; the signals then reach the thread that dropped this guard.
#[must_use = "the signals are released when this is dropped"]
pub struct HeldSignals {
    #[cfg(unix)]
    previous: libc::sigset_t,
}

impl HeldSignals {
    /// Blocks the three signals on the calling thread.
    #[cfg(unix)]
    pub fn hold() -> io::Result<Self> {
        // SAFETY: plain C calls on sigset_t values owned here.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::sigaddset(&mut set, sig);
            }
            let mut previous: libc::sigset_t = std::mem::zeroed();
            match libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous) {
                0 => Ok(Self { previous }),
                e => Err(io::Error::from_raw_os_error(e)),
            }
        }
    }

    /// Nothing to hold off Unix.
    #[cfg(not(unix))]
    pub fn hold() -> io::Result<Self> {
        Ok(Self {})
    }
}

impl Drop for HeldSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `hold`; signals that came
        // meanwhile are delivered before this returns.
        #[cfg(unix)]
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}

/// The process's signal handlers, installed (and catching) from creation on;
/// a signal that arrives before anyone waits is kept, not lost.
pub struct Signals {
    stop: Stop,
    hup: Hangup,
}

impl Signals {
    /// Installs the handlers: from now on SIGTERM, SIGINT and SIGHUP are
    /// caught instead of ending the process. Needs a Tokio runtime.
    #[cfg(unix)]
    pub fn install() -> io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            stop: Stop {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            },
            hup: Hangup(signal(SignalKind::hangup())?),
        })
    }

    /// Ctrl-C only, off Unix.
    #[cfg(not(unix))]
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            stop: Stop {},
            hup: Hangup(),
        })
    }

    /// Completes on SIGTERM or SIGINT with the signal's name; cancel-safe
    /// (a signal not yet taken stays for the next call).
    pub(super) async fn stop(&mut self) -> &'static str {
        self.stop.recv().await
    }

    /// (completes on SIGTERM or SIGINT, the SIGHUP stream)
    pub(super) fn split(self) -> (impl Future<Output = ()>, Hangup) {
        let Self { mut stop, hup } = self;
        let shutdown = async move {
            let signal = stop.recv().await;
            tracing::info!("{signal} received");
        };
        (shutdown, hup)
    }
}

/// SIGTERM and SIGINT (Ctrl-C off Unix).
struct Stop {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Stop {
    #[cfg(unix)]
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// SIGHUP (nothing off Unix).
pub(super) struct Hangup(#[cfg(unix)] tokio::signal::unix::Signal);

/// Reloads the model and reopens the feedback log on every SIGHUP, one that
/// came before the server was up included.
pub(super) async fn reload_on_sighup(state: AppState, hangup: Hangup) {
    #[cfg(unix)]
    {
        let mut hup = hangup.0;
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the models, reopening the feedback log");
            state.feedback.reopen_log();
            state.reload_all().await;
        }
    }
    #[cfg(not(unix))]
    let _ = (state, hangup);
}
