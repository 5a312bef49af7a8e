//! The settings as a user looks them up: every key with its environment
//! variable and default (read from [`Settings::default`], so a new setting is
//! listed without anyone remembering to), and the rule of each key that has
//! one beyond its type, in the words its error uses.
//!
//! `serve --help` prints [`variables`]; the settings documentation states
//! every [`rule`] (`defaults_are_the_documented_ones` checks it), and a test
//! below breaks each rule and compares the error with its text.

use serde_json::Value;

use super::{choice, Settings};

/// Settings that must be above zero: a zero limit would refuse everything
/// (or, for the timeouts, time out everything).
const POSITIVE: &[&str] = &[
    "server.request_timeout_ms",
    "server.header_read_timeout_ms",
    "server.body_limit_bytes",
    "server.max_text_bytes",
    "server.max_batch_size",
    "server.max_concurrency",
    "server.max_connections",
    "server.write_timeout_ms",
    "model.max_bytes",
    "gate.max_memory_bytes",
    "feedback.capacity",
    "feedback.window",
];

/// The rule of a positive setting, and its error's words.
const MUST_BE_POSITIVE: &str = "must be > 0";

/// The other rules, by key. Where a key's error is one fixed text, this is
/// that text (the test below checks it); the token rules summarise the few
/// errors that name what exactly is wrong.
const RULES: &[(&str, &str)] = &[
    (
        "server.max_inflight_body_bytes",
        "must be at least server.body_limit_bytes",
    ),
    ("gate.min_f1_macro", "must be a number within [0, 1]"),
    (
        "model.path",
        "a file, or an MLflow registry URI models:/NAME@ALIAS or models:/NAME/VERSION \
         (any other models:/ text is refused)",
    ),
    (
        "model.mlflow_uri",
        "an http:// or https:// URL, checked when model.path is a models:/ URI",
    ),
    (
        "admin.token",
        "surrounding whitespace is trimmed, then it must be at least 8 characters, \
         visible ASCII only (! to ~)",
    ),
    (
        "admin.token_file",
        "exclusive with admin.token; a regular file of at most 4096 bytes \
         (symlinks followed) holding a token that follows the rule of admin.token",
    ),
    (
        "feedback.token",
        "the rule of admin.token, and must differ from admin.token",
    ),
    (
        "feedback.token_file",
        "exclusive with feedback.token; read and checked like admin.token_file",
    ),
    (
        "feedback.keep_text",
        "needs feedback.log_path: kept texts only leave the server in feedback log lines",
    ),
    (
        "feedback.accept_examples",
        "needs feedback.log_path: examples are appended to the feedback log",
    ),
    (
        "feedback.text_budget_bytes",
        "must be > 0 with feedback.keep_text",
    ),
    (
        "learning.register",
        "needs model.mlflow_uri (or MLFLOW_TRACKING_URI): the tracking server a promoted challenger is registered on",
    ),
];

/// The rule `key` (e.g. `server.port`'s section and name, `server.port`)
/// must follow beyond its type, in words; `None` when any value of its type
/// will do. Enum settings list their words.
pub fn rule(key: &str) -> Option<String> {
    if POSITIVE.contains(&key) {
        return Some(MUST_BE_POSITIVE.to_owned());
    }
    if let Some(words) = choice::choices(key) {
        return Some(format!("one of {words} (any case)"));
    }
    RULES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, rule)| (*rule).to_owned())
}

/// One setting as a user sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The key, e.g. `server.port`.
    pub key: String,
    /// Its environment variable, e.g. `NBSERVE__SERVER__PORT`.
    pub env: String,
    /// The built-in default as it is written in the variable; `None` when
    /// the setting is unset by default.
    pub default: Option<String>,
    /// Its [`rule`], if it has one.
    pub rule: Option<String>,
}

/// Every setting, sections and keys in alphabetical order, read from the
/// serialised [`Settings::default`].
pub fn variables() -> Vec<Variable> {
    let defaults = serde_json::to_value(Settings::default()).expect("settings serialise");
    let mut out = Vec::new();
    collect(&mut out, "", &defaults);
    out
}

fn collect(out: &mut Vec<Variable>, prefix: &str, value: &Value) {
    if let Value::Object(fields) = value {
        for (name, field) in fields {
            let key = match prefix {
                "" => name.clone(),
                _ => format!("{prefix}.{name}"),
            };
            collect(out, &key, field);
        }
        return;
    }
    let default = match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    out.push(Variable {
        env: format!("NBSERVE__{}", prefix.replace('.', "__").to_uppercase()),
        rule: rule(prefix),
        key: prefix.to_owned(),
        default,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, super::super::SettingsError> {
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::load_from(None, env)
    }

    #[test]
    fn every_setting_is_listed_with_its_variable_and_default() {
        let vars = variables();
        let port = vars.iter().find(|v| v.key == "server.port").unwrap();
        assert_eq!(port.env, "NBSERVE__SERVER__PORT");
        assert_eq!(port.default.as_deref(), Some("8080"));
        let token = vars.iter().find(|v| v.key == "admin.token").unwrap();
        assert_eq!(token.default, None);
        assert!(token.rule.as_deref().unwrap().contains("at least 8"));
        let format = vars.iter().find(|v| v.key == "log.format").unwrap();
        assert_eq!(format.default.as_deref(), Some("pretty"));
        assert_eq!(
            format.rule.as_deref(),
            Some("one of json, pretty (any case)")
        );
        let defaults = serde_json::to_value(Settings::default()).unwrap();
        let count: usize = defaults
            .as_object()
            .unwrap()
            .values()
            .map(|section| section.as_object().unwrap().len())
            .sum();
        assert_eq!(vars.len(), count);
        // Every rule is about a setting that exists.
        let keys: Vec<&str> = vars.iter().map(|v| v.key.as_str()).collect();
        for key in POSITIVE.iter().chain(RULES.iter().map(|(k, _)| k)) {
            assert!(keys.contains(key), "{key}");
        }
    }

    /// Each rule is real: breaking it stops the load with an error naming
    /// its key, in the rule's own words where the rule is one fixed text.
    /// A rule added without a case here fails the test.
    #[test]
    fn breaking_a_rule_is_refused_in_its_words() {
        let log = (
            "NBSERVE__FEEDBACK__LOG_PATH",
            "/tmp/nbserve-rules-test.jsonl",
        );
        // (key, the environment that breaks it, whether the error is the rule)
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, bool);
        let cases: &[Case] = &[
            (
                "server.max_inflight_body_bytes",
                vec![("NBSERVE__SERVER__MAX_INFLIGHT_BODY_BYTES", "1")],
                true,
            ),
            (
                "gate.min_f1_macro",
                vec![("NBSERVE__GATE__MIN_F1_MACRO", "-0.1")],
                true,
            ),
            (
                "model.path",
                vec![("NBSERVE__MODEL__PATH", "models:/spam")],
                false,
            ),
            (
                "model.mlflow_uri",
                vec![
                    ("NBSERVE__MODEL__PATH", "models:/spam@champion"),
                    ("NBSERVE__MODEL__MLFLOW_URI", "ftp://mlflow"),
                ],
                false,
            ),
            (
                "admin.token",
                vec![("NBSERVE__ADMIN__TOKEN", "short")],
                false,
            ),
            (
                "admin.token_file",
                vec![
                    ("NBSERVE__ADMIN__TOKEN", "long-enough"),
                    ("NBSERVE__ADMIN__TOKEN_FILE", "/dev/null"),
                ],
                false,
            ),
            (
                "feedback.token",
                vec![
                    ("NBSERVE__ADMIN__TOKEN", "one-secret"),
                    ("NBSERVE__FEEDBACK__TOKEN", "one-secret"),
                ],
                false,
            ),
            (
                "feedback.token_file",
                vec![
                    ("NBSERVE__FEEDBACK__TOKEN", "long-enough"),
                    ("NBSERVE__FEEDBACK__TOKEN_FILE", "/dev/null"),
                ],
                false,
            ),
            (
                "feedback.keep_text",
                vec![("NBSERVE__FEEDBACK__KEEP_TEXT", "true")],
                true,
            ),
            (
                "feedback.accept_examples",
                vec![("NBSERVE__FEEDBACK__ACCEPT_EXAMPLES", "true")],
                true,
            ),
            (
                "learning.register",
                vec![("NBSERVE__LEARNING__REGISTER", "spam")],
                true,
            ),
            (
                "feedback.text_budget_bytes",
                vec![
                    log,
                    ("NBSERVE__FEEDBACK__KEEP_TEXT", "true"),
                    ("NBSERVE__FEEDBACK__TEXT_BUDGET_BYTES", "0"),
                ],
                true,
            ),
            ("log.format", vec![("NBSERVE__LOG__FORMAT", "xml")], false),
            (
                "feedback.log_fsync",
                vec![("NBSERVE__FEEDBACK__LOG_FSYNC", "sometimes")],
                false,
            ),
        ];
        let positive = POSITIVE.iter().map(|key| {
            let var = format!("NBSERVE__{}", key.replace('.', "__").to_uppercase());
            (*key, var)
        });
        let positive: Vec<(&str, String)> = positive.collect();
        let mut covered: Vec<String> = Vec::new();
        let mut check = |key: &str, env: &[(&str, &str)], exact: bool| {
            let e = load(env).unwrap_err().to_string();
            let rule = rule(key).unwrap();
            if exact {
                assert_eq!(e, format!("invalid setting {key}: {rule}"));
            } else {
                assert!(e.starts_with(&format!("invalid setting {key}: ")), "{e}");
            }
            covered.push(key.to_owned());
        };
        for (key, var) in &positive {
            check(key, &[(var.as_str(), "0")], true);
        }
        for (key, env, exact) in cases {
            check(key, env, *exact);
        }
        covered.sort_unstable();
        let mut ruled: Vec<String> = variables()
            .into_iter()
            .filter(|v| v.rule.is_some())
            .map(|v| v.key)
            .collect();
        ruled.sort_unstable();
        assert_eq!(covered, ruled, "every rule has a case here");
    }
}
