//! `model.path`: a file, or an MLflow registry URI. The setting keeps its
//! one string form; it is parsed once, when the settings load, so every
//! user matches on what it is instead of guessing from the text.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::mlflow::{MlflowClient, MlflowError, ModelUri};

/// Where the served model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A model file (symlinks followed: it may be a Kubernetes mount).
    File(PathBuf),
    /// A registered model version, by alias or by number (`models:/...`).
    Registry(ModelUri),
}

impl ModelSource {
    /// Parses a `model.path` value: `models:/NAME@ALIAS` or
    /// `models:/NAME/VERSION` names the registry (any other `models:/` text
    /// is an error, not a file name), anything else is a file.
    pub fn parse(s: &str) -> Result<Self, MlflowError> {
        if ModelUri::is_model_uri(s) {
            ModelUri::parse(s).map(Self::Registry)
        } else {
            Ok(Self::File(PathBuf::from(s)))
        }
    }

    /// The file, when the source is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Registry(_) => None,
        }
    }
}

impl From<PathBuf> for ModelSource {
    /// A path is a file, whatever it spells.
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => path.display().fmt(f),
            Self::Registry(uri) => uri.fmt(f),
        }
    }
}

impl Serialize for ModelSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::File(path) => path.serialize(s),
            Self::Registry(uri) => s.collect_str(uri),
        }
    }
}

impl<'de> Deserialize<'de> for ModelSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = PathBuf::deserialize(d)?;
        match path.to_str() {
            Some(s) => Self::parse(s).map_err(serde::de::Error::custom),
            None => Ok(Self::File(path)),
        }
    }
}

/// The registry client, when a source needs one (`wanted`), for the
/// tracking server at `uri` (`model.mlflow_uri`, which
/// [`super::Settings::load`] fills from `MLFLOW_TRACKING_URI` when unset):
/// `None` for files only, or without a server (reading the registry then
/// fails naming both settings).
pub(super) fn registry_client(
    wanted: bool,
    uri: Option<&str>,
) -> Result<Option<MlflowClient>, MlflowError> {
    match uri.filter(|u| !u.is_empty()) {
        Some(uri) if wanted => MlflowClient::new(uri).map(Some),
        _ => Ok(None),
    }
}
