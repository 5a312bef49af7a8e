//! A JSON extractor that answers in the app's error shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Like `axum::Json`, but every rejection becomes an [`ApiError`] with a
/// stable code: 400 `invalid_json`, 415 `unsupported_media_type`,
/// 413 `payload_too_large`, 422 `invalid_request`.
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(map_rejection(rejection)),
        }
    }
}

fn map_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            ApiError::unprocessable("invalid_request", short(e.body_text()))
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            short(e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
        }
        JsonRejection::BytesRejection(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            "the request body could not be read",
        ),
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the request body is not valid JSON",
        ),
    }
}

/// serde's messages name the field and position; they can quote a short
/// piece of the input (an unknown variant or field name), so they are capped
/// to keep request text out of answers.
pub(crate) fn short(text: String) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
