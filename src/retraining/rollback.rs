//! Rollback: the previous kept version (or one named) back into
//! `model.path`, under the store's lock, only when it is still the file
//! that was kept and still one the servers would serve.

use std::path::PathBuf;
use std::time::Duration;

use crate::artifact::ModelId;
use crate::fsio::sha256_hex;
use crate::gate::{self, GateError, GatePass, ServingRule};
use crate::mlflow::ModelUri;
use crate::settings::{ModelSource, Settings};

use super::current::read_model_file;
use super::store::{self, Store, StoreError};

/// A rollback done.
#[derive(Debug, Clone, PartialEq)]
pub struct RolledBack {
    /// `model.path`, which now holds the version.
    pub path: PathBuf,
    /// The model put back.
    pub model: ModelId,
    /// Its kept file's name in `model.dir/versions`.
    pub file: String,
    /// The gate's verdict on it.
    pub pass: GatePass,
}

/// Why nothing was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// `model.path` names the registry, which keeps its own versions.
    #[error("model.path {0} is a registry URI: the registry keeps its versions; move the alias back with `nbserve promote`")]
    RegistrySource(ModelUri),
    /// The store could not be locked, or names nothing to roll back to.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The kept file cannot be read.
    #[error("not rolled back, nothing changed: {0}")]
    Unreadable(StoreError),
    /// The kept file is not the bytes that were kept.
    #[error("not rolled back, nothing changed: {path} has changed since it was kept as version {version} (sha256 {actual}, history says {expected})")]
    Changed {
        /// The kept file.
        path: PathBuf,
        /// The version it was kept as.
        version: String,
        /// Its sha256 now.
        actual: String,
        /// The history's.
        expected: String,
    },
    /// The servers would not serve it.
    #[error("not rolled back, nothing changed: {path}: {source}")]
    Refused {
        /// The kept file.
        path: PathBuf,
        /// Why.
        source: GateError,
    },
}

/// Puts the kept version `to` (default: the one in service before the
/// current one) back into `model.path`, waiting up to `lock_wait` for a
/// retrain or another rollback to finish.
pub fn rollback(
    settings: &Settings,
    to: Option<&str>,
    lock_wait: Duration,
) -> Result<RolledBack, RollbackError> {
    let path = match &settings.model.path {
        ModelSource::File(path) => path,
        ModelSource::Registry(uri) => return Err(RollbackError::RegistrySource(uri.clone())),
    };
    let _lock = store::lock(&settings.model.dir, lock_wait)?;
    let store = Store::new(&settings.model.dir, settings.model.max_bytes);
    let serving = read_model_file(path, settings.model.max_bytes)
        .ok()
        .map(|s| sha256_hex(&s.bytes));
    let plan = store.plan_rollback(serving.as_deref(), to)?;
    let bytes = store
        .read_kept(&plan.target)
        .map_err(RollbackError::Unreadable)?;
    // The history's sha256 is what was kept: a file changed since (by hand,
    // by a bad disk) is not the version the operator asked for.
    let actual = sha256_hex(&bytes);
    if actual != plan.target.sha256 {
        return Err(RollbackError::Changed {
            path: plan.path,
            version: plan.target.version,
            actual,
            expected: plan.target.sha256,
        });
    }
    let servable =
        gate::load_gated(bytes.as_slice(), &ServingRule::from(settings)).map_err(|source| {
            RollbackError::Refused {
                path: plan.path.clone(),
                source,
            }
        })?;
    let entry = store.apply_rollback(plan, path, &bytes)?;
    Ok(RolledBack {
        path: path.clone(),
        model: servable.model.meta.model,
        file: entry.file.into(),
        pass: servable.pass,
    })
}
