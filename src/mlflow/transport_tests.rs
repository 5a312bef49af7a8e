//! The transport against fake servers: an axum one for statuses and
//! retries, a raw socket one for answers no well-behaved server sends
//! (endless, huge, declared too long, slow to start, trickling).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::mlflow::{MlflowClient, ModelUri, ModelVersion};

#[test]
fn api_errors_keep_mlflow_code_and_one_line() {
    let e = api_error(
        "/x",
        StatusCode::NOT_FOUND,
        r#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"no such\nthing"}"#,
    );
    assert!(e.is_not_found());
    assert_eq!(
        e.to_string(),
        "MLflow /x answered 404: RESOURCE_DOES_NOT_EXIST: no such"
    );
    let garbage = api_error("/x", StatusCode::BAD_GATEWAY, "<html>");
    assert!(garbage.to_string().contains("502: UNKNOWN: Bad Gateway"));
}

#[test]
fn server_text_in_errors_has_its_control_characters_escaped() {
    let e = api_error(
        "/x",
        StatusCode::BAD_REQUEST,
        "{\"error_code\":\"BAD\\u001b[2J\",\"message\":\"red \\u001b[31mtext\\r fake line\"}",
    );
    let printed = e.to_string();
    assert!(!printed.chars().any(char::is_control), "{printed:?}");
    assert!(
        printed.contains("BAD\\u{1b}[2J") && printed.contains("red \\u{1b}[31mtext\\r fake line"),
        "{printed}"
    );
}

/// A fake tracking server: answers `get-by-name` with `statuses` in
/// turn (then 200), recording each request's Authorization header.
async fn fake(statuses: Vec<u16>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::HeaderMap;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/api/2.0/mlflow/experiments/get-by-name",
        axum::routing::get(move |headers: HeaderMap| {
            let log = log.clone();
            let statuses = statuses.clone();
            async move {
                let mut log = log.lock().unwrap();
                let auth = headers
                    .get("authorization")
                    .map_or("", |v| v.to_str().unwrap())
                    .to_owned();
                let status = statuses.get(log.len()).copied().unwrap_or(200);
                log.push(auth);
                let body = if status == 200 {
                    r#"{"experiment":{"experiment_id":"7"}}"#
                } else {
                    r#"{"error_code":"INTERNAL_ERROR","message":"db locked"}"#
                };
                (StatusCode::from_u16(status).unwrap(), body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed_with_credentials() {
    let (url, seen) = fake(vec![503, 500]).await;
    let client = MlflowClient::with_auth(&url, Auth::Bearer("tok".into())).unwrap();
    assert_eq!(client.experiment_id("x").await.unwrap(), "7");
    assert_eq!(*seen.lock().unwrap(), vec!["Bearer tok"; 3]);
}

#[tokio::test]
async fn retries_are_bounded() {
    let (url, seen) = fake(vec![500; 10]).await;
    let basic = Auth::Basic {
        username: "u".into(),
        password: "p".into(),
    };
    let e = MlflowClient::with_auth(&url, basic)
        .unwrap()
        .experiment_id("x")
        .await
        .unwrap_err();
    assert!(matches!(e, MlflowError::Api { status: 500, .. }), "{e}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), Deadlines::COMMAND.attempts as usize);
    assert!(seen.iter().all(|a| a == "Basic dTpw"));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (url, seen) = fake(vec![403]).await;
    let client = MlflowClient::with_auth(&url, Auth::None).unwrap();
    let e = client.experiment_id("x").await.unwrap_err();
    assert!(matches!(e, MlflowError::Api { status: 403, .. }), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_server_is_one_line_without_secrets() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client =
        MlflowClient::with_auth(&format!("http://u:hunter2@127.0.0.1:{port}"), Auth::None).unwrap();
    let e = client.experiment_id("x").await.unwrap_err().to_string();
    assert!(e.contains("unreachable after 4 attempts"), "{e}");
    assert!(!e.contains("hunter2") && !e.contains('\n'), "{e}");
}

/// How a raw fake answers each request.
#[derive(Clone, Copy)]
struct Script {
    /// Wait this long before sending anything.
    stall: Duration,
    /// Status line and headers (ending in the blank line).
    head: &'static str,
    /// Body chunks of 64 KiB sent with chunked encoding; `None`: until the
    /// client hangs up. `Some(0)` with a declared length sends no body.
    chunks: Option<usize>,
    /// Pause before each chunk.
    pause: Duration,
}

const CHUNK: usize = 64 * 1024;
const CHUNKED_200: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
const CHUNKED_500: &str = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";

impl Script {
    fn new(head: &'static str, chunks: Option<usize>) -> Self {
        Self {
            stall: Duration::ZERO,
            head,
            chunks,
            pause: Duration::ZERO,
        }
    }
}

/// What a raw fake saw: connections accepted and body bytes sent.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    sent: AtomicU64,
}

/// A server on a raw socket answering every request as `script` says; the
/// body is `{"x":"xxxx…` (JSON that never closes).
async fn raw_server(script: Script) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counter.connections.fetch_add(1, Ordering::SeqCst);
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request).await;
                tokio::time::sleep(script.stall).await;
                conn.write_all(script.head.as_bytes()).await?;
                let mut chunk = vec![b'x'; CHUNK];
                chunk[..6].copy_from_slice(b"{\"x\":\"");
                let mut n = 0;
                while script.chunks.is_none_or(|c| n < c) {
                    tokio::time::sleep(script.pause).await;
                    conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .await?;
                    conn.write_all(&chunk).await?;
                    conn.write_all(b"\r\n").await?;
                    counter.sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    n += 1;
                }
                if script.head.contains("chunked") {
                    // One answer per connection: the client must open another.
                    conn.write_all(b"0\r\n\r\n").await?;
                } else {
                    // A declared body that never comes: hold the connection.
                    tokio::time::sleep(Duration::from_secs(120)).await;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn version() -> ModelVersion {
    ModelVersion {
        name: "spam".into(),
        version: "3".into(),
        source: "mlflow-artifacts:/1/abc/artifacts/model".into(),
        run_id: "abc".into(),
    }
}

fn alias() -> ModelUri {
    ModelUri::parse("models:/spam@champion").unwrap()
}

/// Short deadlines, so that tests on stalls end quickly; retries on.
const QUICK: Deadlines = Deadlines {
    headers: Duration::from_millis(300),
    body: Duration::from_millis(300),
    transfer: Duration::from_secs(2),
    attempts: 4,
};

fn client(url: &str, deadlines: Deadlines) -> MlflowClient {
    MlflowClient::with_auth(url, Auth::None)
        .unwrap()
        .with_deadlines(deadlines)
}

#[tokio::test]
async fn an_endless_json_answer_is_refused_at_the_cap() {
    // 64 MiB stands for endless: enough to tell a capped read from one that
    // reads on (which would end in a JSON error, or worse, out of memory).
    let (url, seen) = raw_server(Script::new(CHUNKED_200, Some(1024))).await;
    let e = client(&url, Deadlines::COMMAND)
        .resolve(&alias())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MlflowError::AnswerTooLarge {
                status: 200,
                max_bytes: MAX_ANSWER_BYTES,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("1048576 bytes"), "{e}");
    // Not retried, and the read stopped near the cap (socket buffers aside).
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    let sent = seen.sent.load(Ordering::SeqCst);
    assert!(sent < 16 << 20, "{sent} bytes sent");
}

#[tokio::test]
async fn a_declared_json_length_over_the_cap_is_refused_unread() {
    // Declares 2 GB and sends nothing: only the header can answer.
    let head = "HTTP/1.1 200 OK\r\ncontent-length: 2000000000\r\n\r\n";
    let (url, _) = raw_server(Script::new(head, Some(0))).await;
    let e = client(&url, Deadlines::COMMAND)
        .experiment_id("x")
        .await
        .unwrap_err();
    assert!(matches!(e, MlflowError::AnswerTooLarge { .. }), "{e}");
}

#[tokio::test]
async fn a_huge_error_body_is_refused_at_the_cap_and_not_retried() {
    let (url, seen) = raw_server(Script::new(CHUNKED_500, Some(1024))).await;
    let e = client(&url, Deadlines::COMMAND)
        .resolve(&alias())
        .await
        .unwrap_err();
    assert!(
        matches!(e, MlflowError::AnswerTooLarge { status: 500, .. }),
        "{e}"
    );
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert!(seen.sent.load(Ordering::SeqCst) < 16 << 20);
}

#[tokio::test]
async fn an_answer_of_exactly_the_cap_is_read() {
    // 16 chunks of 64 KiB: exactly 1 MiB, then one more byte is too many.
    let (url, _) = raw_server(Script::new(CHUNKED_200, Some(16))).await;
    let c = client(&url, Deadlines::COMMAND);
    let e = c.resolve(&alias()).await.unwrap_err();
    // Read in full: it fails as JSON, not on its size.
    assert!(matches!(e, MlflowError::Garbage { .. }), "{e}");
    let (url, _) = raw_server(Script::new(CHUNKED_200, Some(17))).await;
    let e = client(&url, Deadlines::COMMAND)
        .resolve(&alias())
        .await
        .unwrap_err();
    assert!(matches!(e, MlflowError::AnswerTooLarge { .. }), "{e}");
}

#[tokio::test]
async fn slow_headers_meet_the_deadline_once_without_retries() {
    let script = Script {
        stall: Duration::from_secs(120),
        ..Script::new(CHUNKED_200, Some(1))
    };
    let (url, seen) = raw_server(script).await;
    let e = client(&url, QUICK).resolve(&alias()).await.unwrap_err();
    assert!(
        matches!(
            e,
            MlflowError::Deadline {
                waiting: Waiting::Headers,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("within 300ms"), "{e}");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_trickling_answer_meets_the_body_deadline() {
    let script = Script {
        pause: Duration::from_millis(100),
        ..Script::new(CHUNKED_200, None)
    };
    let (url, _) = raw_server(script).await;
    // Small chunks often, never finishing, never past the cap in 300 ms.
    let tiny = Deadlines {
        body: Duration::from_millis(300),
        ..QUICK
    };
    let e = client(&url, tiny).resolve(&alias()).await.unwrap_err();
    assert!(
        matches!(
            e,
            MlflowError::Deadline {
                waiting: Waiting::Body,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_download_that_pauses_meets_the_read_deadline() {
    let script = Script {
        pause: Duration::from_secs(120),
        ..Script::new(CHUNKED_200, Some(2))
    };
    let (url, _) = raw_server(script).await;
    let e = client(&url, QUICK)
        .download_model_file(&version(), 1 << 20)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MlflowError::Deadline {
                waiting: Waiting::NextRead,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_poll_makes_one_attempt() {
    let (url, seen) = fake(vec![503; 10]).await;
    let e = client(&url, Deadlines::POLL)
        .experiment_id("x")
        .await
        .unwrap_err();
    assert!(matches!(e, MlflowError::Api { status: 503, .. }), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(Deadlines::POLL.headers + Deadlines::POLL.body <= Duration::from_secs(10));
}

#[tokio::test]
async fn an_endless_artifact_is_refused_at_the_cap_without_reading_it() {
    let (url, seen) = raw_server(Script::new(CHUNKED_200, None)).await;
    let e = client(&url, Deadlines::COMMAND)
        .download_model_file(&version(), 1_000_000)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MlflowError::TooLarge {
                max_bytes: 1_000_000,
                ..
            }
        ),
        "{e}"
    );
    // Not retried: one refusal, and the download stopped near the cap
    // (what sits in socket buffers aside), not at the server's end.
    let sent = seen.sent.load(Ordering::SeqCst);
    assert!(sent < 64_000_000, "{sent} bytes sent");
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_before_the_body() {
    // The server declares 2 GB and then sends nothing: only a refusal
    // from the header can answer.
    let head = "HTTP/1.1 200 OK\r\ncontent-length: 2000000000\r\n\r\n";
    let (url, _) = raw_server(Script::new(head, Some(0))).await;
    let e = tokio::time::timeout(
        Duration::from_secs(30),
        client(&url, Deadlines::COMMAND).download_model_file(&version(), 1_000_000),
    )
    .await
    .expect("refused without waiting for the body")
    .unwrap_err();
    assert!(matches!(e, MlflowError::TooLarge { .. }), "{e}");
}

#[tokio::test]
async fn an_artifact_of_exactly_the_cap_downloads() {
    let (url, _) = raw_server(Script::new(CHUNKED_200, Some(2))).await;
    let c = client(&url, Deadlines::COMMAND);
    let at_cap = c
        .download_model_file(&version(), 2 * CHUNK as u64)
        .await
        .unwrap();
    assert_eq!(at_cap.len(), 2 * CHUNK);
    let over = c
        .download_model_file(&version(), 2 * CHUNK as u64 - 1)
        .await
        .unwrap_err();
    assert!(matches!(over, MlflowError::TooLarge { .. }), "{over}");
}
