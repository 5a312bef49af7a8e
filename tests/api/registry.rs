//! A server following `models:/spam@champion` on a registry that turns
//! hostile: an endless alias answer, a huge error body, headers that never
//! come. Each costs a poll (counted as an error), never the server.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// How the fake registry answers alias lookups.
const GOOD: u8 = 0;
const ENDLESS: u8 = 1;
const HUGE_ERROR: u8 = 2;
const SLOW_HEADERS: u8 = 3;

/// What "endless" stands for: far past any cap, small enough that a client
/// without one finishes reading it (and fails on the JSON) instead of
/// exhausting the test machine's memory.
const ENDLESS_BYTES: usize = 128 << 20;

struct Registry {
    url: String,
    mode: Arc<AtomicU8>,
    /// Bytes of alias answers sent (bodies of hostile answers).
    sent: Arc<AtomicU64>,
}

/// A registry on a raw socket (one request per connection): the alias
/// answers as `mode` says; the artifact is the shipped model.
async fn fake_registry() -> Registry {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mode = Arc::new(AtomicU8::new(GOOD));
    let sent = Arc::new(AtomicU64::new(0));
    let (m, s) = (mode.clone(), sent.clone());
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(answer(conn, m.load(Ordering::SeqCst), s.clone()));
        }
    });
    Registry { url, mode, sent }
}

async fn answer(mut conn: TcpStream, mode: u8, sent: Arc<AtomicU64>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("");
    if path.starts_with("/api/2.0/mlflow-artifacts/") {
        let model = std::fs::read(shipped_model())?;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            model.len()
        );
        conn.write_all(head.as_bytes()).await?;
        return conn.write_all(&model).await;
    }
    let status = match mode {
        GOOD => {
            let body = r#"{"model_version":{"name":"spam","version":"1","run_id":"r1","source":"mlflow-artifacts:/1/r1/artifacts/model"}}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).await?;
            return conn.write_all(body.as_bytes()).await;
        }
        SLOW_HEADERS => {
            tokio::time::sleep(Duration::from_secs(300)).await;
            return Ok(());
        }
        HUGE_ERROR => "500 Internal Server Error",
        _ => "200 OK",
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await?;
    // A JSON string that never closes: {"model_version":{"name":"xxxx…
    let mut chunk = vec![b'x'; 64 * 1024];
    let open = br#"{"model_version":{"name":""#;
    chunk[..open.len()].copy_from_slice(open);
    for _ in 0..ENDLESS_BYTES / chunk.len() {
        conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await?;
        conn.write_all(&chunk).await?;
        conn.write_all(b"\r\n").await?;
        sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        chunk[..open.len()].fill(b'x');
    }
    conn.write_all(b"0\r\n\r\n").await
}

fn polls(result: &str) -> String {
    format!("nbserve_model_polls_total{{model=\"spam\",result=\"{result}\"}}")
}

/// Waits (up to `within`) until the poll error count passes `above`.
async fn wait_for_poll_errors(app: &TestApp, above: f64, within: Duration) -> f64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let errors = metric_value(&app.metrics().await, &polls("error")).unwrap_or(0.0);
        if errors > above || tokio::time::Instant::now() > deadline {
            return errors;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_hostile_registry_costs_polls_never_the_server() {
    let registry = fake_registry().await;
    let uri = registry.url.clone();
    let app = spawn_app_with(|s| {
        s.model.path = nbserve::settings::ModelSource::parse("models:/spam@champion").unwrap();
        s.model.mlflow_uri = Some(uri);
        s.model.poll_interval_secs = 1;
    })
    .await;
    let served = app.predict("hello world").await["model_version"].clone();

    for (mode, name) in [(ENDLESS, "endless answer"), (HUGE_ERROR, "huge error body")] {
        registry.sent.store(0, Ordering::SeqCst);
        let before = metric_value(&app.metrics().await, &polls("error")).unwrap_or(0.0);
        registry.mode.store(mode, Ordering::SeqCst);
        // Two failed polls: each one read at most the cap and gave up.
        let errors = wait_for_poll_errors(&app, before + 1.0, Duration::from_secs(60)).await;
        assert!(errors >= before + 2.0, "{name}: {errors} poll errors");
        let sent = registry.sent.load(Ordering::SeqCst);
        println!("{name}: {sent} bytes sent for {} polls", errors - before);
        assert!(
            sent < 32 << 20,
            "{name}: the registry sent {sent} bytes in {} polls",
            errors - before
        );
        assert_eq!(app.predict("hello world").await["model_version"], served);
    }

    // Headers that never come: the poll gives up on its own deadline (a few
    // seconds), not after minutes of waits and retries.
    let before = metric_value(&app.metrics().await, &polls("error")).unwrap_or(0.0);
    registry.mode.store(SLOW_HEADERS, Ordering::SeqCst);
    let errors = wait_for_poll_errors(&app, before, Duration::from_secs(20)).await;
    assert!(
        errors > before,
        "no poll gave up on a registry stalling its headers"
    );
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.predict("hello world").await["model_version"], served);

    // Well again: polls succeed, nothing changed.
    registry.mode.store(GOOD, Ordering::SeqCst);
    let unchanged = metric_value(&app.metrics().await, &polls("unchanged")).unwrap_or(0.0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metric_value(&app.metrics().await, &polls("unchanged")).unwrap_or(0.0) <= unchanged {
        assert!(
            tokio::time::Instant::now() < deadline,
            "polls did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}
