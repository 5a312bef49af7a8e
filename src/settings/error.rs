//! Why settings could not be loaded, in words that name the key.

use std::path::PathBuf;

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or environment had an unknown key or an invalid value.
    #[error("invalid settings: {0}")]
    Config(config::ConfigError),
    /// A value does not fit its key's type (e.g. a port above 65535).
    #[error("invalid setting {key}: must be {expected} (got {found})")]
    Type {
        /// The key, e.g. `server.port`.
        key: String,
        /// What the key takes, in words.
        expected: String,
        /// The value that was given.
        found: String,
    },
    /// A value its key's reader refused, e.g. `log.format = "xml"`: the
    /// reader's own words, after the key.
    #[error("invalid setting {key}: {message}")]
    Refused {
        /// The key, e.g. `log.format`.
        key: String,
        /// What is wrong, e.g. "expected one of json, pretty; got 'xml'".
        message: String,
    },
    /// `admin.token_file` or `feedback.token_file` could not be read.
    #[error("invalid setting {key}: cannot read {path}: {source}")]
    TokenFile {
        /// The key, e.g. `admin.token_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A value is out of its allowed range.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// The key, e.g. `gate.min_f1_macro`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl From<config::ConfigError> for SettingsError {
    /// Names integer ranges in words: config says "expected an unsigned 16
    /// bit integer", a user wants to read "0–65535"; and puts the key first
    /// in a reader's own message (config appends "for key `...`").
    fn from(e: config::ConfigError) -> Self {
        use config::ConfigError::{At, Message, Type};
        match e {
            At {
                error,
                key: Some(key),
                ..
            } if matches!(*error, Message(_)) => SettingsError::Refused {
                key,
                message: error.to_string(),
            },
            Type {
                unexpected,
                expected,
                key: Some(key),
                ..
            } => {
                let expected = integer_range(expected).unwrap_or_else(|| expected.to_owned());
                // config does not export `Unexpected`; its text is e.g.
                // "64-bit unsigned integer `70000`": keep the quoted value.
                let found = unexpected.to_string();
                let found = match found.split('`').nth(1) {
                    Some(value) => value.to_owned(),
                    None => found,
                };
                SettingsError::Type {
                    key,
                    expected,
                    found,
                }
            }
            other => SettingsError::Config(other),
        }
    }
}

/// "an unsigned 16 bit integer" → "an integer from 0 to 65535".
pub(super) fn integer_range(expected: &str) -> Option<String> {
    let (signed, rest) = if let Some(r) = expected.strip_prefix("an unsigned ") {
        (false, r)
    } else {
        (true, expected.strip_prefix("an signed ")?)
    };
    let bits: u32 = rest.strip_suffix(" bit integer")?.parse().ok()?;
    if !(1..=64).contains(&bits) {
        return None;
    }
    Some(if signed {
        let max = (1i128 << (bits - 1)) - 1;
        format!("an integer from {} to {max}", -max - 1)
    } else {
        format!("an integer from 0 to {}", (1u128 << bits) - 1)
    })
}
