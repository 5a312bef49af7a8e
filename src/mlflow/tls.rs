//! The certificates an `https://` tracking server is trusted by: the Mozilla
//! roots compiled into the binary (the scratch image has no system store),
//! and the CA bundle MLflow's own variable names, for a server behind a
//! private CA.

use std::path::Path;

use super::MlflowError;

/// MLflow's variable for a PEM bundle of CA certificates to trust (the same
/// meaning as in MLflow's Python client).
pub const CA_BUNDLE_VAR: &str = "MLFLOW_TRACKING_SERVER_CERT_PATH";

/// The largest CA bundle read: Debian's whole `ca-certificates.crt` is about
/// 220 KB.
const MAX_BUNDLE_BYTES: u64 = 4 << 20;

/// The extra CA certificates for `https://` servers: those of the bundle
/// [`CA_BUNDLE_VAR`] names, none when it is unset or empty.
pub(super) fn extra_roots() -> Result<Vec<reqwest::Certificate>, MlflowError> {
    match std::env::var_os(CA_BUNDLE_VAR).filter(|v| !v.is_empty()) {
        Some(path) => read_bundle(Path::new(&path)),
        None => Ok(Vec::new()),
    }
}

/// The certificates of the PEM bundle at `path` (symlinks followed: a
/// Kubernetes secret or config map mount); a file that holds none is an
/// error, not a silent fallback to the public roots.
pub(super) fn read_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, MlflowError> {
    let refused = |reason: String| MlflowError::CaBundle {
        path: path.display().to_string().escape_debug().to_string(),
        reason,
    };
    let pem = crate::fsio::read_regular_following(path, MAX_BUNDLE_BYTES)
        .map_err(|e| refused(e.into_io_error().to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|_| refused("not a PEM bundle of certificates".into()))?;
    if certs.is_empty() {
        return Err(refused("holds no PEM certificate".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_certificates_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let e = read_bundle(&empty).unwrap_err().to_string();
        assert!(e.starts_with("MLFLOW_TRACKING_SERVER_CERT_PATH "), "{e}");
        assert!(e.ends_with("empty.pem: holds no PEM certificate"), "{e}");
        let e = read_bundle(&dir.path().join("missing.pem")).unwrap_err();
        assert!(e.to_string().contains("missing.pem: "), "{e}");
        assert!(
            read_bundle(Path::new("/dev/zero")).is_err(),
            "not a regular file"
        );
    }
}
