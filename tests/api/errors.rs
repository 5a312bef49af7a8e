use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn each_documented_client_error_has_its_status_and_code() {
    let app = spawn_app_with(|s| {
        s.server.max_text_bytes = 1000;
        s.server.max_batch_size = 3;
        s.server.body_limit_bytes = 4096;
    })
    .await;
    let j = Some("application/json");
    assert_error(
        app.post_raw("/predict", j, b"{\"text\": ".to_vec()).await,
        400,
        "invalid_json",
    )
    .await;
    assert_error(
        app.post_raw("/predict", j, b"not json".to_vec()).await,
        400,
        "invalid_json",
    )
    .await;
    assert_error(
        app.post_raw(
            "/predict",
            Some("text/plain"),
            b"{\"text\":\"hi there\"}".to_vec(),
        )
        .await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert_error(
        app.post_raw("/predict", None, b"{\"text\":\"hi there\"}".to_vec())
            .await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert_error(
        app.post_raw("/predict", j, vec![b'a'; 5000]).await,
        413,
        "payload_too_large",
    )
    .await;
    assert_error(
        app.post_json("/predict", &json!({})).await,
        422,
        "invalid_request",
    )
    .await;
    // A derived struct would also take its fields as an array; objects only.
    for (path, body) in [
        ("/predict", json!(["hi there"])),
        ("/predict/batch", json!([["a b"]])),
    ] {
        assert_error(app.post_json(path, &body).await, 422, "invalid_request").await;
    }
    let r = app
        .post_raw(
            "/predict",
            Some("application/vnd.api+json; charset=utf-8"),
            b"{\"text\":\"hi there\"}".to_vec(),
        )
        .await;
    assert_eq!(r.status(), 200, "application/*+json is JSON");
    assert_error(
        app.post_json("/predict", &json!({"text": 42})).await,
        422,
        "invalid_request",
    )
    .await;
    assert_error(
        app.post_json("/predict", &json!({"text": "hi", "extra": 1}))
            .await,
        422,
        "invalid_request",
    )
    .await;
    assert_error(
        app.post_json("/predict", &json!({"text": ""})).await,
        422,
        "empty_text",
    )
    .await;
    assert_error(
        app.post_json("/predict", &json!({"text": " \n\t "})).await,
        422,
        "empty_text",
    )
    .await;
    assert_error(
        app.post_json("/predict", &json!({"text": "a".repeat(1001)}))
            .await,
        422,
        "text_too_long",
    )
    .await;
    assert_error(
        app.post_json("/predict/batch", &json!({"texts": []})).await,
        422,
        "empty_batch",
    )
    .await;
    assert_error(
        app.post_json(
            "/predict/batch",
            &json!({"texts": ["a b", "c d", "e f", "g h"]}),
        )
        .await,
        422,
        "batch_too_large",
    )
    .await;
    assert_error(
        app.post_json("/predict/batch", &json!({"texts": ["ok text", ""]}))
            .await,
        422,
        "empty_text",
    )
    .await;
    assert_error(app.get("/no/such/route").await, 404, "not_found").await;
    let r = app.get("/predict").await;
    assert_eq!(r.headers().get("allow").unwrap(), "POST");
    assert_error(r, 405, "method_not_allowed").await;
    // Still healthy after all of it.
    assert_eq!(app.get("/health").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn error_messages_do_not_echo_request_text() {
    let app = spawn_app_with(|s| s.server.max_text_bytes = 100).await;
    let secret = "SECRET-PAYLOAD-".repeat(20);
    let body = assert_error(
        app.post_json("/predict", &json!({"text": secret})).await,
        422,
        "text_too_long",
    )
    .await;
    assert!(!body.to_string().contains("SECRET-PAYLOAD"));
    app.stop().await;
}

#[tokio::test]
async fn overload_is_shed_with_503_and_retry_after() {
    // With zero free permits every API request is shed at once.
    let app = spawn_app().await;
    let permits = app.state.concurrency.available_permits();
    let held = app
        .state
        .concurrency
        .clone()
        .acquire_many_owned(permits as u32)
        .await
        .unwrap();
    let r = app
        .post_json("/predict", &json!({"text": "hello there"}))
        .await;
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    assert_error(r, 503, "overloaded").await;
    // Health and metrics are not shed.
    assert_eq!(app.get("/health").await.status(), 200);
    assert!(metric_value(&app.metrics().await, "nbserve_load_shed_total").unwrap() >= 1.0);
    drop(held);
    assert_eq!(
        app.post_json("/predict", &json!({"text": "hello there"}))
            .await
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn slow_requests_time_out_with_408() {
    let app = spawn_app_with(|s| s.server.request_timeout_ms = 300).await;
    // Send headers promising a body, then trickle nothing: the timeout answers.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    stream
        .write_all(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"te")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("server answers before the client gives up")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("request_timeout"), "{head}");
    app.stop().await;
}
