//! The model registry: registered models, their versions and aliases, and
//! the model file a version names.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::paths::proxied_path;
use super::transport::{one_line, Expect};
use super::{garbage, printable, MlflowClient, MlflowError, ModelUri, MODEL_FILE};

/// A registered model version.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelVersion {
    /// Registered model name.
    pub name: String,
    /// Version number (a string in MLflow's API).
    pub version: String,
    /// Where the version's files are (the run's artifact directory).
    #[serde(default)]
    pub source: String,
    /// The run that produced it.
    #[serde(default)]
    pub run_id: String,
}

impl MlflowClient {
    /// Downloads the file at an `mlflow-artifacts:` URI, refusing it past
    /// `max_bytes` ([`MlflowError::TooLarge`]) without reading the rest.
    pub async fn download_artifact(
        &self,
        uri: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, MlflowError> {
        let path = proxied_path(uri)?;
        self.send(Method::GET, &path, &[], None, Expect::File(max_bytes))
            .await
    }

    /// Downloads a model version's artifact file (`<source>/model.json`),
    /// refusing it past `max_bytes` (the server's `model.max_bytes`, as for
    /// a file source).
    #[tracing::instrument(level = "debug", name = "registry_download", skip_all)]
    pub async fn download_model_file(
        &self,
        mv: &ModelVersion,
        max_bytes: u64,
    ) -> Result<Vec<u8>, MlflowError> {
        let uri = format!("{}/{MODEL_FILE}", mv.source.trim_end_matches('/'));
        self.download_artifact(&uri, max_bytes).await
    }

    /// Creates the registered model `name` unless it exists.
    pub async fn ensure_registered_model(&self, name: &str) -> Result<(), MlflowError> {
        match self
            .post("registered-models/create", json!({ "name": name }))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Registers a new version of `name` from `source` (produced by `run_id`).
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let v = self
            .post(
                "model-versions/create",
                json!({ "name": name, "source": source, "run_id": run_id }),
            )
            .await?;
        model_version(v, "model-versions/create")
    }

    /// Version `version` of `name`.
    pub async fn get_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let v = self
            .get(
                "model-versions/get",
                &[("name", name), ("version", version)],
            )
            .await?;
        model_version(v, "model-versions/get")
    }

    /// The version `alias` of `name` points at.
    pub async fn get_alias(&self, name: &str, alias: &str) -> Result<ModelVersion, MlflowError> {
        let v = self
            .get(
                "registered-models/alias",
                &[("name", name), ("alias", alias)],
            )
            .await?;
        model_version(v, "registered-models/alias")
    }

    /// Points `alias` of `name` at `version`.
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        self.post(
            "registered-models/alias",
            json!({ "name": name, "alias": alias, "version": version }),
        )
        .await
        .map(drop)
    }

    /// The version a `models:/` URI names now.
    #[tracing::instrument(level = "debug", name = "registry_resolve", skip_all)]
    pub async fn resolve(&self, uri: &ModelUri) -> Result<ModelVersion, MlflowError> {
        match uri {
            ModelUri::Alias { name, alias } => self.get_alias(name, alias).await,
            ModelUri::Version { name, version } => self.get_model_version(name, version).await,
        }
    }
}

/// Resolves `uri` through `registry` and downloads the model file of the
/// version it names now, refusing one over `max_bytes` (`model.max_bytes`):
/// how the server and `nbserve retrain` read a `models:/` source.
pub async fn fetch_model(
    registry: Option<&MlflowClient>,
    uri: &ModelUri,
    max_bytes: u64,
) -> Result<(ModelVersion, Vec<u8>), MlflowError> {
    let client = registry.ok_or_else(|| MlflowError::NoTrackingUri(uri.to_string()))?;
    let version = client.resolve(uri).await?;
    let bytes = client.download_model_file(&version, max_bytes).await?;
    Ok((version, bytes))
}

pub(super) fn model_version(mut v: Value, endpoint: &str) -> Result<ModelVersion, MlflowError> {
    let mv: ModelVersion = serde_json::from_value(v["model_version"].take())
        .map_err(|e| garbage(endpoint, one_line(&e.to_string())))?;
    Ok(ModelVersion {
        name: printable(endpoint, "model_version.name", mv.name)?,
        version: printable(endpoint, "model_version.version", mv.version)?,
        source: printable(endpoint, "model_version.source", mv.source)?,
        run_id: printable(endpoint, "model_version.run_id", mv.run_id)?,
    })
}
