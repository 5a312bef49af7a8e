//! Promotion in the registry: an alias moves to a version only when that
//! version's artifact is one the servers would serve, by the same rule and
//! limits ([`gate::load_gated`]).

use crate::gate::{self, GateError, GatePass, ServingRule};
use crate::mlflow::{MlflowClient, MlflowError};

/// Why an alias was not moved.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The registry could not be asked, did not provide the artifact, or
    /// refused to move the alias.
    #[error(transparent)]
    Registry(#[from] MlflowError),
    /// The version is not one the servers would serve.
    #[error("not promoted: {name} version {version}: {source}")]
    Refused {
        /// Registered model name.
        name: String,
        /// The version.
        version: String,
        /// Why.
        source: GateError,
    },
}

/// Moves `alias` of the registered model `name` to `version`, once that
/// version's artifact (downloaded within `rule.max_bytes`) passes `rule`.
/// Returns the gate's verdict.
pub async fn promote(
    client: &MlflowClient,
    name: &str,
    version: &str,
    alias: &str,
    rule: &ServingRule,
) -> Result<GatePass, PromoteError> {
    let mv = client.get_model_version(name, version).await?;
    let bytes = client.download_model_file(&mv, rule.max_bytes).await?;
    let owned_rule = rule.clone();
    // Validation and a holdout evaluation are CPU work: off the runtime's
    // workers.
    let gated = tokio::task::spawn_blocking(move || gate::load_gated(bytes, &owned_rule))
        .await
        .expect("gating does not panic");
    let servable = gated.map_err(|source| PromoteError::Refused {
        name: mv.name.clone(),
        version: mv.version.clone(),
        source,
    })?;
    client.set_alias(name, alias, version).await?;
    Ok(servable.pass)
}
