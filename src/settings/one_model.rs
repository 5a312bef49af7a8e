//! One model of the repository as the commands that change a model in
//! place see it (`retrain`, `rollback`, `promote`): the settings narrowed
//! so that `model.path` is that model's source, `model.dir` its own
//! versioned store and `gate` its own gate.
//!
//! Stores: the model `model.path` names keeps `model.dir` (its `versions/`
//! and lock), so a one-model server's files stay where they always were;
//! every other model has `model.dir/stores/NAME/` (its own `versions/` and
//! lock). The store follows the model's source, not the default: changing
//! `model.default` never hands one model's history to another.

use super::{list_names, ModelSource, Settings, SettingsError};

/// The directory in `model.dir` holding the stores of the models
/// `model.path` does not name, one subdirectory per model name.
pub const STORES_DIR: &str = "stores";

/// Why the settings could not be narrowed to one model.
#[derive(Debug, thiserror::Error)]
pub enum ModelChoiceError {
    /// The repository itself is invalid (as `serve` would refuse it).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// No model of that name.
    #[error("no model {name:?} in these settings (models: {known})")]
    Unknown {
        /// The name asked for (at most 80 characters of it).
        name: String,
        /// The known names, bounded.
        known: String,
    },
}

impl Settings {
    /// These settings narrowed to the model `name` (default: the default
    /// model): its source in `model.path`, its store in `model.dir`, its
    /// gate and polling; the repository and the `models` table cleared, so
    /// the result describes that model alone. Without a repository or a
    /// `models` table and without a name, the settings are returned as
    /// they are: today's one-model commands are unchanged.
    pub fn for_model(&self, name: Option<&str>) -> Result<Settings, ModelChoiceError> {
        if name.is_none() && self.model.repository.is_none() && !self.models.any_named() {
            return Ok(self.clone());
        }
        let plan = self.model_specs()?;
        let wanted = name.unwrap_or(&plan.default);
        let Some(spec) = plan.models.iter().find(|m| m.name == wanted) else {
            return Err(ModelChoiceError::Unknown {
                name: wanted.chars().take(80).collect(),
                known: list_names(plan.models.iter().map(|m| m.name.as_str())),
            });
        };
        let mut one = self.clone();
        if !same_source(&spec.source, &self.model.path) {
            one.model.dir = self.model.dir.join(STORES_DIR).join(&spec.name);
        }
        one.model.path = spec.source.clone();
        one.model.poll_interval_secs = spec.poll_interval_secs;
        one.model.repository = None;
        one.model.default = None;
        one.models.named.clear();
        one.gate = spec.gate.clone();
        Ok(one)
    }
}

/// Whether two sources name the same artifact: equal URIs, or paths equal
/// component by component (`models/./a.json` is `models/a.json`).
fn same_source(a: &ModelSource, b: &ModelSource) -> bool {
    match (a, b) {
        (ModelSource::File(a), ModelSource::File(b)) => a.components().eq(b.components()),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::settings::tests::env;

    fn file(s: &Settings) -> &Path {
        s.model.path.file().expect("a file source")
    }

    /// Without a repository, no name is today's settings, byte for byte.
    #[test]
    fn one_model_settings_are_unchanged() {
        let s = Settings::load_from(
            None,
            env(&[("NBSERVE__MODEL__PATH", "elsewhere/odd name.json")]),
        )
        .unwrap();
        assert_eq!(s.for_model(None).unwrap(), s);
        let e = s.for_model(Some("spam-cnb")).unwrap_err();
        assert!(matches!(e, ModelChoiceError::Settings(_)), "{e}");
    }

    #[test]
    fn each_model_gets_its_source_store_and_gate() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["spam-nb.json", "spam-cnb.json"] {
            std::fs::write(dir.path().join(f), "{}").unwrap();
        }
        let toml = dir.path().join("s.toml");
        std::fs::write(
            &toml,
            format!(
                "[model]\nrepository = {repo:?}\npath = {nb:?}\ndir = {repo:?}\n\n\
                 [models.reg]\npath = \"models:/spam@champion\"\nmin_f1_macro = 0.5\n",
                repo = dir.path(),
                nb = dir.path().join("./spam-nb.json"),
            ),
        )
        .unwrap();
        let s = Settings::load_from(
            Some(&toml),
            env(&[("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")]),
        )
        .unwrap();

        // The default model is the one model.path names: model.dir, as today.
        let nb = s.for_model(None).unwrap();
        assert_eq!(file(&nb), dir.path().join("spam-nb.json"));
        assert_eq!(nb.model.dir, dir.path());
        assert_eq!(nb.model.repository, None);
        assert!(nb.models.named.is_empty());
        assert_eq!(s.for_model(Some("spam-nb")).unwrap(), nb);

        // Another has a store of its own, and keeps it when it is the default.
        let cnb = s.for_model(Some("spam-cnb")).unwrap();
        assert_eq!(file(&cnb), dir.path().join("spam-cnb.json"));
        let store = dir.path().join("stores").join("spam-cnb");
        assert_eq!(cnb.model.dir, store);
        let s2 = Settings::load_from(
            Some(&toml),
            env(&[
                ("MLFLOW_TRACKING_URI", "http://127.0.0.1:1"),
                ("NBSERVE__MODEL__DEFAULT", "spam-cnb"),
            ]),
        )
        .unwrap();
        assert_eq!(s2.for_model(None).unwrap().model.dir, store);

        // A table entry: its own source and gate.
        let reg = s.for_model(Some("reg")).unwrap();
        assert_eq!(reg.model.path.to_string(), "models:/spam@champion");
        assert_eq!(reg.gate.min_f1_macro, 0.5);
        assert_eq!(reg.model.dir, dir.path().join("stores").join("reg"));
        assert_eq!(nb.gate.min_f1_macro, s.gate.min_f1_macro);

        let e = s.for_model(Some("../nope")).unwrap_err().to_string();
        assert_eq!(
            e,
            "no model \"../nope\" in these settings (models: reg, spam-cnb, spam-nb)"
        );
    }
}
