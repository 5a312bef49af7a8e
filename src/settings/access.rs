//! Who may call the admin and feedback routes, and how the feedback log is kept.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{tokens, SettingsError};

/// Admin settings.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token for `/admin/*`; admin endpoints answer 403
    /// `admin_disabled` when unset. One that breaks its rule is exit 3
    /// naming the setting (never the token).
    pub token: Option<String>,
    /// A file holding the token (the `*_FILE` convention of Compose and
    /// Kubernetes secrets), read once at start-up. A file other users can
    /// read or write is accepted with a warning.
    pub token_file: Option<PathBuf>,
}

impl AdminSettings {
    /// Moves the content of `token_file` into `token`.
    pub(super) fn read_token_file(&mut self) -> Result<(), SettingsError> {
        let keys = ("admin.token", "admin.token_file");
        tokens::read_token_file(keys, &mut self.token, self.token_file.as_ref())
    }
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// Feedback settings.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackSettings {
    /// Recent predictions remembered for feedback (oldest dropped first).
    pub capacity: usize,
    /// How long a prediction can receive feedback.
    pub max_age_secs: u64,
    /// Size of both live windows: the labelled predictions scored for the
    /// live evaluation, and the recent predictions behind the drift signals.
    pub window: usize,
    /// Append accepted feedback (and examples) to this JSON-lines file. It
    /// must be a regular file ending in complete lines (a last line cut by a
    /// crash is dropped), else start-up refuses it; it is reopened when rotated
    /// by rename or removal, and on SIGHUP.
    pub log_path: Option<PathBuf>,
    /// When the log is synced to disk. Lines are written by a dedicated
    /// thread from a queue bounded in bytes: with `never` or `interval` a full
    /// queue drops lines (`nbserve_feedback_log_dropped_total`), with `always`
    /// requests wait for it.
    pub log_fsync: LogFsync,
    /// Keep the text of remembered predictions, so feedback lines carry it:
    /// **stores user text** in memory and in the log; needs `log_path`.
    pub keep_text: bool,
    /// Most bytes of kept text in all; the oldest texts are dropped first
    /// (their feedback is still accepted, without the text).
    pub text_budget_bytes: usize,
    /// Accept labelled texts on `POST /examples`, appended to the log (404
    /// `examples_disabled` when off); needs `log_path`.
    pub accept_examples: bool,
    /// Bearer token the endpoints that write labels (`POST /feedback`,
    /// `POST /feedback/batch`, `POST /examples`) require (401 `unauthorized`
    /// without it), so only trusted clients write training labels; open when
    /// unset. A separate secret: the same value as `admin.token` is refused
    /// (exit 3).
    pub token: Option<String>,
    /// A file holding that token, like `admin.token_file`; exclusive with
    /// `token`.
    pub token_file: Option<PathBuf>,
}

impl FeedbackSettings {
    /// Moves the content of `token_file` into `token`.
    pub(super) fn read_token_file(&mut self) -> Result<(), SettingsError> {
        let keys = ("feedback.token", "feedback.token_file");
        tokens::read_token_file(keys, &mut self.token, self.token_file.as_ref())
    }
}

impl std::fmt::Debug for FeedbackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedbackSettings")
            .field("capacity", &self.capacity)
            .field("max_age_secs", &self.max_age_secs)
            .field("window", &self.window)
            .field("log_path", &self.log_path)
            .field("log_fsync", &self.log_fsync)
            .field("keep_text", &self.keep_text)
            .field("text_budget_bytes", &self.text_budget_bytes)
            .field("accept_examples", &self.accept_examples)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// When the feedback log is synced to disk (`fsync`; read in any case, see
/// [`Choice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFsync {
    /// Never: the OS writes it back when it likes.
    Never,
    /// At most one second after a line is written.
    Interval,
    /// After every line, before the feedback is acknowledged.
    Always,
}
