//! Connection bounds: `server.max_connections` and `server.write_timeout_ms`,
//! and how connections end.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The app's own metric, read in-process (a full server may not take a
/// scrape connection).
fn metric(app: &TestApp, series: &str) -> f64 {
    metric_value(&app.state.metrics.render(), series).unwrap_or(f64::NAN)
}

async fn wait_for(app: &TestApp, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(app, series) != want {
        assert!(
            Instant::now() < deadline,
            "{series} = {} (want {want})",
            metric(app, series)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` connections that send nothing.
async fn connect(app: &TestApp, n: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(TcpStream::connect(("127.0.0.1", app.port)).await.unwrap());
    }
    streams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once_and_counted() {
    let app = spawn_app_with(|s| {
        s.server.max_connections = 8;
        // Idle connections must outlive the test, not the header timeout.
        s.server.header_read_timeout_ms = 120_000;
    })
    .await;
    let idle = connect(&app, 8).await;
    wait_for(&app, "nbserve_connections_open", 8.0).await;
    for _ in 0..3 {
        let mut extra = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        let _ = extra
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        // Closed unanswered: end of stream or a reset, never a response.
        let read = tokio::time::timeout(Duration::from_secs(30), extra.read(&mut buf))
            .await
            .expect("closed, not left open");
        if let Ok(n) = read {
            assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
        }
    }
    wait_for(&app, "nbserve_connections_refused_total", 3.0).await;
    drop(idle);
    wait_for(&app, "nbserve_connections_open", 0.0).await;
    assert_eq!(app.get("/health").await.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_and_health_keeps_answering() {
    let app = spawn_app_with(|s| s.server.write_timeout_ms = 300).await;
    let mut stuck = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    // Pipelined scrapes: far more response bytes than the socket buffers
    // hold, and the client reads none of them.
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
    stuck.write_all(&request).await.unwrap();
    let mut slowest = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&app, "nbserve_connection_write_timeouts_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stuck connection was never cut"
        );
        let started = Instant::now();
        assert_eq!(app.get("/health").await.status(), 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Not asserted (a loaded machine is no clock); reported for the docs.
    eprintln!("slowest /health while a client did not read: {slowest:?}");
    wait_for(&app, "nbserve_connections_open", 1.0).await;
    app.stop().await;
}

/// Once the write timeout cuts a client that never reads, its connection is
/// gone on both ends: reset, not closed with the unread answers still queued
/// (the kernel retries those for minutes, and the client's side stays open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_sees_its_connection_reset() {
    let app = spawn_app_with(|s| s.server.write_timeout_ms = 300).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // Before connect: the window the server sees stays small.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket
        .connect(([127, 0, 0, 1], app.port).into())
        .await
        .unwrap();
    // Few request bytes (the server reads them all), ~7 MB of answers.
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
    stuck.write_all(&request).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(e) = stuck.take_error().unwrap() {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "still open, unread");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&app, "nbserve_connection_write_timeouts_total"), 1.0);
    wait_for(&app, "nbserve_connections_open", 0.0).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_leave_health_answering() {
    const IDLE: usize = 2000;
    let app = spawn_app().await;
    let idle = connect(&app, IDLE).await;
    wait_for(&app, "nbserve_connections_open", IDLE as f64).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        assert_eq!(app.get("/health").await.status(), 200);
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("slowest of 50 /health with {IDLE} idle connections: {slowest:?}");
    drop(idle);
    app.stop().await;
}

/// (Issue #20, CPU fairness) a large single text is scored on the blocking
/// pool behind the batch slots, like a large batch, not on the async workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_single_text_waits_for_a_batch_slot() {
    let app = spawn_app().await;
    let slots = app.state.batch_slots.clone();
    let all = slots.available_permits() as u32;
    let held = slots.clone().acquire_many_owned(all).await.unwrap();
    let text = "free prize money ".repeat(8_000); // ~136 KB, over the inline limit
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let body = serde_json::json!({ "text": text, "explain": true });
    let blocked = client.post(app.url("/predict")).json(&body).send().await;
    assert!(
        blocked.is_err_and(|e| e.is_timeout()),
        "scored without a slot"
    );
    // A small one is still scored inline, slots or not.
    assert_eq!(app.predict("hello").await["label"], "ham");
    drop(held);
    let r = app.post_json("/predict", &body).await;
    assert_eq!(r.status(), 200);
    app.stop().await;
}
