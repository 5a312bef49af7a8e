//! A small client for an MLflow tracking server and model registry, over its
//! REST API (`/api/2.0/mlflow/…`) and its proxied artifact store
//! (`/api/2.0/mlflow-artifacts/…`).
//!
//! It knows nothing about models or training: callers hand it names, numbers
//! and bytes. Credentials come from MLflow's own variables
//! (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`, or
//! `MLFLOW_TRACKING_TOKEN`) or from the URI's user-info; they never appear in
//! an error message.
//!
//! Everything the server sends is bounded (see [`transport`]): answers are
//! capped, waits have deadlines, and strings it returns are checked or
//! escaped before anyone logs them.

mod error;
mod paths;
mod transport;
mod uri;

use std::time::Duration;

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{json, Value};

pub use error::MlflowError;
use paths::proxied_path;
use transport::{one_line, Body, Expect};
pub use transport::{Deadlines, Waiting, MAX_ANSWER_BYTES};
pub use uri::{redact_url, ModelUri};

/// The run-relative directory a model is logged to; a model version's
/// `source` is this directory of its run.
pub const MODEL_DIR: &str = "model";
/// The artifact file's name inside [`MODEL_DIR`].
pub const MODEL_FILE: &str = "model.json";

/// Most MLflow's `log-batch` takes in one call (its documented limits are
/// 1000 metrics, 100 params, 100 tags).
const BATCH_PARAMS: usize = 100;

/// How requests authenticate.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// HTTP basic (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// Bearer token (`MLFLOW_TRACKING_TOKEN`).
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Basic { .. } => "Basic(<redacted>)",
            Auth::Bearer(_) => "Bearer(<redacted>)",
        })
    }
}

impl Auth {
    /// From MLflow's environment variables; a token wins over a user name.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(token) = var("MLFLOW_TRACKING_TOKEN") {
            Auth::Bearer(token)
        } else if let Some(username) = var("MLFLOW_TRACKING_USERNAME") {
            Auth::Basic {
                username,
                password: var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default(),
            }
        } else {
            Auth::None
        }
    }
}

/// A run as the server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// The run id.
    pub run_id: String,
    /// The experiment it belongs to.
    pub experiment_id: String,
    /// Where its artifacts live, e.g. `mlflow-artifacts:/1/<run>/artifacts`.
    pub artifact_uri: String,
}

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

/// Run states `runs/update` accepts at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Completed.
    Finished,
    /// The command failed after the run began.
    Failed,
}

/// A client bound to one tracking server.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    base: Url,
    http: reqwest::Client,
    auth: Auth,
    deadlines: Deadlines,
}

impl MlflowClient {
    /// A client for `uri` with credentials from the environment (or the
    /// URI's user-info, which is then removed from the URL).
    pub fn new(uri: &str) -> Result<Self, MlflowError> {
        Self::with_auth(uri, Auth::from_env())
    }

    /// A client for `uri` with explicit credentials.
    pub fn with_auth(uri: &str, auth: Auth) -> Result<Self, MlflowError> {
        let invalid = || MlflowError::InvalidUri(redact_url(uri));
        let mut base = Url::parse(uri.trim_end_matches('/')).map_err(|_| invalid())?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(invalid());
        }
        let mut auth = auth;
        if !base.username().is_empty() && matches!(auth, Auth::None) {
            auth = Auth::Basic {
                username: base.username().to_owned(),
                password: base.password().unwrap_or_default().to_owned(),
            };
        }
        let _ = base.set_username("");
        let _ = base.set_password(None);
        // No whole-request timeout here: each call's waits are bounded by
        // its `Deadlines`, which differ between a poll and a download.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|_| invalid())?;
        Ok(Self {
            base,
            http,
            auth,
            deadlines: Deadlines::COMMAND,
        })
    }

    /// The same client (sharing its connections) with other deadlines, e.g.
    /// [`Deadlines::POLL`] for source polling.
    pub fn with_deadlines(&self, deadlines: Deadlines) -> Self {
        Self {
            deadlines,
            ..self.clone()
        }
    }

    /// The deadlines its calls use.
    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// The server's base URL, without credentials.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    async fn call_json(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value, MlflowError> {
        let path = format!("/api/2.0/mlflow/{endpoint}");
        let bytes = self
            .send(method, &path, query, body.map(Body::Json), Expect::Answer)
            .await?;
        if bytes.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&bytes).map_err(|e| MlflowError::Garbage {
            endpoint: path,
            detail: one_line(&e.to_string()),
        })
    }

    async fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        self.call_json(Method::GET, endpoint, query, None).await
    }

    async fn post(&self, endpoint: &str, body: Value) -> Result<Value, MlflowError> {
        self.call_json(Method::POST, endpoint, &[], Some(body))
            .await
    }

    /// The id of the experiment called `name`, created when missing.
    pub async fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        match self
            .get("experiments/get-by-name", &[("experiment_name", name)])
            .await
        {
            Ok(v) => field_str(&v, "/experiment/experiment_id", "experiments/get-by-name"),
            Err(e) if e.is_not_found() => {
                let v = self
                    .post("experiments/create", json!({ "name": name }))
                    .await;
                match v {
                    Ok(v) => field_str(&v, "/experiment_id", "experiments/create"),
                    // Created by someone else in between.
                    Err(e) if e.is_already_exists() => Box::pin(self.experiment_id(name)).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Starts a run in `experiment_id` with `tags`.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunInfo, MlflowError> {
        let v = self
            .post(
                "runs/create",
                json!({
                    "experiment_id": experiment_id,
                    "run_name": run_name,
                    "start_time": now_millis(),
                    "tags": key_values(tags),
                }),
            )
            .await?;
        run_info(&v, "runs/create")
    }

    /// The run's info, params, metrics and tags as MLflow returns them.
    pub async fn get_run(&self, run_id: &str) -> Result<Value, MlflowError> {
        self.get("runs/get", &[("run_id", run_id)]).await
    }

    /// Ends a run.
    pub async fn end_run(&self, run_id: &str, status: RunStatus) -> Result<(), MlflowError> {
        let status = match status {
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
        };
        self.post(
            "runs/update",
            json!({ "run_id": run_id, "status": status, "end_time": now_millis() }),
        )
        .await
        .map(drop)
    }

    /// Logs params, metrics (step 0, now) and tags, in as many batches as
    /// MLflow's limits need.
    pub async fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[(String, f64)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        let timestamp = now_millis();
        let metrics: Vec<Value> = metrics
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v, "timestamp": timestamp, "step": 0 }))
            .collect();
        let mut first = true;
        for (i, params) in params.chunks(BATCH_PARAMS).enumerate() {
            let body = json!({
                "run_id": run_id,
                "params": key_values(params),
                // Metrics and tags fit their limits; sent once with the first batch.
                "metrics": if i == 0 { metrics.clone() } else { Vec::new() },
                "tags": if i == 0 { key_values(tags) } else { Vec::new() },
            });
            self.post("runs/log-batch", body).await?;
            first = false;
        }
        if first {
            let body = json!({ "run_id": run_id, "metrics": metrics, "tags": key_values(tags) });
            self.post("runs/log-batch", body).await?;
        }
        Ok(())
    }

    /// Sets one tag on a run.
    pub async fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        self.post(
            "runs/set-tag",
            json!({ "run_id": run_id, "key": key, "value": value }),
        )
        .await
        .map(drop)
    }

    /// Uploads `bytes` as `<run's artifact dir>/<rel_path>` through the
    /// server's proxied artifact store; returns the file's artifact URI.
    pub async fn upload_artifact(
        &self,
        run: &RunInfo,
        rel_path: &str,
        bytes: Vec<u8>,
    ) -> Result<String, MlflowError> {
        let uri = format!("{}/{rel_path}", run.artifact_uri.trim_end_matches('/'));
        let path = proxied_path(&uri)?;
        let body = Some(Body::Bytes(bytes));
        self.send(Method::PUT, &path, &[], body, Expect::Answer)
            .await?;
        Ok(uri)
    }

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

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn key_values(pairs: &[(String, String)]) -> Vec<Value> {
    pairs
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect()
}

fn field_str(v: &Value, pointer: &str, endpoint: &str) -> Result<String, MlflowError> {
    let s = match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(garbage(endpoint, format!("no {pointer}"))),
    };
    printable(endpoint, pointer, s)
}

fn garbage(endpoint: &str, detail: String) -> MlflowError {
    MlflowError::Garbage {
        endpoint: endpoint.to_owned(),
        detail,
    }
}

/// `s` when it holds no control character: names, versions, ids and
/// artifact URIs are printed and logged, and MLflow never puts one in them,
/// so a server that does is answering garbage (and may be forging logs).
fn printable(endpoint: &str, field: &str, s: String) -> Result<String, MlflowError> {
    match s.chars().any(char::is_control) {
        false => Ok(s),
        true => Err(garbage(
            endpoint,
            format!("{field} holds a control character"),
        )),
    }
}

fn run_info(v: &Value, endpoint: &str) -> Result<RunInfo, MlflowError> {
    Ok(RunInfo {
        run_id: field_str(v, "/run/info/run_id", endpoint)?,
        experiment_id: field_str(v, "/run/info/experiment_id", endpoint)?,
        artifact_uri: field_str(v, "/run/info/artifact_uri", endpoint)?,
    })
}

fn model_version(mut v: Value, endpoint: &str) -> Result<ModelVersion, MlflowError> {
    let mv: ModelVersion = serde_json::from_value(v["model_version"].take())
        .map_err(|e| garbage(endpoint, one_line(&e.to_string())))?;
    Ok(ModelVersion {
        name: printable(endpoint, "model_version.name", mv.name)?,
        version: printable(endpoint, "model_version.version", mv.version)?,
        source: printable(endpoint, "model_version.source", mv.source)?,
        run_id: printable(endpoint, "model_version.run_id", mv.run_id)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_uri_become_basic_auth_and_leave_the_url() {
        let c = MlflowClient::with_auth("http://u:secret@127.0.0.1:5000/", Auth::None).unwrap();
        assert_eq!(c.server(), "http://127.0.0.1:5000");
        assert!(matches!(c.auth, Auth::Basic { ref password, .. } if password == "secret"));
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn invalid_uris_are_refused_without_their_secret() {
        let e = MlflowClient::with_auth("ftp://u:secret@h/", Auth::None).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(MlflowClient::with_auth("not a url", Auth::None).is_err());
    }

    #[test]
    fn model_versions_with_control_characters_are_garbage() {
        let ok = json!({"model_version": {"name": "spam", "version": "3", "source": "s", "run_id": "r"}});
        assert_eq!(model_version(ok, "x").unwrap().version, "3");
        for field in ["name", "version", "source", "run_id"] {
            let mut v = json!({"model_version": {"name": "spam", "version": "3", "source": "s", "run_id": "r"}});
            v["model_version"][field] = json!("3\u{1b}[31m\nforged");
            let e = model_version(v, "registered-models/alias").unwrap_err();
            assert!(matches!(e, MlflowError::Garbage { .. }), "{e}");
            assert!(!e.to_string().chars().any(char::is_control), "{e}");
        }
        let run =
            json!({"run": {"info": {"run_id": "a\rb", "experiment_id": "1", "artifact_uri": "u"}}});
        assert!(run_info(&run, "runs/create").is_err());
    }
}
