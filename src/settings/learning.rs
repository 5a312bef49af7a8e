//! Learning in place (the challenger beside the served model).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Learning in place: labelled examples added to (and removed from) a
/// challenger beside the served model, which needs a schema-3 artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LearningSettings {
    /// Accept `POST /learn` and `POST /forget` (behind `feedback.token`
    /// when it is set).
    pub enabled: bool,
    /// Learn labels outside the served model's classes as new classes.
    pub allow_new_classes: bool,
    /// Most bytes the learned part of the challenger may hold (its counts
    /// and the ledger of learned examples); a learn past it is refused.
    pub max_bytes: u64,
    /// Also score every served prediction with the challenger (when one
    /// has learned something) and count how often they agree, shown by
    /// `GET /challenger`; every prediction is then scored twice.
    pub shadow_scoring: bool,
    /// Append every accepted learn and forget to this JSON-lines file
    /// (synced before the answer; it stores the examples' texts), and
    /// replay it at start-up, so a restart keeps the challenger.
    pub log_path: Option<PathBuf>,
    /// Log a promoted challenger as an MLflow run and register it as a new
    /// version of this registered model, as `retrain --register` does
    /// (needs `model.mlflow_uri`). With a `models:/NAME@ALIAS` model path a
    /// promotion always registers (under this name, default NAME) and moves
    /// ALIAS.
    pub register: Option<String>,
    /// The MLflow experiment a promoted challenger's run is logged in
    /// (created when missing).
    pub mlflow_experiment: String,
    /// Promote the challenger by itself once it has
    /// `auto_promote_min_examples` net examples and
    /// `auto_promote_min_live_labels` labelled shadow-scored predictions:
    /// through the same gate and no-regression check (no regression
    /// allowed) as `POST /admin/challenger/promote`, checked after each
    /// learn and each such label. A refused promotion is tried again only
    /// once something new is learned.
    pub auto_promote: bool,
    /// Examples learned and not forgotten before an automatic promotion.
    pub auto_promote_min_examples: u64,
    /// Labelled predictions both models scored (the live comparison of
    /// `GET /challenger`) before an automatic promotion.
    pub auto_promote_min_live_labels: u64,
}

impl Default for LearningSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_new_classes: false,
            max_bytes: 64 * 1024 * 1024,
            shadow_scoring: true,
            log_path: None,
            register: None,
            mlflow_experiment: "nbserve".to_owned(),
            auto_promote: false,
            auto_promote_min_examples: 100,
            auto_promote_min_live_labels: 100,
        }
    }
}
