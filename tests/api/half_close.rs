//! Clients that half-close their side once the request is written
//! (`shutdown(SHUT_WR)`, as `nc -N`, some health checkers and HTTP/1.0-style
//! clients do) must still get their answer; one that half-closes inside the
//! body gets a clean 400.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::raw::{read_reply, Reply};

/// A keep-alive request (no `connection: close`: with it hyper answered
/// even before half-close support, so it would prove nothing).
fn keep_alive(method: &str, path: &str, content_length: usize, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\n\r\n"
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Writes `bytes`, shuts down the write half, reads the reply.
async fn send_then_half_close(port: u16, bytes: &[u8]) -> Reply {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(bytes).await.expect("write request");
    wr.shutdown().await.expect("half-close");
    read_reply(&mut rd, Duration::from_secs(20)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_requests_are_answered_after_a_half_close() {
    let app = spawn_app().await;
    let health = send_then_half_close(app.port, &keep_alive("GET", "/health", 0, b"")).await;
    assert_eq!(health.status, Some(200), "{health:?}");

    let text = br#"{"text": "lunch on friday?"}"#;
    let reply =
        send_then_half_close(app.port, &keep_alive("POST", "/predict", text.len(), text)).await;
    assert_eq!(reply.status, Some(200), "{reply:?}");
    let body = reply.json().expect("JSON body");
    let expected = app.predict("lunch on friday?").await;
    assert_eq!(body["label"], expected["label"]);
    assert_eq!(body["probabilities"], expected["probabilities"]);

    // HTTP/1.0 style: no keep-alive, EOF after the request.
    let old = b"GET /health HTTP/1.0\r\n\r\n";
    let reply = send_then_half_close(app.port, old).await;
    assert_eq!(reply.status, Some(200), "{reply:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_inside_the_body_is_a_clean_400() {
    let app = spawn_app().await;
    let bytes = keep_alive("POST", "/predict", 100, br#"{"text": "cut sh"#);
    let reply = send_then_half_close(app.port, &bytes).await;
    assert_eq!(reply.status, Some(400), "{reply:?}");
    let body = reply.json().expect("the app's JSON error");
    assert!(body["error"]["code"].is_string(), "{body}");
    // The server is unharmed.
    assert_eq!(app.get("/health").await.status(), 200);
    app.stop().await;
}
