//! A JSON extractor that answers in the app's error shape.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
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
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    "the request body could not be read",
                )
            }
        })?;
        // serde's derived structs also accept a JSON array of their fields
        // in order (`["text"]` for `{"text": ...}`); the API takes objects only.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "the request body must be a JSON object",
            ));
        }
        let _decode = tracing::debug_span!("decode", body_bytes = bytes.len()).entered();
        // Plain serde_json first. axum's `Json` tracks the path of every
        // value it decodes (to name it in an error), copying each field
        // name as it goes; the same bytes are decoded again through it only
        // when they fail, for its message.
        if let Ok(v) = serde_json::from_slice::<T>(&bytes) {
            return Ok(Self(v));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(map_rejection(rejection)),
        }
    }
}

/// `application/json` or `application/*+json`, parameters ignored (as `axum::Json`).
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().as_bytes();
    let starts = |p: &str| {
        essence
            .get(..p.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(p.as_bytes()))
    };
    let ends = |p: &str| {
        essence
            .len()
            .checked_sub(p.len())
            .is_some_and(|at| essence[at..].eq_ignore_ascii_case(p.as_bytes()))
    };
    essence.eq_ignore_ascii_case(b"application/json") || (starts("application/") && ends("+json"))
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

/// serde's messages name the field and position; they can quote a piece of
/// the input: a string value (`invalid type: string "…"` — request text) is
/// replaced by `"…"`, and what is left (an unknown field or variant name) is
/// capped, to keep request text out of answers and logs.
pub(crate) fn short(text: String) -> String {
    const MAX: usize = 200;
    let text = if text.contains('"') {
        redact_quoted(&text)
    } else {
        text
    };
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Replaces the content of every double-quoted piece of `text` by `…`
/// (serde quotes strings Debug-escaped, so `\"` does not end one).
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' {
            let mut escaped = false;
            for c in chars.by_ref() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => break,
                    _ => {}
                }
            }
            out.push_str("…\"");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_told_apart_without_case() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            is_json_content_type(&h)
        };
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ",
            "application/problem+json",
            "APPLICATION/VND.API+JSON;x=y",
        ] {
            assert!(with(json), "{json}");
        }
        for other in [
            "text/json",
            "application/jsonp",
            "application/+json2",
            "application/json+x",
            "application/xml",
            "application/",
            "",
        ] {
            assert!(!with(other), "{other}");
        }
        assert!(!is_json_content_type(&HeaderMap::new()));
    }

    #[test]
    fn quoted_input_is_redacted_and_the_rest_kept() {
        let serde = r#"texts: invalid type: string "my \"private\" words", expected a sequence at line 1 column 30"#;
        assert_eq!(
            short(serde.to_owned()),
            r#"texts: invalid type: string "…", expected a sequence at line 1 column 30"#
        );
        assert_eq!(short("unknown field `x`".to_owned()), "unknown field `x`");
        assert_eq!(short("cut \"open".to_owned()), "cut \"…\"");
    }
}
