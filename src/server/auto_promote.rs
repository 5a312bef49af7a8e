//! `learning.auto_promote`: the challenger promoted by itself once it has
//! learned enough and been judged live on enough labels, through
//! [`promote_challenger`] — the code `POST /admin/challenger/promote` runs,
//! so the gate, the no-regression check, the versioned store and the swap
//! are the same.
//!
//! Checked after each learn and each label that scored the challenger. The
//! request that meets both minimums waits for the attempt (seconds at
//! most: one holdout pass and a reload), so its outcome is known when it
//! answers; concurrent requests meanwhile do not start another. A refused
//! attempt is remembered with what the challenger had learned, and not
//! tried again until it learns more: the gate would refuse the same
//! challenger again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::server::repository::ModelEntry;
use crate::server::routes::promote::{promote_challenger, Trigger};
use crate::server::state::AppState;

/// The challenger a refused attempt judged: its champion's checksum and
/// how many examples it had learned.
type Judged = (String, u64);

/// What automatic promotion remembers between checks.
#[derive(Debug, Default)]
pub struct AutoPromote {
    /// An attempt is under way.
    busy: AtomicBool,
    /// The last refused challenger.
    refused: std::sync::Mutex<Option<Judged>>,
}

impl AutoPromote {
    fn refused(&self) -> std::sync::MutexGuard<'_, Option<Judged>> {
        // A poisoned lock still holds a whole value.
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Clears the busy flag however the attempt ends.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Promotes the challenger of `entry`'s model when `learning.auto_promote`
/// is on, both minimums are met and this challenger was not refused
/// already; does nothing otherwise.
pub async fn consider(state: &AppState, entry: &Arc<ModelEntry>) {
    let settings = &state.settings.learning;
    if !settings.enabled || !settings.auto_promote {
        return;
    }
    let challenger = &entry.challenger;
    let Some(champion) = entry.serving() else {
        return;
    };
    let Some(view) = challenger.view(&champion) else {
        return;
    };
    let labels = challenger.live().labels;
    if view.net_examples < settings.auto_promote_min_examples
        || labels < settings.auto_promote_min_live_labels
    {
        return;
    }
    let judged: Judged = (view.champion.2.clone(), view.tally.learned);
    let auto = &challenger.auto;
    if auto.refused().as_ref() == Some(&judged) {
        return;
    }
    if auto.busy.swap(true, Ordering::AcqRel) {
        return;
    }
    let _busy = Busy(&auto.busy);
    let (examples, learned) = (view.net_examples, judged.1);
    match promote_challenger(state, entry, 0.0, Trigger::Auto).await {
        Ok(p) => {
            *auto.refused() = None;
            tracing::info!(
                model = %entry.name,
                examples,
                live_labels = labels,
                version = %p.version,
                f1_macro = p.f1_macro,
                replaced_f1_macro = p.replaced_f1_macro,
                "challenger promoted automatically"
            );
        }
        Err(e) => {
            *auto.refused() = Some(judged);
            tracing::info!(
                model = %entry.name,
                examples,
                learned,
                live_labels = labels,
                code = e.code,
                "automatic challenger promotion refused; next try after the next learn"
            );
        }
    }
}
