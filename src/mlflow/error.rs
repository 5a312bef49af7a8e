//! What can go wrong talking to MLflow. Every message is one line, holds no
//! secret, and quotes the server only with control characters escaped.

use std::time::Duration;

use super::Waiting;

/// Why an MLflow call failed. Messages are one line and hold no secret.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The tracking URI is not an `http(s)://` URL.
    #[error("invalid MLflow tracking URI {0:?}: expected http://host:port")]
    InvalidUri(String),
    /// `MLFLOW_TRACKING_SERVER_CERT_PATH` names no readable PEM bundle of
    /// CA certificates.
    #[error("MLFLOW_TRACKING_SERVER_CERT_PATH {path}: {reason}")]
    CaBundle {
        /// The file named.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A `models:/` URI that is neither `models:/NAME@ALIAS` nor `models:/NAME/VERSION`.
    #[error("invalid model URI {0:?}: expected models:/NAME@ALIAS or models:/NAME/VERSION")]
    InvalidModelUri(String),
    /// A registry source was configured without a tracking URI.
    #[error("{0} needs an MLflow tracking URI (MLFLOW_TRACKING_URI or model.mlflow_uri)")]
    NoTrackingUri(String),
    /// No connection or no complete exchange (refused, reset, connect
    /// timeout) after every attempt.
    #[error("MLflow at {server} unreachable after {attempts} attempts: {reason}")]
    Unreachable {
        /// The server, without credentials.
        server: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("MLflow {endpoint} answered {status}: {code}: {message}")]
    Api {
        /// The endpoint called (a path, no query).
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`).
        code: String,
        /// MLflow's message, cut to one short line.
        message: String,
    },
    /// The server answered 2xx with a body this client cannot read.
    #[error("MLflow {endpoint} answered with an unexpected body: {detail}")]
    Garbage {
        /// The endpoint called.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },
    /// A download larger than the caller's cap (`model.max_bytes`), refused
    /// from its declared length or after reading one byte past the cap.
    #[error("MLflow {endpoint} answered with more than {max_bytes} bytes (model.max_bytes)")]
    TooLarge {
        /// The endpoint called.
        endpoint: String,
        /// The cap.
        max_bytes: u64,
    },
    /// A JSON answer or error body larger than [`super::MAX_ANSWER_BYTES`], refused
    /// from its declared length or after reading one byte past the cap.
    #[error("MLflow {endpoint} answered {status} with more than {max_bytes} bytes (the cap on a registry answer); not read further")]
    AnswerTooLarge {
        /// The endpoint called.
        endpoint: String,
        /// HTTP status of the answer.
        status: u16,
        /// The cap.
        max_bytes: u64,
    },
    /// The server did not answer in time ([`Deadlines`]); not retried.
    #[error("MLflow {endpoint} did not send {waiting} within {limit:?} (deadline); gave up")]
    Deadline {
        /// The endpoint called.
        endpoint: String,
        /// What was being waited for.
        waiting: Waiting,
        /// The deadline that passed.
        limit: Duration,
    },
    /// An artifact URI this client cannot fetch through the tracking server.
    #[error(
        "artifact URI {0:?} is not served by the tracking server (expected mlflow-artifacts:/…)"
    )]
    UnsupportedArtifactUri(String),
    /// An artifact URI whose path could leave the run's artifacts once the
    /// server decodes it: `..` or `.` segments, in any percent-encoding,
    /// backslashes, encoded separators, control characters.
    #[error("artifact URI {0:?} has a path that is not a plain relative path (refused)")]
    UnsafeArtifactPath(String),
}

impl MlflowError {
    /// True for MLflow's `RESOURCE_DOES_NOT_EXIST`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, MlflowError::Api { code, .. } if code == "RESOURCE_DOES_NOT_EXIST")
    }

    /// True for MLflow's `RESOURCE_ALREADY_EXISTS`.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, MlflowError::Api { code, .. } if code == "RESOURCE_ALREADY_EXISTS")
    }
}
