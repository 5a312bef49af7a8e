//! One call to the tracking server: the request, retries with back-off,
//! deadlines, and a cap on every body read. Nothing the server sends is
//! trusted to be small or quick: a JSON answer or error body past
//! [`MAX_ANSWER_BYTES`] and a model file past its caller's cap are refused
//! as soon as the cap is passed (or unread, when the declared length says
//! so), and every wait has a deadline.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::{timeout, Instant};

use super::{Auth, MlflowClient, MlflowError};

/// Largest JSON answer or error body read from the server. MLflow's answers
/// to this client's calls are a few kilobytes; a megabyte leaves room for
/// long tags and messages while bounding what a broken or hostile server
/// can make a replica hold.
pub const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// Wait before the first retry; doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// How long a call may wait on the server, and how often it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From sending a request (connecting included) to the answer's status
    /// and headers.
    pub headers: Duration,
    /// Reading a whole JSON answer or error body, once the headers are in.
    pub body: Duration,
    /// Moving a model file: an upload until the answer's headers, or a
    /// download's whole body (which must also never pause longer than
    /// `headers` between two reads).
    pub transfer: Duration,
    /// Attempts per call, the first included, on connection errors, 429 and
    /// 5xx. A deadline that passes is not retried: a server that stalls
    /// once would most likely stall again, and retrying would multiply the
    /// wait.
    pub attempts: u32,
}

impl Deadlines {
    /// Commands (`train`, `retrain`, `promote`) and model loads (start-up,
    /// reload): patient, since a person or a job waits for the outcome, but
    /// bounded: a stalled server costs at most 30 s per call, a stalled
    /// download 30 s without a byte.
    pub const COMMAND: Deadlines = Deadlines {
        headers: Duration::from_secs(30),
        body: Duration::from_secs(30),
        transfer: Duration::from_secs(600),
        attempts: 4,
    };

    /// Source polling: an alias lookup is a few hundred bytes and runs
    /// again at the next interval, so one attempt with short deadlines; a
    /// misbehaving registry delays a poll by at most 10 s (5 s for the
    /// headers, 5 s for the body).
    pub const POLL: Deadlines = Deadlines {
        headers: Duration::from_secs(5),
        body: Duration::from_secs(5),
        transfer: Duration::from_secs(600),
        attempts: 1,
    };
}

impl Default for Deadlines {
    fn default() -> Self {
        Self::COMMAND
    }
}

/// A request body.
pub(super) enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

/// What a call expects back, which sets its cap and deadlines.
#[derive(Clone, Copy)]
pub(super) enum Expect {
    /// A JSON answer (or nothing): at most [`MAX_ANSWER_BYTES`].
    Answer,
    /// A file of at most this many bytes (`model.max_bytes`).
    File(u64),
}

/// What is being waited for when a deadline passes.
#[derive(Debug, Clone, Copy)]
pub enum Waiting {
    /// The answer's status line and headers.
    Headers,
    /// The rest of the answer's body.
    Body,
    /// The next piece of a file being downloaded.
    NextRead,
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Waiting::Headers => "the answer's headers",
            Waiting::Body => "the whole answer body",
            Waiting::NextRead => "the next bytes of the file",
        })
    }
}

impl MlflowClient {
    /// Sends a request, retrying connection errors, 429 and 5xx with
    /// back-off (at most [`Deadlines::attempts`] attempts); returns the body
    /// of a 2xx answer, capped and under deadlines as `expect` says.
    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Body>,
        expect: Expect,
    ) -> Result<Vec<u8>, MlflowError> {
        let d = self.deadlines;
        // An upload's headers come only once the file has gone out.
        let headers_within = match body {
            Some(Body::Bytes(_)) => d.transfer,
            _ => d.headers,
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let req = self.request(method.clone(), path, query, &body);
            let retryable = match timeout(headers_within, req.send()).await {
                Err(_) => return Err(deadline(path, Waiting::Headers, headers_within)),
                Ok(Ok(resp)) if resp.status().is_success() => {
                    return read_body(resp, path, expect, &d).await;
                }
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    let text = read_body(resp, path, Expect::Answer, &d).await?;
                    let err = api_error(path, status, &String::from_utf8_lossy(&text));
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        return Err(err);
                    }
                    err
                }
                Ok(Err(e)) => MlflowError::Unreachable {
                    server: self.server().to_owned(),
                    attempts: attempt,
                    reason: one_line(&source_chain(&e.without_url())),
                },
            };
            if attempt >= d.attempts {
                return Err(retryable);
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: &Option<Body>,
    ) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path}", self.server()))
            .query(query);
        let req = match &self.auth {
            Auth::None => req,
            Auth::Basic { username, password } => req.basic_auth(username, Some(password)),
            Auth::Bearer(token) => req.bearer_auth(token),
        };
        match body {
            None => req,
            Some(Body::Json(v)) => req.json(v),
            Some(Body::Bytes(b)) => req
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(b.clone()),
        }
    }
}

fn deadline(endpoint: &str, waiting: Waiting, limit: Duration) -> MlflowError {
    MlflowError::Deadline {
        endpoint: endpoint.to_owned(),
        waiting,
        limit,
    }
}

/// The body of `resp`, read as `expect` says: never more than its cap (a
/// declared length past the cap is refused before reading, an undeclared
/// one as soon as a byte past the cap has arrived), and within its
/// deadlines. The connection is dropped with the rest unread.
async fn read_body(
    mut resp: reqwest::Response,
    endpoint: &str,
    expect: Expect,
    d: &Deadlines,
) -> Result<Vec<u8>, MlflowError> {
    let status = resp.status().as_u16();
    let (max_bytes, whole, between_reads) = match expect {
        Expect::Answer => (MAX_ANSWER_BYTES, d.body, d.body),
        Expect::File(max_bytes) => (max_bytes, d.transfer, d.headers),
    };
    let too_large = || match expect {
        Expect::Answer => MlflowError::AnswerTooLarge {
            endpoint: endpoint.to_owned(),
            status,
            max_bytes,
        },
        Expect::File(_) => MlflowError::TooLarge {
            endpoint: endpoint.to_owned(),
            max_bytes,
        },
    };
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > max_bytes) {
        return Err(too_large());
    }
    let give_up_at = Instant::now() + whole;
    // Reserve what the server declared (already known to be within the cap).
    let mut body = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    loop {
        let left = give_up_at.saturating_duration_since(Instant::now());
        let (wait, waiting) = if between_reads < left {
            (between_reads, Waiting::NextRead)
        } else {
            (left, Waiting::Body)
        };
        let chunk = match timeout(wait, resp.chunk()).await {
            Err(_) => {
                let limit = match waiting {
                    Waiting::NextRead => between_reads,
                    _ => whole,
                };
                return Err(deadline(endpoint, waiting, limit));
            }
            Ok(chunk) => chunk,
        };
        match chunk {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > max_bytes {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(MlflowError::Garbage {
                    endpoint: endpoint.to_owned(),
                    detail: one_line(&source_chain(&e.without_url())),
                })
            }
        }
    }
}

/// The error an MLflow error answer describes.
pub(super) fn api_error(endpoint: &str, status: StatusCode, body: &str) -> MlflowError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let get = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(one_line)
    };
    MlflowError::Api {
        endpoint: endpoint.to_owned(),
        status: status.as_u16(),
        code: get("error_code").unwrap_or_else(|| "UNKNOWN".to_owned()),
        message: get("message")
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned()),
    }
}

/// An error and its causes on one line (reqwest's top level says only
/// "error sending request").
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// The first line of `s`, at most 200 characters, with control characters
/// (escape sequences, carriage returns) escaped: text the server chose must
/// not forge or colour a log line wherever the error is printed.
pub(super) fn one_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    let mut out = String::new();
    for (i, c) in line.chars().enumerate() {
        if i == 200 {
            out.push('…');
            break;
        }
        match c {
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
