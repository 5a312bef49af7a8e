//! `ApiError`: the only type that becomes an HTTP error response.
//!
//! Domain errors (artifact, gate, feedback) know nothing of HTTP; this module
//! maps them to a status and a stable snake_case code. Messages name what is
//! wrong with the request and never echo file paths, internals or request text.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::loader::LoadError;
use crate::monitoring::FeedbackError;

/// An error answer: status, stable code, human message.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code clients can match on.
    pub code: &'static str,
    /// What went wrong, for humans.
    pub message: String,
    /// Seconds a client should wait before retrying (503s).
    pub retry_after: Option<u32>,
}

/// An error answer's code, kept in the response's extensions: the access
/// log tells from it a server fault from a 5xx the client's request caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

impl ErrorCode {
    /// Whether a 5xx with this code is a fault of the server (logged at
    /// ERROR). `model_unavailable` is not: the client asked for a model that
    /// is known but not being served (unloaded, or its load refused, which
    /// was logged at ERROR when it happened); it stays a 503, retryable,
    /// but is logged at WARN, once per request.
    pub fn is_server_fault(self) -> bool {
        self.0 != "model_unavailable"
    }
}

/// `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of an error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(
            super::error_codes::is_documented(status.as_u16(), code),
            "error code {code} with status {status} is not in error_codes::ERROR_CODES"
        );
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 422 for a request that parsed but is not acceptable.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 404 for an unknown route.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// The error that goes with a bare status from a lower layer (timeouts,
    /// method routing), so every error body has the same shape.
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
            StatusCode::NOT_FOUND => ("not_found", "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "method not allowed on this route; see the Allow header",
            ),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ),
            StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "the service is unavailable"),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                ("headers_too_large", "the request headers are too large")
            }
            s if s.is_server_error() => ("internal_error", "internal error"),
            _ => ("http_error", "the request could not be served"),
        };
        Self::new(status, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<FeedbackError> for ApiError {
    fn from(e: FeedbackError) -> Self {
        let (status, code) = match e {
            FeedbackError::UnknownId => (StatusCode::NOT_FOUND, "unknown_prediction"),
            FeedbackError::Duplicate => (StatusCode::CONFLICT, "duplicate_feedback"),
            FeedbackError::InvalidLabel(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_label"),
        };
        Self::new(status, code, e.to_string())
    }
}

/// A model that could not be (re)loaded: 422 (503 when the registry did not
/// answer), the old model keeps serving.
impl From<LoadError> for ApiError {
    fn from(e: LoadError) -> Self {
        let code = match e {
            LoadError::Path => "invalid_model_path",
            LoadError::Registry(_) => {
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "registry_unavailable",
                    e.public_message(),
                )
            }
            LoadError::Gate(_) => "gate_rejected",
            LoadError::Artifact(_) => "invalid_model",
            LoadError::Holdout(_) => "holdout_unavailable",
            LoadError::OverBudget { .. } => "memory_budget_exceeded",
        };
        Self::unprocessable(code, e.public_message())
    }
}
