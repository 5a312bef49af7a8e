//! The commands around the server: `serve`, `healthcheck`, `config`.

use std::path::Path;

use nbserve::server::{Application, HeldSignals, Signals, StartupError};
use nbserve::settings::{ModelChoiceError, Settings};

use super::args::{ConfigArgs, HealthcheckArgs, ServeArgs};
use super::exit::Unhealthy;
use super::{CmdResult, Failure};

/// Defaults, then the settings file `config`, then `NBSERVE__*`.
pub(super) fn load_settings(config: Option<&Path>) -> Result<Settings, Failure> {
    Ok(Settings::load(config)?)
}

/// The settings of `config` narrowed to the model `--served-model` names
/// (default: the default model), see [`Settings::for_model`].
pub(super) fn load_model_settings(
    config: Option<&Path>,
    served_model: Option<&str>,
) -> Result<Settings, Failure> {
    load_settings(config)?
        .for_model(served_model)
        .map_err(|e| match e {
            e @ ModelChoiceError::Unknown { .. } => {
                let message = format!("--served-model: {e}");
                Failure::from(e).worded(message)
            }
            e => e.into(),
        })
}

/// `serve --help`'s closing text: the layers, then every setting's
/// environment variable with its default and rule, read from the settings
/// themselves, then the other variables the server reads.
pub(super) fn settings_help() -> String {
    let mut help = String::from(
        "Settings, each layer beating the ones before: built-in defaults, the\n\
         --config file (TOML or YAML), NBSERVE__* environment variables, then\n\
         --host, --port and --model (server.host, server.port, model.path).\n\
         `nbserve config --config FILE` prints the settings resolved.\n\
         \n\
         Environment variables (built-in default after =; a rule below, if any):\n",
    );
    for v in nbserve::settings::variables() {
        match v.default {
            Some(default) => help.push_str(&format!("  {}={default}\n", v.env)),
            None => help.push_str(&format!("  {} (unset)\n", v.env)),
        }
        if let Some(rule) = v.rule {
            for line in wrap(&rule, 70) {
                help.push_str(&format!("      {line}\n"));
            }
        }
    }
    help.push_str(
        "\n\
         Also read: MLFLOW_TRACKING_URI (model.mlflow_uri when unset);\n\
         MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and\n\
         MLFLOW_TRACKING_PASSWORD (the registry's credentials);\n\
         MLFLOW_TRACKING_SERVER_CERT_PATH (a PEM bundle of the CA certificates an\n\
         https:// registry is trusted by, besides the built-in public ones);\n\
         RUST_LOG (overrides log.level).",
    );
    help
}

/// `text` in lines of at most `width` characters, broken at spaces (a
/// longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// A multi-threaded runtime for the commands that talk HTTP.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `nbserve config`: the resolved settings, the admin and feedback tokens
/// redacted, and the user-info of every URL (`model.mlflow_uri` and any
/// other) too: a user name is often a token.
pub fn config(a: ConfigArgs) -> CmdResult {
    let mut s = load_settings(a.config.as_deref())?;
    for warning in s.warnings() {
        noteln!("nbserve: warning: {warning}");
    }
    for token in [&mut s.admin.token, &mut s.feedback.token] {
        if token.is_some() {
            *token = Some("<redacted>".into());
        }
    }
    let mut printed = serde_json::to_value(&s).expect("serialisable");
    redact_urls(&mut printed);
    outln!(
        "{}",
        serde_json::to_string_pretty(&printed).expect("serialisable")
    );
    Ok(())
}

/// Every string in `v` that is a URL with user-info, redacted.
fn redact_urls(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => *s = nbserve::mlflow::redact_url(s),
        Value::Array(items) => items.iter_mut().for_each(redact_urls),
        Value::Object(fields) => fields.values_mut().for_each(redact_urls),
        _ => {}
    }
}

/// `nbserve serve`.
pub fn serve(a: ServeArgs) -> CmdResult {
    // First thing, the signal handlers: SIGHUP (log rotation, `systemctl
    // reload`) or SIGTERM may come at any moment, also while the model
    // loads. Until the handlers exist the signals are held pending, not
    // left to their default action.
    let held = HeldSignals::hold()?;
    let rt = runtime()?;
    let signals = {
        let _runtime = rt.enter();
        Signals::install()?
    };
    drop(held);
    let settings = Settings::load_overridden(a.settings.config.as_deref(), &a.overrides())?;
    // Held to the end: its drop sends the last spans.
    let _traces = nbserve::telemetry::init(&settings.log, &settings.trace);
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    let mut abandoned = false;
    let result = rt.block_on(async {
        let app = match Application::build_with_signals(settings, signals).await {
            Ok(app) => app,
            // A stop before serving is still a stop: exit 0.
            Err(StartupError::Stopped { .. }) => {
                abandoned = true;
                return Ok(());
            }
            Err(e) => {
                // The log is where a service's operators look; one report is
                // enough, unless the log is switched off.
                tracing::error!(error = %e, "start-up failed");
                let f = Failure::from(e);
                return Err(if tracing::enabled!(tracing::Level::ERROR) {
                    f.reported()
                } else {
                    f
                });
            }
        };
        Ok(app.run_until_stopped().await?)
    });
    // Dropping the runtime would wait for every blocking task; a reload
    // still reading a slow file must not keep a stopped server alive, nor
    // may a model load the stop abandoned.
    if abandoned {
        rt.shutdown_background();
    } else {
        rt.shutdown_timeout(std::time::Duration::from_secs(5));
    }
    result
}

/// `nbserve healthcheck`.
pub fn healthcheck(a: HealthcheckArgs) -> CmdResult {
    runtime()?.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(a.timeout_ms))
            .build()?;
        // Printed without its user-info, and reqwest's errors without the URL.
        let url = nbserve::mlflow::redact_url(&a.url);
        let unhealthy = match client.get(&a.url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => return Ok(()),
            Ok(r) => format!("{url} answered {}", r.status()),
            Err(e) => format!("{url}: {}", e.without_url()),
        };
        Err(Unhealthy(unhealthy).into())
    })
}
