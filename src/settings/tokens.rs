//! The two bearer tokens (`admin.token`, `feedback.token`): read from their
//! `*.token_file`, normalised and checked.
//!
//! The rules, and why:
//! - Surrounding whitespace is trimmed, from a file or a variable alike: a
//!   file written with `echo` ends in a newline, and an HTTP client cannot
//!   send a token with surrounding spaces anyway (header values are trimmed).
//! - What is left must be at least 8 characters, all visible ASCII
//!   (`!`..`~`): an empty or all-space token would open the endpoint to a
//!   bare `Bearer `, and a non-ASCII one cannot be typed reliably, nor sent
//!   in a header by every client. The message names the setting, never the
//!   token.
//! - The admin and feedback tokens must differ: the feedback token is handed
//!   to the clients that label, and must not also reload models.
//! - A token file must be a regular file of at most [`MAX_TOKEN_FILE_BYTES`]
//!   bytes. Symlinks are followed (Kubernetes mounts each secret key as a
//!   symlink through `..data/`), but the file finally opened is checked:
//!   `/dev/zero` would be read until memory runs out, and a FIFO is opened
//!   non-blocking so that it is refused instead of waiting for a writer.
//! - A token file other users can read or write is accepted with a warning
//!   ([`Settings::warnings`]): Kubernetes secret volumes are world-readable
//!   (0644) unless `defaultMode` says otherwise, so refusing would stop
//!   every default deployment, while group access is how a pod's `fsGroup`
//!   reads a 0440 secret.

use std::path::{Path, PathBuf};

use super::{Settings, SettingsError};

/// The largest token file read; a token is a few dozen bytes.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// The shortest token accepted.
const MIN_TOKEN_CHARS: usize = 8;

/// Moves the content of a `*.token_file` setting (named `file_key`) into its
/// `*.token` (named `token_key`), the two being exclusive, and trims the
/// token either way; a token file's content is checked here, so the message
/// names the file.
pub(super) fn read_token_file(
    (token_key, file_key): (&'static str, &'static str),
    token: &mut Option<String>,
    token_file: Option<&PathBuf>,
) -> Result<(), SettingsError> {
    if let Some(t) = token {
        *t = trim(t).to_owned();
    }
    let Some(path) = token_file else {
        return Ok(());
    };
    if token.is_some() {
        return Err(SettingsError::Invalid {
            key: file_key,
            message: format!("set {token_key} or {file_key}, not both"),
        });
    }
    let bytes = read_token_bytes(path).map_err(|source| SettingsError::TokenFile {
        key: file_key,
        path: path.clone(),
        source,
    })?;
    // Checked as bytes: a file that is not UTF-8 fails as non-ASCII.
    let read = trim_bytes(&bytes);
    if let Some(problem) = problem(read) {
        return Err(SettingsError::Invalid {
            key: file_key,
            message: format!("{}: the token {problem}", path.display()),
        });
    }
    *token = Some(String::from_utf8(read.to_vec()).expect("visible ASCII is UTF-8"));
    Ok(())
}

/// The checks on the two tokens' values, for [`Settings::validate`].
pub(super) fn validate(admin: Option<&str>, feedback: Option<&str>) -> Result<(), SettingsError> {
    for (key, token) in [("admin.token", admin), ("feedback.token", feedback)] {
        if let Some(problem) = token.and_then(|t| problem(t.as_bytes())) {
            return Err(SettingsError::Invalid {
                key,
                message: problem.to_owned(),
            });
        }
    }
    if admin.is_some() && admin == feedback {
        return Err(SettingsError::Invalid {
            key: "feedback.token",
            message: "must differ from admin.token: the clients that send labels would \
                      also be able to reload models"
                .to_owned(),
        });
    }
    Ok(())
}

/// A token file's bytes, read by the rules of [`crate::fsio`] for files an
/// operator names (symlinks followed; a regular file of at most
/// [`MAX_TOKEN_FILE_BYTES`]); the error without the path, which the
/// message names already.
fn read_token_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::fsio::read_regular_following(path, MAX_TOKEN_FILE_BYTES)
        .map_err(crate::fsio::FsError::into_io_error)
}

/// What is wrong with a (trimmed) token, in words that do not quote it.
fn problem(token: &[u8]) -> Option<&'static str> {
    if token.is_empty() {
        Some("is empty (or only whitespace)")
    } else if !token.iter().all(|b| (b'!'..=b'~').contains(b)) {
        Some(
            "must be visible ASCII characters only (letters, digits, punctuation: \
             no spaces, control or non-ASCII characters)",
        )
    } else if token.len() < MIN_TOKEN_CHARS {
        Some("must be at least 8 characters")
    } else {
        None
    }
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii_whitespace())
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace());
    match (start, end) {
        (Some(s), Some(e)) => &b[s..=e],
        _ => &[],
    }
}

impl Settings {
    /// Accepted but unsafe settings, one sentence each, for the operator's
    /// log: token files other users can read or write.
    pub fn warnings(&self) -> Vec<String> {
        let files = [
            ("admin.token_file", &self.admin.token_file),
            ("feedback.token_file", &self.feedback.token_file),
        ];
        files
            .into_iter()
            .filter_map(|(key, path)| {
                let path = path.as_ref()?;
                let mode = other_users_access(path)?;
                Some(format!(
                    "{key} {} can be {} by every user of this machine (mode {mode:04o}); \
                     make it readable by its owner (and group) only, e.g. chmod 0600 or \
                     Kubernetes defaultMode 0440 with an fsGroup",
                    path.display(),
                    if mode & 0o002 != 0 { "written" } else { "read" }
                ))
            })
            .collect()
    }
}

/// The permission bits of the file `path` names (symlinks followed), when
/// they let other users read or write it.
#[cfg(unix)]
fn other_users_access(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o006 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn other_users_access(_: &Path) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load_from(
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn file(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_owned()
    }

    #[test]
    fn surrounding_whitespace_is_trimmed_from_files_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(&dir, "t", b"  \tfrom-a-file-token \r\n\n");
        let s = load(&[
            ("NBSERVE__ADMIN__TOKEN_FILE", &f),
            ("NBSERVE__FEEDBACK__TOKEN", " labels-token\n"),
        ])
        .unwrap();
        assert_eq!(s.admin.token.as_deref(), Some("from-a-file-token"));
        assert_eq!(s.feedback.token.as_deref(), Some("labels-token"));
    }

    #[test]
    fn empty_blank_and_invisible_tokens_are_refused_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        let bad: [&[u8]; 7] = [
            b"",
            b"   \n",
            b"two words-token",
            b"tab\tinside-token",
            "caf\u{e9}-secret-token".as_bytes(),
            b"nul\0inside-token",
            b"\xff\xfe-not-utf8-token",
        ];
        for content in bad {
            let f = file(&dir, "t", content);
            let e = load(&[("NBSERVE__ADMIN__TOKEN_FILE", &f)]).unwrap_err();
            let m = e.to_string();
            assert!(
                m.starts_with(&format!(
                    "invalid setting admin.token_file: {f}: the token "
                )),
                "{m}"
            );
            assert!(!m.contains("token\t") && !m.contains("words"), "{m}");
            if let Ok(text) = std::str::from_utf8(content) {
                let text = text.trim();
                assert!(text.is_empty() || !m.contains(text), "quotes it: {m}");
            }
        }
        for value in ["", "        ", "two words-token", "caf\u{e9}-secret-token"] {
            let e = load(&[("NBSERVE__FEEDBACK__TOKEN", value)]).unwrap_err();
            let m = e.to_string();
            assert!(m.starts_with("invalid setting feedback.token: "), "{m}");
            assert!(value.trim().is_empty() || !m.contains(value.trim()), "{m}");
        }
    }

    #[test]
    fn one_secret_for_admin_and_feedback_is_refused() {
        let e = load(&[
            ("NBSERVE__ADMIN__TOKEN", "same-secret-1"),
            ("NBSERVE__FEEDBACK__TOKEN", " same-secret-1\n"),
        ])
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid setting feedback.token: must differ from admin.token"),
            "{e}"
        );
        assert!(!e.to_string().contains("same-secret-1"));
    }

    #[cfg(unix)]
    #[test]
    fn devices_fifos_and_large_files_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let big = file(&dir, "big", &[b'a'; MAX_TOKEN_FILE_BYTES as usize + 1]);
        for (path, says) in [
            ("/dev/zero", "not a regular file"),
            (fifo.to_str().unwrap(), "not a regular file"),
            (dir.path().to_str().unwrap(), "not a regular file"),
            (&big, "larger than 4096 bytes"),
        ] {
            let e = load(&[("NBSERVE__FEEDBACK__TOKEN_FILE", path)]).unwrap_err();
            let m = e.to_string();
            let want = format!("invalid setting feedback.token_file: cannot read {path}: {says}");
            assert!(m.starts_with(&want), "{m}");
        }
        let fits = file(&dir, "fits", &[b'a'; MAX_TOKEN_FILE_BYTES as usize]);
        let s = load(&[("NBSERVE__FEEDBACK__TOKEN_FILE", &fits)]).unwrap();
        assert_eq!(s.feedback.token.unwrap().len(), 4096);
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_secrets_are_read_and_open_files_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // How Kubernetes mounts a secret key: token -> ..data/token.
        std::fs::create_dir(dir.path().join("..2026_data")).unwrap();
        let target = file(&dir, "..2026_data/token", b"mounted-secret\n");
        std::os::unix::fs::symlink("..2026_data", dir.path().join("..data")).unwrap();
        let link = dir.path().join("token");
        std::os::unix::fs::symlink("..data/token", &link).unwrap();
        let link = link.to_str().unwrap();

        let chmod = |mode| {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        chmod(0o440);
        let s = load(&[("NBSERVE__ADMIN__TOKEN_FILE", link)]).unwrap();
        assert_eq!(s.admin.token.as_deref(), Some("mounted-secret"));
        assert!(s.warnings().is_empty(), "{:?}", s.warnings());

        chmod(0o644);
        let s = load(&[("NBSERVE__ADMIN__TOKEN_FILE", link)]).unwrap();
        assert_eq!(s.admin.token.as_deref(), Some("mounted-secret"));
        let w = s.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(&format!(
                "admin.token_file {link} can be read by every user of this machine (mode 0644)"
            )),
            "{w:?}"
        );
        assert!(!w[0].contains("mounted-secret"));
    }
}
