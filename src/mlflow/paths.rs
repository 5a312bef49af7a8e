//! Artifact URIs the server hands back (a run's `artifact_uri`, a model
//! version's `source`) turned into paths under the proxied artifact store,
//! refusing any that could leave the run's artifacts.
//!
//! The check is on what the path means once decoded, not on how it is
//! spelled: the URL parser and the tracking server both percent-decode, and
//! the parser treats `%2e%2e` as `..` (as the WHATWG URL standard says), so
//! a literal `..` test alone lets `%2e%2e`, `%2E%2e` or `%252e%252e` through.

use super::MlflowError;

/// Most decoding rounds applied to a segment: every percent-encoding layer
/// a chain of servers could peel off. A segment still changing after that
/// is refused.
const DECODE_ROUNDS: usize = 4;

/// The proxied-artifact path for an `mlflow-artifacts:` URI, with or without
/// an authority (`mlflow-artifacts:/1/…`, `mlflow-artifacts://host:port/1/…`).
pub(super) fn proxied_path(uri: &str) -> Result<String, MlflowError> {
    let rest = uri
        .strip_prefix("mlflow-artifacts:")
        .ok_or_else(|| MlflowError::UnsupportedArtifactUri(uri.to_owned()))?;
    let rest = match rest.strip_prefix("//") {
        Some(with_host) => with_host.find('/').map_or("", |i| &with_host[i..]),
        None => rest,
    };
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return Err(MlflowError::UnsupportedArtifactUri(uri.to_owned()));
    }
    if !rest.split('/').all(plain_segment) {
        return Err(MlflowError::UnsafeArtifactPath(uri.to_owned()));
    }
    Ok(format!("/api/2.0/mlflow-artifacts/artifacts/{rest}"))
}

/// True for one path segment that stays one ordinary name however many
/// times it is decoded: not empty, `.` or `..`, and no separator (`/`,
/// `\`), query or fragment mark, or control character, spelled out or
/// percent-encoded.
fn plain_segment(raw: &str) -> bool {
    let mut segment = raw.as_bytes().to_vec();
    for _ in 0..=DECODE_ROUNDS {
        if segment.is_empty()
            || segment == b"."
            || segment == b".."
            || segment
                .iter()
                .any(|&b| matches!(b, b'/' | b'\\' | b'?' | b'#') || b.is_ascii_control())
        {
            return false;
        }
        match percent_decode(&segment) {
            None => return true,
            Some(decoded) => segment = decoded,
        }
    }
    false
}

/// `bytes` with every `%XX` decoded; `None` when there is none to decode.
fn percent_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        let pair = bytes
            .get(i + 1..i + 3)
            .and_then(|p| Some((hex(p[0])?, hex(p[1])?)));
        match (bytes[i], pair) {
            (b'%', Some((hi, lo))) => {
                out.push(hi << 4 | lo);
                changed = true;
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_paths_with_and_without_authority() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts/model/model.json").unwrap(),
            "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.json"
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://h:5000/1/abc/artifacts").unwrap(),
            "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts"
        );
        // An ordinary encoded character in a name is still a name.
        assert!(proxied_path("mlflow-artifacts:/1/abc/artifacts/my%20model/model.json").is_ok());
        assert!(proxied_path("mlflow-artifacts:/1/abc/artifacts/v1.2..3/m.json").is_ok());
        assert!(proxied_path("s3://bucket/x").is_err());
        assert!(proxied_path("mlflow-artifacts:/").is_err());
    }

    #[test]
    fn traversal_is_refused_however_it_is_spelled() {
        for path in [
            "1/../../etc",
            "1/abc/%2e%2e/%2e%2e/x",
            "1/abc/%2E%2e/x",
            "1/abc/.%2E/x",
            "1/abc/%2e./x",
            "1/abc/%252e%252e/x",
            "1/abc/%25252e%25252E/x",
            "1/abc/%2e/x",
            "1/abc/./x",
            "1/abc/..%2fx",
            "1/abc/..%2Fx",
            "1/abc/%2e%2e%2f%2e%2e%2fetc",
            "1/abc/..%5cx",
            "1/abc/..\\x",
            "1/abc\\..\\..\\x",
            "1/abc/%5c..%5cx",
            "1/abc/x%3f/y",
            "1/abc/x%23/y",
            "1/abc/x%00y",
            "1/abc/x%0ay",
            "1/abc//x",
            "1/abc/%2525252525252e",
        ] {
            let uri = format!("mlflow-artifacts:/{path}");
            let e = proxied_path(&uri).unwrap_err();
            assert!(
                matches!(e, MlflowError::UnsafeArtifactPath(_)),
                "{path}: {e}"
            );
        }
    }

    #[test]
    fn a_refused_uri_prints_escaped() {
        let e = proxied_path("mlflow-artifacts:/1/x\u{1b}[31m/..").unwrap_err();
        assert!(!e.to_string().chars().any(char::is_control), "{e}");
    }
}
