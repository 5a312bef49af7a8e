//! The model repository: which models one server serves.
//!
//! - `model.repository = DIR`: every `*.json` file directly in `DIR` is a
//!   model, named by its file stem;
//! - without it, `model.path` is the one model, named by its file stem (a
//!   `models:/NAME@ALIAS` source: by `NAME`), so today's single-model
//!   settings are a one-model repository;
//! - the `models` table adds named models (`[models.NAME]`), each with its
//!   own source and, optionally, its own polling, gate minimum, holdout and
//!   `required` flag; `models.max_count` and `models.max_total_bytes` bound
//!   them all;
//! - `model.default` names the model `/predict` serves (default: the name
//!   `model.path` gives).
//!
//! The table is checked when the settings load; the directory is read when
//! the server starts ([`Settings::model_specs`]), and whatever is wrong with
//! the whole (a duplicate name, a name with path characters, too many
//! models, a default that names none) refuses the start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{GateSettings, ModelSource, Settings, SettingsError};

/// Longest model name.
pub const MAX_NAME_LEN: usize = 64;

/// Keys of the `models` table that are settings, not model names.
const RESERVED: [&str; 2] = ["max_count", "max_total_bytes"];

/// Names an error message lists at most (the rest are counted).
const NAMES_LISTED: usize = 10;

/// `models.*`: the bounds across models, and the named models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelsSettings {
    /// Most models one server holds (loaded or not); also bounds the
    /// `model` label of every metric.
    pub max_count: usize,
    /// The memory budget across loaded models, in bytes: the sum of their
    /// estimated resident size (vocabulary and scoring tables). A load that
    /// would go over it is refused.
    pub max_total_bytes: u64,
    /// `[models.NAME]`: models added by name, beside the repository's.
    #[serde(flatten)]
    pub named: BTreeMap<String, NamedModel>,
}

impl Default for ModelsSettings {
    fn default() -> Self {
        Self {
            max_count: 64,
            max_total_bytes: 1024 * 1024 * 1024,
            named: BTreeMap::new(),
        }
    }
}

/// One `[models.NAME]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedModel {
    /// Its artifact: a file, or `models:/NAME@ALIAS` / `models:/NAME/VERSION`.
    #[schemars(with = "String")]
    pub path: ModelSource,
    /// Check its source this often (default: `model.poll_interval_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_secs: Option<u64>,
    /// Its gate minimum (default: `gate.min_f1_macro`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_f1_macro: Option<f64>,
    /// Its gate holdout (default: `gate.holdout_path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_path: Option<PathBuf>,
    /// The server is ready only while it serves; it must load at start and
    /// cannot be unloaded (the default model always is).
    #[serde(default)]
    pub required: bool,
}

/// One model of the repository, everything about it resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Its name in routes, metrics and logs.
    pub name: String,
    /// Where its artifact comes from.
    pub source: ModelSource,
    /// Its source is checked this often (0 = never).
    pub poll_interval_secs: u64,
    /// Its gate.
    pub gate: GateSettings,
    /// It must be served for the server to be ready (the default model, and
    /// models marked `required`).
    pub required: bool,
}

/// The repository the settings describe: its models, the default first
/// among equals by name.
#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryPlan {
    /// Every model, in name order.
    pub models: Vec<ModelSpec>,
    /// The default model's name (one of `models`).
    pub default: String,
}

/// Whether `name` may name a model: 1 to [`MAX_NAME_LEN`] ASCII letters,
/// digits, `.`, `_` or `-`, starting with a letter or digit — never a path
/// (no `/`, no `..`), always a safe URL segment, metric label and file stem.
pub fn valid_model_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `names` for a message: at most [`NAMES_LISTED`], then how many more.
pub fn list_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    let mut listed = names
        .iter()
        .take(NAMES_LISTED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_LISTED {
        listed.push_str(&format!(" and {} more", names.len() - NAMES_LISTED));
    }
    listed
}

/// The name a source gives its model: a file's stem, a registered model's
/// name.
pub fn source_name(source: &ModelSource) -> Option<String> {
    match source {
        ModelSource::File(path) => path.file_stem()?.to_str().map(str::to_owned),
        ModelSource::Registry(uri) => Some(uri.name().to_owned()),
    }
}

fn invalid(key: &'static str, message: String) -> SettingsError {
    SettingsError::Invalid { key, message }
}

fn check_name(key: &'static str, name: &str, what: &str) -> Result<(), SettingsError> {
    if valid_model_name(name) {
        return Ok(());
    }
    Err(invalid(
        key,
        format!(
            "{what} {:?} is not a model name: 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-', \
             starting with a letter or digit",
            name.chars().take(80).collect::<String>()
        ),
    ))
}

impl ModelsSettings {
    /// Checks what needs no file system: limits, table names and values.
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.max_count == 0 {
            return Err(invalid("models.max_count", "must be > 0".into()));
        }
        if self.max_total_bytes == 0 {
            return Err(invalid("models.max_total_bytes", "must be > 0".into()));
        }
        for (name, model) in &self.named {
            if RESERVED.contains(&name.as_str()) {
                continue;
            }
            check_name("models", name, "table key")?;
            if let Some(min) = model.min_f1_macro {
                if !GateSettings::valid_minimum(min) {
                    return Err(invalid(
                        "models",
                        format!("models.{name}.min_f1_macro must be a number within [0, 1]"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether any named model comes from the registry.
    pub(super) fn any_registry(&self) -> bool {
        self.named
            .values()
            .any(|m| matches!(m.path, ModelSource::Registry(_)))
    }
}

/// The `*.json` regular files directly in `dir` (symlinks followed), by
/// name.
fn artifacts_in(dir: &Path) -> Result<Vec<(String, PathBuf)>, SettingsError> {
    let unreadable = |e: std::io::Error| {
        invalid(
            "model.repository",
            format!("cannot read {}: {e}", dir.display()),
        )
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.extension().is_none_or(|e| e != "json") || !path.is_file() {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            return Err(invalid(
                "model.repository",
                format!("{} is not a UTF-8 file name", path.display()),
            ));
        };
        found.push((stem.to_owned(), path));
    }
    found.sort();
    Ok(found)
}

impl Settings {
    /// The default model's name: `model.default`, else the name
    /// `model.path` gives.
    pub fn default_model_name(&self) -> Option<String> {
        self.model
            .default
            .clone()
            .or_else(|| source_name(&self.model.path))
    }

    /// The spec of a model read from `source` with the global options.
    fn spec(&self, name: String, source: ModelSource) -> ModelSpec {
        ModelSpec {
            name,
            source,
            poll_interval_secs: self.model.poll_interval_secs,
            gate: self.gate.clone(),
            required: false,
        }
    }

    /// The repository these settings describe, reading `model.repository`
    /// now: refused when a name is invalid or given twice, when there are
    /// more than `models.max_count` models, or when the default names none.
    pub fn model_specs(&self) -> Result<RepositoryPlan, SettingsError> {
        let mut models = match &self.model.repository {
            Some(dir) => {
                let mut models = Vec::new();
                for (name, path) in artifacts_in(dir)? {
                    check_name("model.repository", &name, "the file stem")?;
                    models.push(self.spec(name, ModelSource::File(path)));
                }
                models
            }
            None => {
                let name = self.default_model_name().unwrap_or_default();
                let key = if self.model.default.is_some() {
                    "model.default"
                } else {
                    "model.path"
                };
                check_name(key, &name, "the model name")?;
                vec![self.spec(name, self.model.path.clone())]
            }
        };
        for (name, named) in &self.models.named {
            if RESERVED.contains(&name.as_str()) {
                continue;
            }
            check_name("models", name, "table key")?;
            if models.iter().any(|m| &m.name == name) {
                return Err(invalid(
                    "models",
                    format!("model {name:?} is named twice (the table and model.repository or model.path)"),
                ));
            }
            let mut spec = self.spec(name.clone(), named.path.clone());
            if let Some(secs) = named.poll_interval_secs {
                spec.poll_interval_secs = secs;
            }
            if let Some(min) = named.min_f1_macro {
                spec.gate.min_f1_macro = min;
            }
            if let Some(holdout) = &named.holdout_path {
                spec.gate.holdout_path = Some(holdout.clone());
            }
            spec.required = named.required;
            models.push(spec);
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        if models.len() > self.models.max_count {
            return Err(invalid(
                "models.max_count",
                format!(
                    "{} models configured, more than models.max_count ({})",
                    models.len(),
                    self.models.max_count
                ),
            ));
        }
        let default = self.default_model_name().unwrap_or_default();
        let Some(spec) = models.iter_mut().find(|m| m.name == default) else {
            let names = list_names(models.iter().map(|m| m.name.as_str()));
            return Err(invalid(
                "model.default",
                format!(
                    "the default model {:?} is not in the repository (models: {})",
                    default.chars().take(80).collect::<String>(),
                    if names.is_empty() { "none" } else { &names }
                ),
            ));
        };
        spec.required = true;
        Ok(RepositoryPlan { models, default })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::settings::tests::env;

    #[test]
    fn names_are_never_paths() {
        for good in ["spam-nb", "a", "spam_cnb.v2", "A1", &"x".repeat(64)] {
            assert!(valid_model_name(good), "{good}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "spam nb",
            "-x",
            "é",
            "a\0",
            &"x".repeat(65),
        ] {
            assert!(!valid_model_name(bad), "{bad:?}");
        }
        let many: Vec<String> = (0..13).map(|i| format!("m{i}")).collect();
        assert_eq!(
            list_names(many.iter().map(String::as_str)),
            "m0, m1, m2, m3, m4, m5, m6, m7, m8, m9 and 3 more"
        );
    }

    /// Today's settings are a one-model repository named by the file stem.
    #[test]
    fn one_model_path_is_a_one_model_repository() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        let plan = s.model_specs().unwrap();
        assert_eq!(plan.default, "spam-nb");
        assert_eq!(plan.models.len(), 1);
        assert!(plan.models[0].required);
        assert_eq!(plan.models[0].source, s.model.path);
        let s = Settings::load_from(
            None,
            env(&[("NBSERVE__MODEL__PATH", "models:/spam@champion")]),
        )
        .unwrap();
        assert_eq!(s.model_specs().unwrap().default, "spam");
    }

    #[test]
    fn a_repository_serves_every_artifact_and_the_table_adds_models() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["spam-nb.json", "spam-cnb.json", "notes.txt"] {
            std::fs::write(dir.path().join(f), "{}").unwrap();
        }
        std::fs::create_dir(dir.path().join("versions.json")).unwrap();
        let toml = dir.path().join("s.toml");
        std::fs::write(
            &toml,
            format!(
                "[model]\nrepository = {:?}\n\n[models]\nmax_count = 5\n\n\
                 [models.Extra]\npath = \"models:/extra@champion\"\nmin_f1_macro = 0.5\n\
                 poll_interval_secs = 7\nrequired = true\n",
                dir.path()
            ),
        )
        .unwrap();
        let s = Settings::load_from(Some(&toml), env(&[])).unwrap();
        assert_eq!(s.models.max_count, 5);
        let plan = s.model_specs().unwrap();
        let names: Vec<&str> = plan.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["Extra", "spam-cnb", "spam-nb"], "case kept");
        assert_eq!(plan.default, "spam-nb");
        let extra = &plan.models[0];
        assert_eq!(extra.gate.min_f1_macro, 0.5);
        assert_eq!(extra.poll_interval_secs, 7);
        assert!(extra.required);
        assert!(!plan.models[1].required);
        assert!(plan.models[2].required, "the default is required");
        assert!(s.registry().is_ok());

        // The environment picks another default; one unknown is refused.
        let pick = |default: &str| {
            Settings::load_from(Some(&toml), env(&[("NBSERVE__MODEL__DEFAULT", default)]))
                .unwrap()
                .model_specs()
        };
        assert_eq!(pick("spam-cnb").unwrap().default, "spam-cnb");
        let e = pick("nope").unwrap_err().to_string();
        assert!(e.starts_with("invalid setting model.default:"), "{e}");
        assert!(e.contains("Extra, spam-cnb, spam-nb"), "{e}");

        // Too many.
        let s =
            Settings::load_from(Some(&toml), env(&[("NBSERVE__MODELS__MAX_COUNT", "2")])).unwrap();
        let e = s.model_specs().unwrap_err().to_string();
        assert!(e.contains("models.max_count (2)"), "{e}");
    }

    #[test]
    fn duplicates_and_path_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spam-nb.json"), "{}").unwrap();
        let toml = dir.path().join("s.toml");
        let write = |table: &str| {
            std::fs::write(
                &toml,
                format!("[model]\nrepository = {:?}\n\n{table}", dir.path()),
            )
            .unwrap();
        };
        write("[models.spam-nb]\npath = \"x.json\"\n");
        let e = Settings::load_from(Some(&toml), env(&[]))
            .unwrap()
            .model_specs()
            .unwrap_err()
            .to_string();
        assert!(e.contains("named twice"), "{e}");

        write("[models.\"../up\"]\npath = \"x.json\"\n");
        let e = Settings::load_from(Some(&toml), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a model name"), "{e}");

        write("[models.x]\npath = \"x.json\"\nmin_f1_macro = 2\n");
        let e = Settings::load_from(Some(&toml), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("models.x.min_f1_macro"), "{e}");

        write("[models.x]\npath = \"x.json\"\ncolour = 1\n");
        assert!(Settings::load_from(Some(&toml), env(&[])).is_err());

        write("");
        std::fs::write(dir.path().join("bad name.json"), "{}").unwrap();
        let e = Settings::load_from(Some(&toml), env(&[]))
            .unwrap()
            .model_specs()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid setting model.repository:"), "{e}");
        assert!(e.contains("bad name"), "{e}");
    }
}
