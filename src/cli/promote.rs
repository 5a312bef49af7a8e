//! `nbserve promote`: a registry alias moved to a version the servers would
//! serve (`nbserve::retraining::promote`).

use nbserve::gate::ServingRule;
use nbserve::mlflow::MlflowClient;
use nbserve::settings::GateSettings;

use super::args::PromoteArgs;
use super::serve::{load_settings, runtime};
use super::CmdResult;

/// Moves the alias once the version passes the rule of a server with the
/// `--config` settings: `model.max_bytes` and every `gate.*` limit, the
/// minimum overridden by `--min-f1-macro`.
pub fn promote(a: PromoteArgs) -> CmdResult {
    let settings = load_settings(a.config.as_deref())?;
    let rule = ServingRule {
        gate: GateSettings {
            min_f1_macro: a.min_f1_macro.unwrap_or(settings.gate.min_f1_macro),
            ..settings.gate.clone()
        },
        max_bytes: settings.model.max_bytes,
    };
    let client = MlflowClient::new(&a.mlflow_uri)?;
    let pass = runtime()?.block_on(nbserve::retraining::promote(
        &client,
        &a.model_name,
        &a.version,
        &a.alias,
        &rule,
    ))?;
    outln!(
        "{}@{} -> version {} (F1 macro {:.4} ({}) >= minimum {:.4})",
        a.model_name,
        a.alias,
        a.version,
        pass.f1_macro,
        pass.gate_source,
        pass.threshold
    );
    Ok(())
}
