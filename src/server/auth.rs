//! Bearer-token checks, shared by the admin endpoints and the endpoints that
//! write labels into the feedback log.
//!
//! A protected handler takes [`Authorized`] before its body: the token is
//! checked from the headers alone, and a refused request is answered at
//! once, its body neither read nor waited for.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;

/// A route's token rule, judged from the request's headers alone.
pub trait TokenGuard {
    /// `Ok` when the request may go on; otherwise the refusal, already
    /// counted and logged as the route counts its refusals.
    fn check(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError>;
}

/// An extractor that applies the guard `G`. axum runs a handler's
/// extractors in order and stops at the first rejection, so placed before
/// the body extractor it refuses a request before any of its body is read:
/// a client without the token cannot hold the request open by announcing
/// a body and not sending it.
pub struct Authorized<G>(PhantomData<G>);

impl<G: TokenGuard> FromRequestParts<AppState> for Authorized<G> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        G::check(state, &parts.headers).map(|()| Self(PhantomData))
    }
}

/// The 401 answer to a missing or wrong token.
pub fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or invalid bearer token",
    )
}

/// Checks `Authorization: Bearer <expected>` in constant time, length
/// included: `ct_eq` on slices returns early when lengths differ, so both
/// sides are hashed to 32 bytes first. The scheme is matched as sent
/// (`Bearer `), like the token itself.
pub fn check_bearer(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let digest = |s: &str| sha2::Sha256::digest(s.as_bytes());
    if bool::from(digest(given).ct_eq(&digest(expected))) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// Logs failed authentications at most once a second (a guessing client
/// must not flood the log); the ones in between are counted into the next
/// line. Never logs the token given. One per guarded area, in a `static`.
pub struct FailedAuthLog {
    /// What was guarded, in the message: `admin`, `feedback`.
    area: &'static str,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl FailedAuthLog {
    /// A log for failures in `area`.
    pub const fn new(area: &'static str) -> Self {
        Self {
            area,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Records one failure: a warning, or a count into the next one.
    pub fn record(&self) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(Instant::now());
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            suppressed_since_last = suppressed,
            "{} authentication failed",
            self.area
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_bytes(value).unwrap(),
        );
        h
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let token = "right-token";
        assert!(check_bearer(&with(b"Bearer right-token"), token).is_ok());
        for refused in [
            &b"Bearer wrong-token"[..],
            b"Bearer right-toke",
            b"Bearer right-token2",
            b"bearer right-token",
            b"Basic right-token",
            b"right-token",
            b"Bearer ",
            b"Bearer  right-token",
            b"Bearer right-token\xff",
        ] {
            let e = check_bearer(&with(refused), token).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::UNAUTHORIZED, "unauthorized")
            );
        }
        assert!(check_bearer(&HeaderMap::new(), token).is_err());
    }
}
