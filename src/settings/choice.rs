//! Settings whose value is one of a few words (`log.format`,
//! `feedback.log_fsync`): read in any case, since `JSON` and `json` can only
//! mean one thing, and refused in words that list the choices instead of
//! serde's "variant constructor" jargon.

use serde::de::{Deserialize, Deserializer, Error as _};

use super::{LogFormat, LogFsync};

/// A settings enum: its words, written lowercase, in the order they are listed.
pub trait Choice: Copy + 'static {
    /// Every value with the word that names it (what it serialises to).
    const CHOICES: &'static [(&'static str, Self)];

    /// The words, comma-separated: `json, pretty`.
    fn listed() -> String {
        let words: Vec<&str> = Self::CHOICES.iter().map(|(word, _)| *word).collect();
        words.join(", ")
    }

    /// The value `text` names, in any case and with surrounding whitespace
    /// ignored; else what is wrong, naming the choices and the text given
    /// (escaped: it came from a file or the environment).
    fn parse(text: &str) -> Result<Self, String> {
        Self::CHOICES
            .iter()
            .find(|(word, _)| word.eq_ignore_ascii_case(text.trim()))
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                format!(
                    "expected one of {}; got '{}'",
                    Self::listed(),
                    text.escape_debug()
                )
            })
    }
}

impl Choice for LogFormat {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("json", LogFormat::Json), ("pretty", LogFormat::Pretty)];
}

impl Choice for LogFsync {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("never", LogFsync::Never),
        ("interval", LogFsync::Interval),
        ("always", LogFsync::Always),
    ];
}

/// Reads a [`Choice`] from its word: the settings' `Deserialize` for each.
fn deserialize_choice<'de, D: Deserializer<'de>, T: Choice>(d: D) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    T::parse(&text).map_err(D::Error::custom)
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_choice(d)
    }
}

impl<'de> Deserialize<'de> for LogFsync {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_choice(d)
    }
}

/// The words of every enum setting, by key: what its documentation and
/// `serve --help` list.
pub(super) fn choices(key: &str) -> Option<String> {
    match key {
        "log.format" => Some(LogFormat::listed()),
        "feedback.log_fsync" => Some(LogFsync::listed()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each word is what the value serialises to, so `nbserve config` prints
    /// a value that reads back, and every variant has a word.
    #[test]
    fn words_round_trip_through_serde_in_any_case() {
        fn check<T: Choice + serde::Serialize + PartialEq + std::fmt::Debug>(variants: usize) {
            assert_eq!(T::CHOICES.len(), variants);
            for (word, value) in T::CHOICES {
                assert_eq!(serde_json::to_value(value).unwrap(), *word);
                for text in [word.to_string(), word.to_uppercase(), format!(" {word}\n")] {
                    assert_eq!(T::parse(&text), Ok(*value), "{text:?}");
                }
            }
        }
        check::<LogFormat>(2);
        check::<LogFsync>(3);
        assert_eq!(LogFormat::parse("Json"), Ok(LogFormat::Json));
    }

    #[test]
    fn a_wrong_word_is_refused_listing_the_choices() {
        assert_eq!(
            LogFormat::parse("xml"),
            Err("expected one of json, pretty; got 'xml'".to_owned())
        );
        assert_eq!(
            LogFsync::parse("sometimes\u{1b}[2J"),
            Err("expected one of never, interval, always; got 'sometimes\\u{1b}[2J'".to_owned())
        );
    }
}
