//! `versions/history.json`: what the store keeps and what was in service,
//! validated on every read, so a name in it can never reach outside the
//! versions directory.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Longest version part of a kept file name.
const MAX_VERSION_PART: usize = 100;
/// Longest piece of a bad name quoted in an error.
const MAX_QUOTED: usize = 80;

/// The name of a kept file, exactly as the store writes them:
/// `NNNNNN-VERSION.json` — a sequence number (six digits or more), a dash,
/// the version with every character but ASCII letters, digits, `.`, `_`
/// and `-` replaced (no leading dot), and `.json`. It has no directory part,
/// so joined to the versions directory it stays inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeptName(String);

impl KeptName {
    /// The name for sequence number `seq` and model version `version`.
    pub fn new(seq: u64, version: &str) -> Self {
        let part: String = version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(MAX_VERSION_PART)
            .collect();
        Self(format!("{seq:06}-{}.json", part.trim_start_matches('.')))
    }

    /// `name` if it is one the store writes.
    pub fn parse(name: &str) -> Option<Self> {
        let (digits, rest) = name.split_once('-')?;
        let version = rest.strip_suffix(".json")?;
        let ok = (6..=20).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.parse::<u64>().is_ok()
            && version.len() <= MAX_VERSION_PART
            && !version.starts_with('.')
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        ok.then(|| Self(name.to_owned()))
    }

    /// The sequence number it starts with.
    pub fn seq(&self) -> u64 {
        let digits = self.0.split_once('-').map_or("", |(d, _)| d);
        digits.parse().expect("checked when made")
    }

    /// The file name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<Path> for KeptName {
    fn as_ref(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl fmt::Display for KeptName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<KeptName> for String {
    fn from(n: KeptName) -> Self {
        n.0
    }
}

impl TryFrom<String> for KeptName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Self::parse(&name).ok_or_else(|| {
            format!(
                "{} is not a kept file name (NNNNNN-VERSION.json, no directory part)",
                quoted(&name)
            )
        })
    }
}

/// `text` as a short, escaped quotation (it came from a file).
pub(super) fn quoted(text: &str) -> String {
    let clipped: String = text.chars().take(MAX_QUOTED).collect();
    let more = if clipped.len() < text.len() {
        "…"
    } else {
        ""
    };
    format!("{clipped:?}{more}")
}

/// One kept model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Sequence number (order of arrival).
    pub seq: u64,
    /// File name inside the versions directory.
    pub file: KeptName,
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// sha256 of the file.
    pub sha256: String,
    /// `retrain` (a promoted candidate), `replaced` (a model found in
    /// service, whatever made it, kept before it was replaced) or `adopted`
    /// (a kept file found in the directory but missing from the history,
    /// e.g. after a crash).
    pub origin: String,
    /// When it was kept (RFC 3339).
    pub added_at: String,
}

/// `versions/history.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// The next sequence number.
    pub next_seq: u64,
    /// Kept files, oldest first.
    pub entries: Vec<Entry>,
    /// What was put in service, in order; the last is in service.
    pub in_service: Vec<u64>,
    /// A promotion under way: the entry about to replace `model.path`,
    /// already on top of `in_service`. Written before the rename and
    /// cleared after it, so whoever reads it next can tell from
    /// `model.path`'s content whether the rename happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
}

impl History {
    /// Parses and validates `bytes`: every entry names a file this store
    /// writes, whose number is the entry's own, numbers are unique and
    /// below `next_seq`.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let h: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut seqs = HashSet::new();
        for (i, e) in h.entries.iter().enumerate() {
            if e.file.seq() != e.seq {
                return Err(format!(
                    "entry {i}: file {} does not carry its number {}",
                    quoted(e.file.as_str()),
                    e.seq
                ));
            }
            if !seqs.insert(e.seq) {
                return Err(format!("entry {i}: number {} listed twice", e.seq));
            }
            if e.seq >= h.next_seq {
                return Err(format!(
                    "entry {i}: number {} is not below next_seq {}",
                    e.seq, h.next_seq
                ));
            }
        }
        Ok(h)
    }

    /// The entry numbered `seq`.
    pub fn entry(&self, seq: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.seq == seq)
    }
}

/// The name and version an artifact's bytes declare (`model.name`,
/// `model.version`), without validating the rest.
pub(super) fn declared_model(bytes: &[u8]) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Head {
        model: Id,
    }
    #[derive(Deserialize)]
    struct Id {
        name: String,
        version: String,
    }
    let head: Head = serde_json::from_slice(bytes).ok()?;
    Some((head.model.name, head.model.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_names_the_store_writes_are_kept_names() {
        for version in [
            "v1",
            "3/x",
            "../../etc",
            "",
            "..",
            "a b\u{1b}[31m",
            &"x".repeat(300),
        ] {
            let name = KeptName::new(7, version);
            assert_eq!(KeptName::parse(name.as_str()), Some(name.clone()), "{name}");
            assert_eq!(name.seq(), 7);
        }
        assert_eq!(KeptName::new(1234567, "v").as_str(), "1234567-v.json");
        for bad in [
            "../../outside/victim.txt",
            "/etc/passwd",
            "000001-../../x.json",
            "000001-a/b.json",
            "000001-a\\b.json",
            "000001-.hidden.json",
            "000001-a.json/",
            "00001-a.json",
            "000001-a.txt",
            "000001a.json",
            "x00001-a.json",
            "99999999999999999999999-a.json",
            "",
        ] {
            assert_eq!(KeptName::parse(bad), None, "{bad}");
        }
    }

    fn history(file: &str, seq: u64, next: u64) -> String {
        format!(
            r#"{{"next_seq":{next},"entries":[{{"seq":{seq},"file":{file:?},"name":"m","version":"v",
            "sha256":"00","origin":"retrain","added_at":"2026-01-01T00:00:00Z"}}],"in_service":[{seq}]}}"#
        )
    }

    #[test]
    fn a_history_naming_files_outside_the_store_is_refused() {
        assert!(History::parse(history("000001-v.json", 1, 2).as_bytes()).is_ok());
        for (file, seq, next, why) in [
            ("../../outside/victim.txt", 1, 2, "not a kept file name"),
            ("/tmp/victim", 1, 2, "not a kept file name"),
            ("000002-v.json", 1, 3, "does not carry its number"),
            ("000001-v.json", 1, 1, "not below next_seq"),
        ] {
            let e = History::parse(history(file, seq, next).as_bytes()).unwrap_err();
            assert!(e.contains(why), "{file}: {e}");
        }
        let long = format!("../{}", "a".repeat(10_000));
        let e = History::parse(history(&long, 1, 2).as_bytes()).unwrap_err();
        assert!(e.len() < 400, "the quotation is clipped: {e}");
    }
}
