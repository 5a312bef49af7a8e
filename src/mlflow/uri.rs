//! `models:/NAME@ALIAS` and `models:/NAME/VERSION`, MLflow's model URIs;
//! and URLs made fit to print.

use std::fmt;

use super::MlflowError;

/// A registered model version, named by alias or by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// `models:/NAME@ALIAS`: whatever version the alias points at.
    Alias {
        /// Registered model name.
        name: String,
        /// Alias, e.g. `champion`.
        alias: String,
    },
    /// `models:/NAME/VERSION`: one fixed version.
    Version {
        /// Registered model name.
        name: String,
        /// Version number.
        version: String,
    },
}

impl ModelUri {
    /// True when `s` is meant as a model URI (it may still be invalid).
    pub fn is_model_uri(s: &str) -> bool {
        s.starts_with("models:/")
    }

    /// Parses `models:/NAME@ALIAS` or `models:/NAME/VERSION`.
    pub fn parse(s: &str) -> Result<Self, MlflowError> {
        let invalid = || MlflowError::InvalidModelUri(s.to_owned());
        let rest = s.strip_prefix("models:/").ok_or_else(invalid)?;
        let ok = |part: &str| !part.is_empty() && !part.contains('/');
        if let Some((name, alias)) = rest.split_once('@') {
            if ok(name) && ok(alias) && !alias.contains('@') {
                return Ok(ModelUri::Alias {
                    name: name.to_owned(),
                    alias: alias.to_owned(),
                });
            }
        } else if let Some((name, version)) = rest.split_once('/') {
            if ok(name) && !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(ModelUri::Version {
                    name: name.to_owned(),
                    version: version.to_owned(),
                });
            }
        }
        Err(invalid())
    }

    /// The registered model's name.
    pub fn name(&self) -> &str {
        match self {
            ModelUri::Alias { name, .. } | ModelUri::Version { name, .. } => name,
        }
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelUri::Alias { name, alias } => write!(f, "models:/{name}@{alias}"),
            ModelUri::Version { name, version } => write!(f, "models:/{name}/{version}"),
        }
    }
}

/// `url` with its user-info (user name and password alike) replaced by
/// `<redacted>`, for anything printed or logged: a token is often passed as
/// the user name (`http://TOKEN@host`). Text that is not a URL with
/// user-info comes back unchanged. Only the authority is looked at, so an
/// `@` in the path or query is left alone.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority = rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]);
    match authority.rfind('@') {
        Some(at) => format!("{}<redacted>@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_round_trips() {
        for s in ["models:/spam@champion", "models:/spam/3"] {
            assert_eq!(ModelUri::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            ModelUri::parse("models:/spam@champion").unwrap(),
            ModelUri::Alias {
                name: "spam".into(),
                alias: "champion".into()
            }
        );
    }

    #[test]
    fn refuses_malformed_uris() {
        for s in [
            "models:/",
            "models:/spam",
            "models:/spam/",
            "models:/spam/latest",
            "models:/@champion",
            "models:/spam@",
            "models:/a/b/c",
            "runs:/abc/model",
        ] {
            assert!(ModelUri::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn user_info_is_redacted_and_nothing_else() {
        for (url, printed) in [
            ("http://tok@h:5000", "http://<redacted>@h:5000"),
            ("http://u:p@h:5000/x", "http://<redacted>@h:5000/x"),
            ("https://a%40b:p@w@h/x?y=1", "https://<redacted>@h/x?y=1"),
            ("http://:secret@h", "http://<redacted>@h"),
            ("http://h:5000/x@y?z=a@b#c@d", "http://h:5000/x@y?z=a@b#c@d"),
            ("http://h:5000", "http://h:5000"),
            ("models:/spam@champion", "models:/spam@champion"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), printed, "{url}");
        }
    }
}
