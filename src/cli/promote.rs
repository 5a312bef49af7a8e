//! `nbserve promote`: a registry alias moved to a version the servers would
//! serve (`nbserve::retraining::promote`).

use nbserve::gate::ServingRule;
use nbserve::mlflow::{MlflowClient, ModelUri};
use nbserve::settings::{GateSettings, ModelSource};

use super::args::PromoteArgs;
use super::exit::Usage;
use super::serve::{load_model_settings, runtime};
use super::CmdResult;

/// The registered name and alias to move: the flags, else the served
/// model's `models:/NAME@ALIAS` source (the alias only when the names
/// agree), else `champion` for the alias.
fn name_and_alias(a: &PromoteArgs, source: &ModelSource) -> Result<(String, String), Usage> {
    let served = match source {
        ModelSource::Registry(uri) => Some(uri),
        ModelSource::File(_) => None,
    };
    let name = match (&a.model_name, served) {
        (Some(name), _) => name.clone(),
        (None, Some(uri)) => uri.name().to_owned(),
        (None, None) => {
            return Err(Usage(format!(
                "--model-name is needed: the served model's source {source} is a file, not models:/NAME@ALIAS"
            )))
        }
    };
    let alias = match (&a.alias, served) {
        (Some(alias), _) => alias.clone(),
        (None, Some(ModelUri::Alias { name: n, alias })) if *n == name => alias.clone(),
        _ => "champion".to_owned(),
    };
    Ok((name, alias))
}

/// Moves the alias once the version passes the rule of a server with the
/// `--config` settings for the `--served-model` model: `model.max_bytes`
/// and every limit of its gate, the minimum overridden by `--min-f1-macro`.
pub fn promote(a: PromoteArgs) -> CmdResult {
    let settings = load_model_settings(a.config.as_deref(), a.served_model.as_deref())?;
    let (name, alias) = name_and_alias(&a, &settings.model.path)?;
    let rule = ServingRule {
        gate: GateSettings {
            min_f1_macro: a.min_f1_macro.unwrap_or(settings.gate.min_f1_macro),
            ..settings.gate.clone()
        },
        max_bytes: settings.model.max_bytes,
    };
    let client = MlflowClient::new(&a.mlflow_uri)?;
    let pass = runtime()?.block_on(nbserve::retraining::promote(
        &client, &name, &a.version, &alias, &rule,
    ))?;
    outln!(
        "{}@{} -> version {} (F1 macro {:.4} ({}) >= minimum {:.4})",
        name,
        alias,
        a.version,
        pass.f1_macro,
        pass.gate_source,
        pass.threshold
    );
    Ok(())
}
