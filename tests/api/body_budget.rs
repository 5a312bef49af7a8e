//! Memory admission by bytes: `server.max_inflight_body_bytes`.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::*;

const MIB: usize = 1024 * 1024;

fn reserved(app: &TestApp) -> Option<f64> {
    metric_value(
        &app.state.metrics.render(),
        "nbserve_body_budget_reserved_bytes",
    )
}

async fn wait_reserved(app: &TestApp, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reserved(app) != Some(want as f64) {
        assert!(Instant::now() < deadline, "reserved {:?}", reserved(app));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request whose head is sent and whose body never comes.
async fn stalled(app: &TestApp, framing: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "POST /predict/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_byte_budget_are_shed_before_they_are_read() {
    let app = spawn_app_with(|s| {
        s.server.body_limit_bytes = 2 * MIB;
        s.server.max_inflight_body_bytes = 4 * MIB;
    })
    .await;
    // Two maximum-size bodies being (slowly) sent fill the budget.
    let a = stalled(&app, &format!("Content-Length: {}", 2 * MIB)).await;
    let b = stalled(&app, "Transfer-Encoding: chunked").await;
    wait_reserved(&app, 4 * MIB).await;
    let body = assert_error(
        app.post_json("/predict", &json!({"text": "hello"})).await,
        503,
        "overloaded",
    )
    .await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("memory budget"));
    let r = app.post_json("/predict", &json!({"text": "hello"})).await;
    assert_eq!(r.headers()["retry-after"], "1");
    // Requests without a body, and the probes, are not held back.
    assert_eq!(app.get("/model").await.status(), 200);
    assert_eq!(app.get("/health").await.status(), 200);
    let shed = metric_value(&app.metrics().await, "nbserve_body_budget_shed_total");
    assert_eq!(shed, Some(2.0));
    // Clients gone: their reservations come back.
    drop((a, b));
    wait_reserved(&app, 0).await;
    assert_eq!(app.predict("hello").await["label"], "ham");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_batches_get_answers_or_503_never_anything_else() {
    let app = spawn_app_with(|s| {
        s.server.max_inflight_body_bytes = 4 * MIB;
    })
    .await;
    // ~1.9 MB batches: at most two fit the budget at a time.
    let texts: Vec<String> = (0..950)
        .map(|i| format!("{i} {}", "word ".repeat(400)))
        .collect();
    let body = serde_json::to_vec(&json!({ "texts": texts })).unwrap();
    // Raw exchanges: a 503 comes before the body is read, while the client
    // is still writing. `exchange` writes from its own task and reads the
    // answer meanwhile, so every request must show its status (a client that
    // writes first and reads after is the test below).
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let bytes = crate::raw::post_json("/predict/batch", &body);
        let port = app.port;
        tasks.push(tokio::spawn(async move {
            crate::raw::exchange(port, bytes, Duration::from_secs(120))
                .await
                .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().unwrap_or(0));
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    wait_reserved(&app, 0).await;
    app.stop().await;
}

/// A client refused before its body was read still hears the refusal the way
/// an HTTP library does: it writes the whole body, then reads. The server
/// reads and discards the rest of the body before it closes; a close with the
/// body unread made the kernel reset the connection, and the client's write
/// failed with a broken pipe instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_writes_its_whole_body_then_reads_the_answer() {
    // Far more body than the socket buffers absorb before the server closes.
    const LIMIT: usize = 16 * MIB;
    let app = spawn_app_with(|s| {
        s.server.body_limit_bytes = LIMIT;
        s.server.max_inflight_body_bytes = LIMIT;
    })
    .await;
    let _held = stalled(&app, &format!("Content-Length: {LIMIT}")).await;
    wait_reserved(&app, LIMIT).await;
    // Over the byte budget (503), then over the body limit (413).
    for (length, status) in [(LIMIT, 503), (LIMIT + 1, 413)] {
        let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        let head = format!(
            "POST /predict/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&vec![b' '; length])
            .await
            .unwrap_or_else(|e| panic!("{status}: the body was cut off: {e}"));
        let reply = crate::raw::read_reply(&mut s, Duration::from_secs(60)).await;
        assert_eq!(reply.status, Some(status), "{reply:?}");
    }
    app.stop().await;
}
