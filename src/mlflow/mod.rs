//! A small client for an MLflow tracking server and model registry, over its
//! REST API (`/api/2.0/mlflow/…`) and its proxied artifact store
//! (`/api/2.0/mlflow-artifacts/…`).
//!
//! It knows nothing about models or training: callers hand it names, numbers
//! and bytes. Credentials come from MLflow's own variables
//! (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`, or
//! `MLFLOW_TRACKING_TOKEN`) or from the URI's user-info; they never appear in
//! an error message.

mod uri;

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};

pub use uri::ModelUri;

/// The run-relative directory a model is logged to; a model version's
/// `source` is this directory of its run.
pub const MODEL_DIR: &str = "model";
/// The artifact file's name inside [`MODEL_DIR`].
pub const MODEL_FILE: &str = "model.json";

/// Attempts per request (the first one included) on connection errors and 5xx.
const ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Most MLflow's `log-batch` takes in one call (its documented limits are
/// 1000 metrics, 100 params, 100 tags).
const BATCH_PARAMS: usize = 100;

/// Why an MLflow call failed. Messages are one line and hold no secret.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The tracking URI is not an `http(s)://` URL.
    #[error("invalid MLflow tracking URI {0:?}: expected http://host:port")]
    InvalidUri(String),
    /// A `models:/` URI that is neither `models:/NAME@ALIAS` nor `models:/NAME/VERSION`.
    #[error("invalid model URI {0:?}: expected models:/NAME@ALIAS or models:/NAME/VERSION")]
    InvalidModelUri(String),
    /// A registry source was configured without a tracking URI.
    #[error("{0} needs an MLflow tracking URI (MLFLOW_TRACKING_URI or model.mlflow_uri)")]
    NoTrackingUri(String),
    /// No answer (connection refused, timeout) after every attempt.
    #[error("MLflow at {server} unreachable after {attempts} attempts: {reason}")]
    Unreachable {
        /// The server, without credentials.
        server: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("MLflow {endpoint} answered {status}: {code}: {message}")]
    Api {
        /// The endpoint called (a path, no query).
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`).
        code: String,
        /// MLflow's message, cut to one short line.
        message: String,
    },
    /// The server answered 2xx with a body this client cannot read.
    #[error("MLflow {endpoint} answered with an unexpected body: {detail}")]
    Garbage {
        /// The endpoint called.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },
    /// A download larger than the caller's cap (`model.max_bytes`), refused
    /// from its declared length or after reading one byte past the cap.
    #[error("MLflow {endpoint} answered with more than {max_bytes} bytes (model.max_bytes)")]
    TooLarge {
        /// The endpoint called.
        endpoint: String,
        /// The cap.
        max_bytes: u64,
    },
    /// An artifact URI this client cannot fetch through the tracking server.
    #[error(
        "artifact URI {0:?} is not served by the tracking server (expected mlflow-artifacts:/…)"
    )]
    UnsupportedArtifactUri(String),
}

impl MlflowError {
    /// True for MLflow's `RESOURCE_DOES_NOT_EXIST`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, MlflowError::Api { code, .. } if code == "RESOURCE_DOES_NOT_EXIST")
    }

    /// True for MLflow's `RESOURCE_ALREADY_EXISTS`.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, MlflowError::Api { code, .. } if code == "RESOURCE_ALREADY_EXISTS")
    }
}

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
}

impl MlflowClient {
    /// A client for `uri` with credentials from the environment (or the
    /// URI's user-info, which is then removed from the URL).
    pub fn new(uri: &str) -> Result<Self, MlflowError> {
        Self::with_auth(uri, Auth::from_env())
    }

    /// A client for `uri` with explicit credentials.
    pub fn with_auth(uri: &str, auth: Auth) -> Result<Self, MlflowError> {
        let invalid = || MlflowError::InvalidUri(redact_userinfo(uri));
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
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|_| invalid())?;
        Ok(Self { base, http, auth })
    }

    /// The server's base URL, without credentials.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server())
    }

    /// Sends a request, retrying connection errors and 5xx with back-off;
    /// returns the body of a 2xx answer.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Body>,
    ) -> Result<Vec<u8>, MlflowError> {
        self.send_capped(method, path, query, body, u64::MAX).await
    }

    /// [`Self::send`], refusing a 2xx body longer than `max_bytes`.
    async fn send_capped(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Body>,
        max_bytes: u64,
    ) -> Result<Vec<u8>, MlflowError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let mut req = self
                .http
                .request(method.clone(), self.url(path))
                .query(query);
            req = match &self.auth {
                Auth::None => req,
                Auth::Basic { username, password } => req.basic_auth(username, Some(password)),
                Auth::Bearer(token) => req.bearer_auth(token),
            };
            req = match &body {
                None => req,
                Some(Body::Json(v)) => req.json(v),
                Some(Body::Bytes(b)) => req
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(b.clone()),
            };
            let retryable = match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    return read_capped(resp, path, max_bytes).await;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    let err = api_error(path, status, &text);
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        return Err(err);
                    }
                    err
                }
                Err(e) => MlflowError::Unreachable {
                    server: self.server().to_owned(),
                    attempts: attempt,
                    reason: one_line(&source_chain(&e.without_url())),
                },
            };
            if attempt >= ATTEMPTS {
                return Err(retryable);
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
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
            .send(method, &path, query, body.map(Body::Json))
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
        self.send(Method::PUT, &path, &[], Some(Body::Bytes(bytes)))
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
        self.send_capped(Method::GET, &path, &[], None, max_bytes)
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

/// A request body.
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
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
    match v.pointer(pointer) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(MlflowError::Garbage {
            endpoint: endpoint.to_owned(),
            detail: format!("no {pointer}"),
        }),
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
    serde_json::from_value(v["model_version"].take()).map_err(|e| MlflowError::Garbage {
        endpoint: endpoint.to_owned(),
        detail: one_line(&e.to_string()),
    })
}

/// The error an MLflow error answer describes.
fn api_error(endpoint: &str, status: StatusCode, body: &str) -> MlflowError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let get = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    MlflowError::Api {
        endpoint: endpoint.to_owned(),
        status: status.as_u16(),
        code: get("error_code").unwrap_or_else(|| "UNKNOWN".to_owned()),
        message: one_line(
            &get("message")
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned()),
        ),
    }
}

/// The proxied-artifact path for an `mlflow-artifacts:` URI, with or without
/// an authority (`mlflow-artifacts:/1/…`, `mlflow-artifacts://host:port/1/…`).
fn proxied_path(uri: &str) -> Result<String, MlflowError> {
    let rest = uri
        .strip_prefix("mlflow-artifacts:")
        .ok_or_else(|| MlflowError::UnsupportedArtifactUri(uri.to_owned()))?;
    let rest = match rest.strip_prefix("//") {
        Some(with_host) => with_host.find('/').map_or("", |i| &with_host[i..]),
        None => rest,
    };
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() || rest.split('/').any(|s| s == "..") {
        return Err(MlflowError::UnsupportedArtifactUri(uri.to_owned()));
    }
    Ok(format!("/api/2.0/mlflow-artifacts/artifacts/{rest}"))
}

/// An error and its causes on one line (reqwest's top level says only
/// "error sending request").
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// First line, at most 200 characters.
fn one_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}

/// `uri` with any `user:password@` removed, for messages.
fn redact_userinfo(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}<redacted>@{}", &uri[..s + 3], &uri[at + 1..]),
        _ => uri.to_owned(),
    }
}

/// The body of `resp`, but never more than `max_bytes`: a declared length
/// past the cap is refused before reading, and an undeclared (chunked) one
/// as soon as one byte past the cap has arrived. The connection is dropped
/// with the rest unread.
async fn read_capped(
    mut resp: reqwest::Response,
    endpoint: &str,
    max_bytes: u64,
) -> Result<Vec<u8>, MlflowError> {
    let too_large = || MlflowError::TooLarge {
        endpoint: endpoint.to_owned(),
        max_bytes,
    };
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > max_bytes) {
        return Err(too_large());
    }
    // Reserve what the server declared (already known to be within the cap).
    let mut body = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > max_bytes {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(MlflowError::Garbage {
                    endpoint: endpoint.to_owned(),
                    detail: e.without_url().to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_paths_with_and_without_authority() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts/model/model.json").unwrap(),
            "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.json"
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://h:5000/1/abc/artifacts").unwrap(),
            "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts"
        );
        assert!(proxied_path("s3://bucket/x").is_err());
        assert!(proxied_path("mlflow-artifacts:/1/../../etc").is_err());
    }

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
    fn api_errors_keep_mlflow_code_and_one_line() {
        let e = api_error(
            "/x",
            StatusCode::NOT_FOUND,
            r#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"no such\nthing"}"#,
        );
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "MLflow /x answered 404: RESOURCE_DOES_NOT_EXIST: no such"
        );
        let garbage = api_error("/x", StatusCode::BAD_GATEWAY, "<html>");
        assert!(garbage.to_string().contains("502: UNKNOWN: Bad Gateway"));
    }

    /// A fake tracking server: answers `get-by-name` with `statuses` in
    /// turn (then 200), recording each request's Authorization header.
    async fn fake(statuses: Vec<u16>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::http::HeaderMap;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/api/2.0/mlflow/experiments/get-by-name",
            axum::routing::get(move |headers: HeaderMap| {
                let log = log.clone();
                let statuses = statuses.clone();
                async move {
                    let mut log = log.lock().unwrap();
                    let auth = headers
                        .get("authorization")
                        .map_or("", |v| v.to_str().unwrap())
                        .to_owned();
                    let status = statuses.get(log.len()).copied().unwrap_or(200);
                    log.push(auth);
                    let body = if status == 200 {
                        r#"{"experiment":{"experiment_id":"7"}}"#
                    } else {
                        r#"{"error_code":"INTERNAL_ERROR","message":"db locked"}"#
                    };
                    (StatusCode::from_u16(status).unwrap(), body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_succeed_with_credentials() {
        let (url, seen) = fake(vec![503, 500]).await;
        let client = MlflowClient::with_auth(&url, Auth::Bearer("tok".into())).unwrap();
        assert_eq!(client.experiment_id("x").await.unwrap(), "7");
        assert_eq!(*seen.lock().unwrap(), vec!["Bearer tok"; 3]);
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let (url, seen) = fake(vec![500; 10]).await;
        let basic = Auth::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        let e = MlflowClient::with_auth(&url, basic)
            .unwrap()
            .experiment_id("x")
            .await
            .unwrap_err();
        assert!(matches!(e, MlflowError::Api { status: 500, .. }), "{e}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), ATTEMPTS as usize);
        assert!(seen.iter().all(|a| a == "Basic dTpw"));
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (url, seen) = fake(vec![403]).await;
        let client = MlflowClient::with_auth(&url, Auth::None).unwrap();
        let e = client.experiment_id("x").await.unwrap_err();
        assert!(matches!(e, MlflowError::Api { status: 403, .. }), "{e}");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_one_line_without_secrets() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client =
            MlflowClient::with_auth(&format!("http://u:hunter2@127.0.0.1:{port}"), Auth::None)
                .unwrap();
        let e = client.experiment_id("x").await.unwrap_err().to_string();
        assert!(e.contains("unreachable after 4 attempts"), "{e}");
        assert!(!e.contains("hunter2") && !e.contains('\n'), "{e}");
    }

    /// An artifact store on a raw socket answering every GET with `head`
    /// and then `body` chunks (chunked encoding) until the client hangs up;
    /// counts the body bytes it managed to send.
    async fn artifact_server(
        head: &'static str,
        chunks: Option<usize>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sent = std::sync::Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counter = sent.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = conn.read(&mut request).await;
                    conn.write_all(head.as_bytes()).await?;
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut n = 0;
                    // `None`: forever (until the client hangs up).
                    while chunks.map_or(true, |c| n < c) {
                        conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                            .await?;
                        conn.write_all(&chunk).await?;
                        conn.write_all(b"\r\n").await?;
                        counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                        n += 1;
                    }
                    if chunks.is_some() {
                        conn.write_all(b"0\r\n\r\n").await?;
                    } else {
                        // Declared a length and sends nothing: hold on.
                        tokio::time::sleep(Duration::from_secs(120)).await;
                    }
                    Ok::<_, std::io::Error>(())
                });
            }
        });
        (format!("http://{addr}"), sent)
    }

    fn version() -> ModelVersion {
        ModelVersion {
            name: "spam".into(),
            version: "3".into(),
            source: "mlflow-artifacts:/1/abc/artifacts/model".into(),
            run_id: "abc".into(),
        }
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";

    #[tokio::test]
    async fn an_endless_artifact_is_refused_at_the_cap_without_reading_it() {
        let (url, sent) = artifact_server(CHUNKED, None).await;
        let client = MlflowClient::with_auth(&url, Auth::None).unwrap();
        let e = client
            .download_model_file(&version(), 1_000_000)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                MlflowError::TooLarge {
                    max_bytes: 1_000_000,
                    ..
                }
            ),
            "{e}"
        );
        // Not retried: one refusal, and the download stopped near the cap
        // (what sits in socket buffers aside), not at the server's end.
        let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
        assert!(sent < 64_000_000, "{sent} bytes sent");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_before_the_body() {
        // The server declares 2 GB and then sends nothing: only a refusal
        // from the header can answer.
        let (url, _) = artifact_server(
            "HTTP/1.1 200 OK\r\ncontent-length: 2000000000\r\n\r\n",
            Some(0),
        )
        .await;
        let client = MlflowClient::with_auth(&url, Auth::None).unwrap();
        let e = tokio::time::timeout(
            Duration::from_secs(30),
            client.download_model_file(&version(), 1_000_000),
        )
        .await
        .expect("refused without waiting for the body")
        .unwrap_err();
        assert!(matches!(e, MlflowError::TooLarge { .. }), "{e}");
    }

    #[tokio::test]
    async fn an_artifact_of_exactly_the_cap_downloads() {
        let (url, _) = artifact_server(CHUNKED, Some(2)).await;
        let client = MlflowClient::with_auth(&url, Auth::None).unwrap();
        let at_cap = client
            .download_model_file(&version(), 2 * 64 * 1024)
            .await
            .unwrap();
        assert_eq!(at_cap.len(), 2 * 64 * 1024);
        let over = client
            .download_model_file(&version(), 2 * 64 * 1024 - 1)
            .await
            .unwrap_err();
        assert!(matches!(over, MlflowError::TooLarge { .. }), "{over}");
    }
}
