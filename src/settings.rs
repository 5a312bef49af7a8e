//! Typed, layered settings: built-in defaults → optional file → `NBSERVE__*`
//! environment variables (`__` between levels, e.g. `NBSERVE__SERVER__PORT`)
//! → a command's flags (`serve --port`), each layer beating the ones before.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mlflow::{MlflowClient, MlflowError};

mod access;
mod choice;
mod error;
mod learning;
mod models;
mod one_model;
mod rules;
mod source;
mod tokens;

pub use access::{AdminSettings, FeedbackSettings, LogFsync};
pub use choice::Choice;
pub use error::SettingsError;
pub use learning::LearningSettings;
pub use models::{
    list_names, source_name, valid_model_name, ModelSpec, ModelsSettings, NamedModel,
    RepositoryPlan, MAX_NAME_LEN,
};
pub use one_model::{ModelChoiceError, STORES_DIR};
pub use rules::{rule, variables, Variable};
pub use source::ModelSource;

/// All settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP server.
    pub server: ServerSettings,
    /// Model to serve (the default model, or the repository).
    pub model: ModelSettings,
    /// More models, and the bounds across all of them.
    pub models: ModelsSettings,
    /// Deployment gate.
    pub gate: GateSettings,
    /// Logging.
    pub log: LogSettings,
    /// Admin endpoints.
    pub admin: AdminSettings,
    /// Prediction memory and label feedback.
    pub feedback: FeedbackSettings,
    /// Learning in place on a challenger (`POST /learn`, `POST /forget`).
    #[serde(default)]
    pub learning: LearningSettings,
    /// OpenTelemetry traces.
    pub trace: TraceSettings,
}

/// OpenTelemetry trace settings. Where spans go, how many are sampled and
/// what the resource says come from the standard `OTEL_*` variables (the
/// Tracing section of docs/monitoring.md); this only switches export on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceSettings {
    /// Export spans over OTLP/HTTP-protobuf, configured by the standard `OTEL_*` variables (docs/monitoring.md, Tracing); `OTEL_SDK_DISABLED=true` keeps it off.
    pub enabled: bool,
}

/// HTTP server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind.
    pub host: String,
    /// Port to bind (0 = any free port).
    pub port: u16,
    /// Whole-request timeout, in milliseconds (408 `request_timeout`).
    pub request_timeout_ms: u64,
    /// Time a new connection has to send its first byte, and then to finish
    /// the request line and headers, in milliseconds; also the longest an idle
    /// keep-alive connection is kept. The connection is closed without an answer.
    pub header_read_timeout_ms: u64,
    /// Largest accepted request body (413 `payload_too_large`).
    pub body_limit_bytes: usize,
    /// Largest accepted text, in bytes of UTF-8 (422 `text_too_long`).
    pub max_text_bytes: usize,
    /// Most texts in one batch (422 `batch_too_large`), also for V2 infer and `POST /examples`.
    pub max_batch_size: usize,
    /// API requests in progress at once; beyond it requests are shed with
    /// 503 `overloaded` and `Retry-After`.
    pub max_concurrency: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// Request bodies admitted at once, in bytes, reserved before they are
    /// read: the declared length, or `body_limit_bytes` for a chunked body.
    /// Beyond it requests are shed with 503 `overloaded` and `Retry-After`
    /// (`nbserve_body_budget_shed_total`).
    pub max_inflight_body_bytes: usize,
    /// Open connections; beyond it a new connection is closed on accept
    /// (`nbserve_connections_refused_total`).
    pub max_connections: usize,
    /// How long a response write may make no progress (a client that does
    /// not read) before the connection is reset, in milliseconds
    /// (`nbserve_connection_write_timeouts_total`).
    pub write_timeout_ms: u64,
    /// After SIGTERM, how long readiness reports 503 while the listener
    /// still accepts and serves, before the drain starts: time for a load
    /// balancer (Kubernetes endpoints) to stop sending new connections.
    pub drain_delay_secs: u64,
    /// Serve the interactive API page at `/docs` (its assets are compiled
    /// in; nothing is fetched from elsewhere). `/openapi.json` stays either way.
    pub docs_ui: bool,
}

/// Which model to serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// The artifact loaded at start and on reload: a file, or an MLflow
    /// registry URI (`models:/NAME@ALIAS`, `models:/NAME/VERSION`); any other
    /// `models:/` text is refused when the settings load (exit 3).
    #[schemars(with = "String")]
    pub path: ModelSource,
    /// `POST /admin/reload` may only name files inside this directory.
    pub dir: PathBuf,
    /// Largest model file read, in bytes; a larger one is refused unread
    /// (start-up fails, a reload answers 422). A load takes 6-10 times its
    /// file, so no larger file fits `gate.max_memory_bytes`.
    pub max_bytes: u64,
    /// MLflow tracking server for `models:/` paths (default:
    /// `MLFLOW_TRACKING_URI`, filled in when the settings load).
    pub mlflow_uri: Option<String>,
    /// Check the model's source this often (the file's content, or the
    /// version the alias points at) and reload through the gate when it
    /// changed; 0 = never.
    pub poll_interval_secs: u64,
    /// Serve every `*.json` artifact in this directory, each named by its
    /// file stem (instead of `model.path` alone).
    pub repository: Option<PathBuf>,
    /// The model `/predict` serves (default: `model.path`'s file stem, or
    /// the registered name of a `models:/` path).
    pub default: Option<String>,
}

impl ModelSettings {
    /// The client `model.path` is read through when it names the registry:
    /// built from `model.mlflow_uri` (itself `MLFLOW_TRACKING_URI` when
    /// unset); `None` for a file, or when no server is configured (reading
    /// the registry then fails naming both settings). [`Settings::load`]
    /// has checked the URI already.
    pub fn registry(&self) -> Result<Option<MlflowClient>, MlflowError> {
        let wanted = matches!(self.path, ModelSource::Registry(_));
        source::registry_client(wanted, self.mlflow_uri.as_deref())
    }
}

impl Settings {
    /// The registry client the server reads `models:/` sources through:
    /// like [`ModelSettings::registry`], wanted when `model.path` or any
    /// `[models.NAME]` source names the registry.
    pub fn registry(&self) -> Result<Option<MlflowClient>, MlflowError> {
        let wanted =
            matches!(self.model.path, ModelSource::Registry(_)) || self.models.any_registry();
        source::registry_client(wanted, self.model.mlflow_uri.as_deref())
    }
}

/// Deployment-gate settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSettings {
    /// Minimum F1 macro a model needs to be served, at start-up, on reload
    /// and by `check`, `promote`, `retrain` and `rollback`.
    pub min_f1_macro: f64,
    /// Re-evaluate on this labelled CSV instead of trusting the F1 stored in the artifact.
    pub holdout_path: Option<PathBuf>,
    /// Largest estimated memory a model may need to load (its file, parsed
    /// terms and counts, vocabulary and scoring tables), in bytes, estimated
    /// before it is parsed; a larger model is refused. A reload holds the old
    /// model while the new one loads, so a replica needs its serving memory
    /// plus about twice this.
    pub max_memory_bytes: u64,
}

impl GateSettings {
    /// Whether `min_f1_macro` can be a minimum F1 macro: a number within
    /// [0, 1] (the rule of the setting and of every flag that overrides it).
    pub fn valid_minimum(min_f1_macro: f64) -> bool {
        min_f1_macro.is_finite() && (0.0..=1.0).contains(&min_f1_macro)
    }
}

/// Log output format (read in any case, see [`Choice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `nbserve=debug` (an access log); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings {
                host: "0.0.0.0".into(),
                port: 8080,
                request_timeout_ms: 10_000,
                header_read_timeout_ms: 10_000,
                body_limit_bytes: 2 * 1024 * 1024,
                max_text_bytes: 1_000_000,
                max_batch_size: 1000,
                max_concurrency: 1024,
                shutdown_timeout_secs: 30,
                max_inflight_body_bytes: 64 * 1024 * 1024,
                max_connections: 10_000,
                write_timeout_ms: 10_000,
                drain_delay_secs: 0,
                docs_ui: true,
            },
            model: ModelSettings {
                path: ModelSource::File("models/spam-nb.json".into()),
                dir: "models".into(),
                // A load takes several times its file (docs/performance.md),
                // so no larger file could load within gate.max_memory_bytes.
                max_bytes: 16 * 1024 * 1024,
                mlflow_uri: None,
                poll_interval_secs: 0,
                repository: None,
                default: None,
            },
            models: ModelsSettings::default(),
            gate: GateSettings {
                min_f1_macro: 0.90,
                holdout_path: None,
                max_memory_bytes: 64 * 1024 * 1024,
            },
            log: LogSettings {
                format: LogFormat::Pretty,
                level: "info".into(),
            },
            admin: AdminSettings {
                token: None,
                token_file: None,
            },
            feedback: FeedbackSettings {
                capacity: 100_000,
                max_age_secs: 3600,
                window: 1000,
                log_path: None,
                log_fsync: LogFsync::Interval,
                keep_text: false,
                text_budget_bytes: 64 * 1024 * 1024,
                accept_examples: false,
                token: None,
                token_file: None,
            },
            learning: LearningSettings::default(),
            trace: TraceSettings { enabled: false },
        }
    }
}

impl Settings {
    /// Loads defaults, then `file` (YAML or TOML by extension) if given, then
    /// the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Settings::load`], then `overrides` on top of the environment:
    /// (key, value) pairs such as `("server.port", "9000")`, read like any
    /// other source (a command's flags, which beat everything else).
    pub fn load_overridden(
        file: Option<&Path>,
        overrides: &[(&str, String)],
    ) -> Result<Self, SettingsError> {
        Self::load_layers(file, std::env::vars(), overrides)
    }

    /// Like [`Settings::load`] with an explicit environment (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        Self::load_layers(file, env, &[])
    }

    /// Defaults, `file`, `env`'s `NBSERVE__*` variables, then `overrides`.
    fn load_layers(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(&str, String)],
    ) -> Result<Self, SettingsError> {
        let defaults = config::Config::try_from(&Settings::default())?;
        let mut builder = config::Config::builder().add_source(defaults);
        if let Some(f) = file {
            builder = builder.add_source(config::File::from(f).required(true));
        }
        let mut tracking_uri = None;
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, v)| {
                if k == "MLFLOW_TRACKING_URI" {
                    tracking_uri = Some(v.clone());
                }
                k.starts_with("NBSERVE__")
            })
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("NBSERVE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        for (key, value) in overrides {
            builder = builder.set_override(*key, value.as_str())?;
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        // MLflow's own variable, the one fallback for `model.mlflow_uri`.
        let from_env = settings.model.mlflow_uri.is_none() && tracking_uri.is_some();
        if from_env {
            settings.model.mlflow_uri = tracking_uri;
        }
        settings.registry().map_err(|e| match e {
            MlflowError::CaBundle { path, reason } => SettingsError::Invalid {
                key: crate::mlflow::CA_BUNDLE_VAR,
                message: format!("{path}: {reason}"),
            },
            e => SettingsError::Invalid {
                key: if from_env {
                    "MLFLOW_TRACKING_URI"
                } else {
                    "model.mlflow_uri"
                },
                message: e.to_string(),
            },
        })?;
        settings.admin.read_token_file()?;
        settings.feedback.read_token_file()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key, message: &str| {
            Err(SettingsError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if !GateSettings::valid_minimum(self.gate.min_f1_macro) {
            return invalid("gate.min_f1_macro", "must be a number within [0, 1]");
        }
        if self.server.body_limit_bytes == 0 {
            return invalid("server.body_limit_bytes", "must be > 0");
        }
        if self.server.max_text_bytes == 0 {
            return invalid("server.max_text_bytes", "must be > 0");
        }
        if self.server.max_batch_size == 0 {
            return invalid("server.max_batch_size", "must be > 0");
        }
        if self.server.max_concurrency == 0 {
            return invalid("server.max_concurrency", "must be > 0");
        }
        if self.server.max_inflight_body_bytes < self.server.body_limit_bytes {
            return invalid(
                "server.max_inflight_body_bytes",
                "must be at least server.body_limit_bytes",
            );
        }
        if self.server.max_connections == 0 {
            return invalid("server.max_connections", "must be > 0");
        }
        if self.server.write_timeout_ms == 0 {
            return invalid("server.write_timeout_ms", "must be > 0");
        }
        if self.server.request_timeout_ms == 0 {
            return invalid("server.request_timeout_ms", "must be > 0");
        }
        if self.server.header_read_timeout_ms == 0 {
            return invalid("server.header_read_timeout_ms", "must be > 0");
        }
        if self.model.max_bytes == 0 {
            return invalid("model.max_bytes", "must be > 0");
        }
        if self.gate.max_memory_bytes == 0 {
            return invalid("gate.max_memory_bytes", "must be > 0");
        }
        self.models.validate()?;
        if self.feedback.capacity == 0 {
            return invalid("feedback.capacity", "must be > 0");
        }
        if self.feedback.window == 0 {
            return invalid("feedback.window", "must be > 0");
        }
        let f = &self.feedback;
        if f.log_path.is_none() {
            if f.keep_text {
                return invalid(
                    "feedback.keep_text",
                    "needs feedback.log_path: kept texts only leave the server in feedback log lines",
                );
            }
            if f.accept_examples {
                return invalid(
                    "feedback.accept_examples",
                    "needs feedback.log_path: examples are appended to the feedback log",
                );
            }
        }
        if f.keep_text && f.text_budget_bytes == 0 {
            return invalid(
                "feedback.text_budget_bytes",
                "must be > 0 with feedback.keep_text",
            );
        }
        if self.learning.register.is_some() && self.model.mlflow_uri.is_none() {
            return invalid(
                "learning.register",
                "needs model.mlflow_uri (or MLFLOW_TRACKING_URI): the tracking server a promoted challenger is registered on",
            );
        }
        tokens::validate(self.admin.token.as_deref(), self.feedback.token.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use error::integer_range;

    /// `pairs` as an environment.
    pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `model.path` is parsed once, at load: a registry URI or a file, a
    /// malformed `models:/` text a settings error naming the key; the
    /// registry's server is `model.mlflow_uri`, else `MLFLOW_TRACKING_URI`,
    /// checked at load too.
    #[test]
    fn model_path_parses_into_its_source_with_one_tracking_uri_fallback() {
        let load = |pairs: &[(&str, &str)]| Settings::load_from(None, env(pairs));
        let s = load(&[("NBSERVE__MODEL__PATH", "models:/spam@champion")]).unwrap();
        assert_eq!(
            s.model.path,
            ModelSource::Registry(crate::mlflow::ModelUri::Alias {
                name: "spam".into(),
                alias: "champion".into()
            })
        );
        assert!(
            s.model.registry().unwrap().is_none(),
            "no server configured"
        );
        let s = load(&[("NBSERVE__MODEL__PATH", "/m/models:/x.json")]).unwrap();
        assert_eq!(s.model.path, ModelSource::File("/m/models:/x.json".into()));
        let e = load(&[("NBSERVE__MODEL__PATH", "models:/spam")]).unwrap_err();
        assert!(e.to_string().contains("model.path"), "{e}");

        let registry = ("NBSERVE__MODEL__PATH", "models:/spam/3");
        let s = load(&[registry, ("MLFLOW_TRACKING_URI", "http://mlflow:5000")]).unwrap();
        assert_eq!(s.model.mlflow_uri.as_deref(), Some("http://mlflow:5000"));
        let client = s.model.registry().unwrap().unwrap();
        assert_eq!(client.server(), "http://mlflow:5000");
        let s = load(&[
            registry,
            ("MLFLOW_TRACKING_URI", "http://ignored:5000"),
            ("NBSERVE__MODEL__MLFLOW_URI", "http://mine:5000"),
        ])
        .unwrap();
        assert_eq!(
            s.model.registry().unwrap().unwrap().server(),
            "http://mine:5000"
        );
        for (key, pairs) in [
            (
                "model.mlflow_uri",
                [registry, ("NBSERVE__MODEL__MLFLOW_URI", "ftp://x")],
            ),
            (
                "MLFLOW_TRACKING_URI",
                [registry, ("MLFLOW_TRACKING_URI", "nope")],
            ),
        ] {
            let e = load(&pairs).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid setting {key}: ")),
                "{e}"
            );
        }
        // A file source needs no server, whatever the environment says.
        let file = ("NBSERVE__MODEL__PATH", "m.json");
        assert!(load(&[file, ("MLFLOW_TRACKING_URI", "nope")]).is_ok());
    }

    /// The defaults are the ones the book's settings reference documents:
    /// every row, compared with the loaded settings as JSON (`(none)` is
    /// unset), and no setting left out of the table; a row states its
    /// setting's [`rule`] (backticks aside) when it has one.
    #[test]
    fn defaults_are_the_documented_ones() {
        let readme = include_str!("../docs/reference/settings.md");
        let loaded = serde_json::to_value(Settings::load_from(None, env(&[])).unwrap()).unwrap();
        let mut documented = 0;
        for row in readme.lines().filter(|l| l.starts_with("| ")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let (key, var, default) = (cells[1], cells[2], cells[3]);
            if !var.starts_with("NBSERVE__") {
                continue;
            }
            documented += 1;
            assert_eq!(
                var,
                format!("NBSERVE__{}", key.replace('.', "__").to_uppercase()),
                "{row}"
            );
            let (section, name) = key.split_once('.').unwrap();
            let value = &loaded[section][name];
            let matches = match value {
                serde_json::Value::Null => default == "(none)",
                serde_json::Value::Number(n) => default.parse::<f64>().ok() == n.as_f64(),
                serde_json::Value::String(s) => default == s,
                serde_json::Value::Bool(b) => default == b.to_string(),
                other => panic!("{key}: unexpected {other}"),
            };
            assert!(matches, "{key}: documented {default}, loaded {value}");
            if let Some(rule) = rule(key) {
                assert_eq!(cells[5], rule, "{key}: its row must say its rule");
            }
        }
        let settings: usize = loaded
            .as_object()
            .unwrap()
            .values()
            .map(|section| section.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented, settings,
            "every setting has a row in the reference"
        );
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = Settings::load_from(
            None,
            env(&[
                ("NBSERVE__SERVER__PORT", "9999"),
                ("NBSERVE__GATE__MIN_F1_MACRO", "0.5"),
                ("NBSERVE__MODEL__PATH", "/tmp/m.json"),
                ("NBSERVE__LOG__FORMAT", "json"),
                ("NBSERVE__ADMIN__TOKEN", "s3cret-token"),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 9999);
        assert_eq!(s.gate.min_f1_macro, 0.5);
        assert_eq!(
            s.model.path,
            ModelSource::File(PathBuf::from("/tmp/m.json"))
        );
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.admin.token.as_deref(), Some("s3cret-token"));
    }

    #[test]
    fn file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("nbserve.toml");
        std::fs::write(&f, "[server]\nport = 7000\nmax_batch_size = 5\n").unwrap();
        let s = Settings::load_from(Some(&f), env(&[("NBSERVE__SERVER__PORT", "7001")])).unwrap();
        assert_eq!(s.server.port, 7001);
        assert_eq!(s.server.max_batch_size, 5);
    }

    /// A command's flags beat the environment, which beats the file, which
    /// beats the defaults; a flag's value is read and checked like any other.
    #[test]
    fn flags_beat_the_environment_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("nbserve.toml");
        std::fs::write(
            &f,
            "[server]\nport = 7000\nhost = \"10.0.0.1\"\nmax_batch_size = 5\n",
        )
        .unwrap();
        let env = env(&[
            ("NBSERVE__SERVER__PORT", "7001"),
            ("NBSERVE__MODEL__PATH", "env.json"),
        ]);
        let flags = [
            ("server.port", "9000".to_owned()),
            ("model.path", "models:/spam@champion".to_owned()),
        ];
        let s = Settings::load_layers(Some(&f), env.clone(), &flags).unwrap();
        assert_eq!(s.server.port, 9000, "the flag beats the variable");
        assert_eq!(s.server.host, "10.0.0.1", "the file beats the default");
        assert_eq!(s.server.max_batch_size, 5);
        assert_eq!(s.model.path.to_string(), "models:/spam@champion");
        let s = Settings::load_layers(Some(&f), env.clone(), &[]).unwrap();
        assert_eq!(s.server.port, 7001, "the variable beats the file");
        assert_eq!(s.model.path.to_string(), "env.json");
        let e =
            Settings::load_layers(None, env, &[("model.path", "models:/spam".into())]).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid setting model.path: "),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Settings::load_from(None, env(&[("NBSERVE__SERVER__PROT", "1")])).unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
    }

    #[test]
    fn invalid_values_are_named() {
        let e = Settings::load_from(None, env(&[("NBSERVE__SERVER__PORT", "http")])).unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
        let e =
            Settings::load_from(None, env(&[("NBSERVE__GATE__MIN_F1_MACRO", "1.5")])).unwrap_err();
        assert!(e.to_string().contains("gate.min_f1_macro"), "{e}");
        let e = Settings::load_from(
            None,
            env(&[("NBSERVE__SERVER__HEADER_READ_TIMEOUT_MS", "0")]),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("server.header_read_timeout_ms"),
            "{e}"
        );
        let e = Settings::load_from(None, env(&[("NBSERVE__LOG__FORMAT", "xml")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid setting log.format: expected one of json, pretty; got 'xml'"
        );
    }

    /// `JSON` can only mean `json`: enum settings are read in any case, from
    /// the environment and from a file alike; a wrong word in a file is
    /// refused like one in the environment.
    #[test]
    fn enum_settings_are_read_in_any_case() {
        let s = Settings::load_from(
            None,
            env(&[
                ("NBSERVE__LOG__FORMAT", "JSON"),
                ("NBSERVE__FEEDBACK__LOG_FSYNC", "Always"),
            ]),
        )
        .unwrap();
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.feedback.log_fsync, LogFsync::Always);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("nbserve.toml");
        std::fs::write(
            &f,
            "[log]\nformat = \"Pretty\"\n[feedback]\nlog_fsync = \"NEVER\"\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&f), env(&[])).unwrap();
        assert_eq!(s.log.format, LogFormat::Pretty);
        assert_eq!(s.feedback.log_fsync, LogFsync::Never);
        std::fs::write(&f, "[feedback]\nlog_fsync = \"sometimes\"\n").unwrap();
        let e = Settings::load_from(Some(&f), env(&[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid setting feedback.log_fsync: expected one of never, interval, always; got 'sometimes'"
        );
    }

    #[test]
    fn out_of_range_integers_name_the_range() {
        let e = Settings::load_from(None, env(&[("NBSERVE__SERVER__PORT", "70000")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid setting server.port: must be an integer from 0 to 65535 (got 70000)"
        );
        assert_eq!(
            integer_range("an signed 8 bit integer").unwrap(),
            "an integer from -128 to 127"
        );
        assert_eq!(
            integer_range("an unsigned 64 bit integer").unwrap(),
            "an integer from 0 to 18446744073709551615"
        );
        assert_eq!(integer_range("a map"), None);
    }

    #[test]
    fn admin_token_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "from-a-secret-file\n").unwrap();
        let path = f.to_str().unwrap();
        let s = Settings::load_from(None, env(&[("NBSERVE__ADMIN__TOKEN_FILE", path)])).unwrap();
        assert_eq!(s.admin.token.as_deref(), Some("from-a-secret-file"));

        let e = Settings::load_from(
            None,
            env(&[
                ("NBSERVE__ADMIN__TOKEN_FILE", path),
                ("NBSERVE__ADMIN__TOKEN", "another-token"),
            ]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");

        let missing = dir.path().join("missing");
        let e = Settings::load_from(
            None,
            env(&[("NBSERVE__ADMIN__TOKEN_FILE", missing.to_str().unwrap())]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid setting admin.token_file: cannot read"),
            "{e}"
        );

        std::fs::write(&f, "short\n").unwrap();
        let e =
            Settings::load_from(None, env(&[("NBSERVE__ADMIN__TOKEN_FILE", path)])).unwrap_err();
        assert!(e.to_string().contains("admin.token"), "{e}");
    }

    #[test]
    fn feedback_token_from_a_file_or_the_environment_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("feedback-token");
        std::fs::write(&f, "feedback-secret\r\n").unwrap();
        let path = f.to_str().unwrap();
        let s = Settings::load_from(None, env(&[("NBSERVE__FEEDBACK__TOKEN_FILE", path)])).unwrap();
        assert_eq!(s.feedback.token.as_deref(), Some("feedback-secret"));
        assert_eq!(s.admin.token, None, "the admin token is a separate setting");

        let s = Settings::load_from(None, env(&[("NBSERVE__FEEDBACK__TOKEN", "labels-token")]))
            .unwrap();
        assert_eq!(s.feedback.token.as_deref(), Some("labels-token"));

        let e = Settings::load_from(
            None,
            env(&[
                ("NBSERVE__FEEDBACK__TOKEN_FILE", path),
                ("NBSERVE__FEEDBACK__TOKEN", "another-token"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid setting feedback.token_file: set feedback.token or feedback.token_file, not both"
        );

        let missing = dir.path().join("missing");
        let e = Settings::load_from(
            None,
            env(&[("NBSERVE__FEEDBACK__TOKEN_FILE", missing.to_str().unwrap())]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid setting feedback.token_file: cannot read"),
            "{e}"
        );

        let e =
            Settings::load_from(None, env(&[("NBSERVE__FEEDBACK__TOKEN", "short")])).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid setting feedback.token:"),
            "{e}"
        );
    }

    #[test]
    fn kept_texts_and_examples_need_a_log() {
        for key in ["KEEP_TEXT", "ACCEPT_EXAMPLES"] {
            let var = format!("NBSERVE__FEEDBACK__{key}");
            let e = Settings::load_from(None, env(&[(&var, "true")])).unwrap_err();
            let name = format!("feedback.{}", key.to_lowercase());
            assert_eq!(
                e.to_string().split(':').next().unwrap(),
                format!("invalid setting {name}"),
                "{e}"
            );
            assert!(e.to_string().contains("feedback.log_path"), "{e}");
            let s = Settings::load_from(
                None,
                env(&[
                    (&var, "true"),
                    ("NBSERVE__FEEDBACK__LOG_PATH", "/tmp/fb.jsonl"),
                ]),
            )
            .unwrap();
            assert!(s.feedback.keep_text || s.feedback.accept_examples);
        }
        let e = Settings::load_from(
            None,
            env(&[
                ("NBSERVE__FEEDBACK__KEEP_TEXT", "true"),
                ("NBSERVE__FEEDBACK__LOG_PATH", "/tmp/fb.jsonl"),
                ("NBSERVE__FEEDBACK__TEXT_BUDGET_BYTES", "0"),
            ]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("feedback.text_budget_bytes"), "{e}");
    }

    #[test]
    fn token_is_not_debug_printed() {
        let mut s = Settings::default();
        s.admin.token = Some("very-secret".into());
        s.feedback.token = Some("also-secret".into());
        let printed = format!("{s:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(!printed.contains("also-secret"), "{printed}");
        assert!(printed.contains("accept_examples"), "{printed}");
    }
}
