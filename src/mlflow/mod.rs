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
mod registry;
mod tls;
mod tracking;
mod transport;
mod uri;

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{json, Value};

pub use error::MlflowError;
pub use registry::{fetch_model, ModelVersion};
pub use tls::CA_BUNDLE_VAR;
pub use tracking::{RunInfo, RunStatus};
use transport::{one_line, Body, Expect};
pub use transport::{Deadlines, Waiting, MAX_ANSWER_BYTES};
pub use uri::{redact_url, ModelUri};

/// The run-relative directory a model is logged to; a model version's
/// `source` is this directory of its run.
pub const MODEL_DIR: &str = "model";
/// The artifact file's name inside [`MODEL_DIR`].
pub const MODEL_FILE: &str = "model.json";

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
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if base.scheme() == "https" {
            for ca in tls::extra_roots()? {
                http = http.add_root_certificate(ca);
            }
        }
        let http = http.build().map_err(|_| invalid())?;
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

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests {
    use super::registry::model_version;
    use super::tracking::run_info;
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
