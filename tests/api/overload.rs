//! Overload and slow clients: admission control sheds excess requests fast,
//! slow-header clients are disconnected, slow-body clients get 408.
//!
//! No upper time bounds (a loaded 2-core CI box would make them flaky): the
//! held requests hold their slots until the test releases them, so a shed
//! request answered at all did not wait for a slot; a timeout is shown by a
//! connection closed long before the client would have finished, and by
//! lower bounds (the server cannot act before its timeout).

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::raw::read_reply;

/// How long a test waits for something that should happen much sooner.
const PATIENCE: Duration = Duration::from_secs(30);

/// Opens a `/predict` request whose body is sent only partly: the request
/// holds a concurrency slot (admission happens before the body is read)
/// until `finish` sends the rest.
async fn start_held_request(port: u16, text: &str) -> (TcpStream, Vec<u8>) {
    let body = serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /predict HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..5]).await.unwrap();
    (s, body[5..].to_vec())
}

#[tokio::test]
async fn excess_requests_get_503_overloaded_fast_while_slow_requests_hold_the_slots() {
    let app = spawn_app_with(|s| {
        s.server.max_concurrency = 2;
        s.server.request_timeout_ms = 60_000;
    })
    .await;
    let mut held = Vec::new();
    for t in ["held request one", "held request two"] {
        held.push(start_held_request(app.port, t).await);
    }
    // Wait until both are admitted (in flight), not just connected.
    let deadline = Instant::now() + PATIENCE;
    while app.state.concurrency.available_permits() > 0 {
        assert!(Instant::now() < deadline, "held requests never admitted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A burst of excess requests over all API routes: each is shed (the held
    // requests keep both slots until they are released below).
    let mut shed = 0;
    for i in 0..20 {
        let r = match i % 4 {
            0 => {
                app.post_json("/predict", &serde_json::json!({"text": "x y"}))
                    .await
            }
            1 => {
                app.post_json("/predict/batch", &serde_json::json!({"texts": ["x y"]}))
                    .await
            }
            2 => app.get("/model").await,
            _ => {
                app.post_json(
                    "/feedback",
                    &serde_json::json!({"prediction_id": "x", "label": "ham"}),
                )
                .await
            }
        };
        assert_eq!(r.headers().get("retry-after").unwrap(), "1");
        assert_error(r, 503, "overloaded").await;
        shed += 1;
    }
    assert_eq!(
        app.state.concurrency.available_permits(),
        0,
        "the held requests still hold their slots"
    );
    // Liveness, readiness and metrics are never shed.
    for path in ["/health", "/ready", "/metrics"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }

    // The held requests finish normally once their bodies arrive.
    for (mut s, rest) in held {
        s.write_all(&rest).await.unwrap();
        let r = read_reply(&mut s, PATIENCE).await;
        assert_eq!(
            r.status,
            Some(200),
            "{:?}",
            String::from_utf8_lossy(&r.body)
        );
        let v: Value = r.json().unwrap();
        assert!(v["label"].is_string());
    }
    // Slots are free again.
    assert_eq!(app.predict("slots are free again").await["label"], "ham");
    let m = app.metrics().await;
    assert_eq!(
        metric_value(&m, "nbserve_load_shed_total"),
        Some(shed as f64)
    );
    assert!(
        !m.lines()
            .any(|l| l.starts_with("nbserve_http_requests_total")
                && l.contains("status=\"5")
                && !l.contains("status=\"503\"")),
        "no 5xx besides the 503s"
    );
    app.stop().await;
}

/// Reads until EOF; returns the bytes and when EOF came.
async fn until_closed(s: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Instant)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some((buf, Instant::now())),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn slow_header_clients_are_disconnected_after_the_header_read_timeout() {
    let timeout = Duration::from_millis(500);
    let app = spawn_app_with(|s| s.server.header_read_timeout_ms = 500).await;

    // 1. Half a request line, then silence.
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(b"POST /predict HT").await.unwrap();
    let (bytes, at) = until_closed(&mut s, PATIENCE)
        .await
        .expect("a stalled request line must be cut off");
    let took = at - started;
    assert!(
        bytes.is_empty() || bytes.starts_with(b"HTTP/1.1 408"),
        "{bytes:?}"
    );
    assert!(
        took >= timeout - Duration::from_millis(50),
        "closed early: {took:?}"
    );

    // 2. Headers trickled one byte every 50 ms (the whole head would take
    //    about 12 s): activity does not extend the deadline, the head must
    //    arrive within the timeout, so the request is never answered.
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
        "p".repeat(200)
    );
    let mut cut_off = false;
    for b in head.as_bytes() {
        if s.write_all(&[*b]).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cut_off, "the whole trickled head was taken");
    if let Some((bytes, _)) = until_closed(&mut s, PATIENCE).await {
        assert!(
            !bytes.starts_with(b"HTTP/1.1 200"),
            "a trickled head was answered: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }

    // 3. An idle keep-alive connection (one request served, then nothing)
    //    is closed too.
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_reply(&mut s, PATIENCE).await;
    assert_eq!(r.status, Some(200));
    let idle_since = Instant::now();
    let (_, at) = until_closed(&mut s, PATIENCE)
        .await
        .expect("an idle keep-alive connection must be closed");
    assert!(at - idle_since >= timeout - Duration::from_millis(50));

    // 4. A connection that never sends a byte.
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let (_, at) = until_closed(&mut s, PATIENCE)
        .await
        .expect("a silent connection must be closed");
    assert!(at - started >= timeout - Duration::from_millis(50));

    // 5. Half of the HTTP/2 preface, then silence.
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(b"PRI * HTTP/2").await.unwrap();
    until_closed(&mut s, PATIENCE)
        .await
        .expect("a partial HTTP/2 preface must be cut off");

    // 6. HTTP/1.1 only: the whole HTTP/2 preface is closed without an answer.
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let (bytes, _) = until_closed(&mut s, PATIENCE)
        .await
        .expect("the HTTP/2 preface is refused");
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));

    // Other clients were served throughout, and still are.
    assert_eq!(app.get("/health").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_slow_body_client_gets_408_even_while_still_sending() {
    let app = spawn_app_with(|s| s.server.request_timeout_ms = 1_000).await;
    let started = Instant::now();
    let s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(
        b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"text\": \"",
    )
    .await
    .unwrap();
    // Trickle one byte every 100 ms — the body would take 100 s, so an
    // answer within PATIENCE came while the client was still sending.
    let trickle = tokio::spawn(async move {
        for _ in 0..1000 {
            if wr.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let r = read_reply(&mut rd, PATIENCE).await;
    trickle.abort();
    let took = started.elapsed();
    assert_eq!(
        r.status,
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let v: Value = r.json().expect("JSON error body");
    assert_eq!(v["error"]["code"], "request_timeout");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert_eq!(app.get("/health").await.status(), 200);
    app.stop().await;
}
