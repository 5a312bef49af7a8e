//! Following each model's source: at its poll interval
//! (`model.poll_interval_secs`, or its own in `[models.NAME]`), the source
//! of the model being served (a file's content, or the version a registry
//! alias points at) is checked and, when it changed, reloaded through the
//! same gated path as `/admin/reload`. A model not being served (unloaded,
//! or never loaded) is not followed until it is loaded.
//!
//! A registry poll asks with [`Deadlines::POLL`]: one attempt, short
//! deadlines, an answer capped like every other. A registry that stalls or
//! streams delays one poll by seconds; the next tick is the retry. The
//! reload a change triggers downloads with the registry client's own
//! (longer) deadlines.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tracing::Instrument as _;

use super::loader::{content_fingerprint, open_model_file, ServingModel};
use super::repository::{ModelEntry, Why};
use super::state::AppState;
use crate::artifact::{read_capped, ArtifactError};
use crate::mlflow::{Deadlines, MlflowClient, MlflowError};
use crate::settings::ModelSource;

/// Why the source could not be checked.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("cannot read the model file ({0})")]
    File(std::io::ErrorKind),
    #[error(transparent)]
    Registry(#[from] MlflowError),
}

/// The source's fingerprint now, comparable with `ServingModel::fingerprint`.
async fn fingerprint(
    state: &AppState,
    registry: Option<&MlflowClient>,
    current: &ServingModel,
) -> Result<String, PollError> {
    match &current.source {
        ModelSource::Registry(uri) => {
            let client = registry.ok_or_else(|| MlflowError::NoTrackingUri(uri.to_string()))?;
            Ok(client.resolve(uri).await?.version)
        }
        ModelSource::File(path) => {
            let path = path.clone();
            let confined_to = current.confined_to.clone();
            let max_bytes = state.settings.model.max_bytes;
            // Read like a load: one handle, a regular file, capped.
            tokio::task::spawn_blocking(move || {
                let file = open_model_file(&path, confined_to.as_deref())
                    .map_err(|_| std::io::ErrorKind::InvalidInput)?;
                read_capped(file, &path, max_bytes)
                    .map(|b| content_fingerprint(&b))
                    .map_err(|e| match e {
                        ArtifactError::Io { source, .. } => source.kind(),
                        _ => std::io::ErrorKind::InvalidData,
                    })
            })
            .await
            .expect("hashing does not panic")
            .map_err(PollError::File)
        }
    }
}

/// What a poll remembers between ticks.
struct Followed {
    /// The source's fingerprint at the last poll.
    last_seen: String,
    /// Whether the last poll could not check the source (logged once).
    failing: bool,
}

/// One poll of `entry`'s source, and the reload when it changed: one `poll`
/// span, the `reload` it triggers (and that reload's `model_load`) under it,
/// so a trace shows what a poll cost and what it did.
#[tracing::instrument(level = "debug", name = "poll", skip_all)]
async fn poll_once(
    state: &AppState,
    registry: Option<&MlflowClient>,
    entry: &Arc<ModelEntry>,
    current: &ServingModel,
    followed: &mut Followed,
) {
    let model = &*entry.name;
    let seen = match fingerprint(state, registry, current).await {
        Ok(seen) => {
            if followed.failing {
                tracing::info!(model, "model source readable again");
                followed.failing = false;
            }
            seen
        }
        Err(e) => {
            if !followed.failing {
                tracing::warn!(model, error = %e, "cannot check the model source; still serving the current model");
                followed.failing = true;
            }
            state.metrics.count_poll(model, "error");
            return;
        }
    };
    // Also unchanged when someone reloaded the new source by hand.
    if seen == followed.last_seen || seen == current.fingerprint {
        followed.last_seen = seen;
        state.metrics.count_poll(model, "unchanged");
        return;
    }
    tracing::info!(model, from = %current.fingerprint, to = %seen, "model source changed: reloading");
    followed.last_seen = seen;
    // The current source, opened the way it was (confined or not).
    let result = state
        .load_model(Arc::clone(entry), None, Why::Reload)
        .instrument(tracing::debug_span!("reload"))
        .await;
    state.metrics.count_poll(
        model,
        if result.is_ok() {
            "reloaded"
        } else {
            "refused"
        },
    );
}

/// Polls `entry`'s source forever; a change is reloaded once — a refused
/// model is not retried until the source changes again.
pub(crate) async fn follow_source(state: AppState, entry: Arc<ModelEntry>, interval: Duration) {
    let registry = state
        .registry
        .as_ref()
        .map(|c| c.with_deadlines(Deadlines::POLL));
    let mut followed = Followed {
        last_seen: entry
            .serving()
            .map(|m| m.fingerprint.clone())
            .unwrap_or_default(),
        failing: false,
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(current) = entry.serving() else {
            continue;
        };
        poll_once(&state, registry.as_ref(), &entry, &current, &mut followed).await;
    }
}
