use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn reload_needs_the_bearer_token() {
    let app = spawn_app().await;
    let url = app.url("/admin/reload");
    let r = app.client.post(&url).send().await.unwrap();
    assert_error(r, 401, "unauthorized").await;
    let r = app
        .client
        .post(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;
    let almost = format!("{}x", &TOKEN[..TOKEN.len() - 1]);
    let r = app
        .client
        .post(&url)
        .bearer_auth(almost)
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;
    let r = app
        .client
        .post(&url)
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;
    app.stop().await;
}

#[tokio::test]
async fn admin_is_off_without_a_token() {
    let app = spawn_app_with(|s| s.admin.token = None).await;
    let r = app
        .client
        .post(app.url("/admin/reload"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "admin_disabled").await;
    app.stop().await;
}

#[tokio::test]
async fn reload_of_a_new_valid_model_swaps_it_in() {
    let app = spawn_app().await;
    let name = write_variant(app.models_dir.path(), "v2.json", |a| {
        a.model.version = "v2".into()
    });
    let r = app.reload(Some(json!({ "path": name }))).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["version"], "v2");
    assert_eq!(app.predict("hello world").await["model_version"], "v2");
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, "nbserve_model_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    assert!(metrics.contains("version=\"v2\""));
    // A plain reload re-reads the file now being served.
    let r = app.reload(None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], "v2");
    app.stop().await;
}

#[tokio::test]
async fn corrupt_and_below_gate_models_are_refused_and_the_old_one_serves() {
    let app = spawn_app().await;
    let dir = app.models_dir.path();
    // One flipped byte in the middle of the vocabulary.
    let mut bytes = std::fs::read(shipped_model()).unwrap();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    std::fs::write(dir.join("corrupt.json"), &bytes).unwrap();
    let body = assert_error(
        app.reload(Some(json!({"path": "corrupt.json"}))).await,
        422,
        "invalid_model",
    )
    .await;
    assert!(
        !body.to_string().contains(dir.to_str().unwrap()),
        "no paths in answers"
    );
    // Half a file.
    std::fs::write(dir.join("half.json"), &bytes[..bytes.len() / 2]).unwrap();
    assert_error(
        app.reload(Some(json!({"path": "half.json"}))).await,
        422,
        "invalid_model",
    )
    .await;
    // Valid but below the gate.
    let low = write_variant(dir, "low.json", |a| {
        a.model.version = "low".into();
        a.evaluation.as_mut().unwrap().f1_macro = 0.5;
    });
    let body = assert_error(
        app.reload(Some(json!({"path": low}))).await,
        422,
        "gate_rejected",
    )
    .await;
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("0.5000") && msg.contains("0.8000"), "{msg}");
    // Escapes from the models directory.
    for p in ["../spam-nb.json", "/etc/passwd", "missing.json"] {
        assert_error(
            app.reload(Some(json!({"path": p}))).await,
            422,
            "invalid_model_path",
        )
        .await;
    }
    assert_error(
        app.reload(Some(json!({"path": 7}))).await,
        422,
        "invalid_request",
    )
    .await;
    assert_eq!(
        app.predict("hello world").await["model_version"],
        shipped_version()
    );
    let metrics = app.metrics().await;
    // Corrupt, half, below-gate and three refused paths; the malformed body is not a reload.
    assert_eq!(
        metric_value(&metrics, "nbserve_model_reloads_total{result=\"failure\"}"),
        Some(6.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn reload_while_clients_send_requests_loses_nothing() {
    let app = Arc::new(spawn_app().await);
    let dir = app.models_dir.path();
    let v2 = write_variant(dir, "v2.json", |a| a.model.version = "v2".into());
    // Invalid artifacts with their own versions: were one ever swapped in,
    // a client would see its version.
    write_variant(dir, "bad.json", |a| a.model.version = "bad".into());
    let mut bytes = std::fs::read(dir.join("bad.json")).unwrap();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    std::fs::write(dir.join("corrupt.json"), &bytes).unwrap();
    std::fs::write(dir.join("truncated.json"), &bytes[..i]).unwrap();
    write_variant(dir, "low.json", |a| {
        a.model.version = "low".into();
        a.evaluation.as_mut().unwrap().f1_macro = 0.5;
    });
    let texts: Arc<Vec<String>> = Arc::new(sample().into_iter().take(50).map(|(t, _)| t).collect());
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (app, texts, failures, done) =
            (app.clone(), texts.clone(), failures.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while !done.load(Ordering::SeqCst) || sent < 20 {
                let t = &texts[(c * 7 + sent) % texts.len()];
                let r = app.post_json("/predict", &json!({ "text": t })).await;
                let ok = r.status() == 200 && {
                    let v: Value = r.json().await.unwrap();
                    v["model_version"] == "v2" || v["model_version"] == "2026.11.25"
                };
                if !ok {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                sent += 1;
            }
            sent
        }));
    }
    // Valid and invalid reloads alternate while the clients run.
    let plan = [
        (v2.as_str(), 200),
        ("corrupt.json", 422),
        ("spam-nb.json", 200),
        ("low.json", 422),
        (v2.as_str(), 200),
        ("truncated.json", 422),
        ("spam-nb.json", 200),
        ("corrupt.json", 422),
        (v2.as_str(), 200),
        ("low.json", 422),
        ("spam-nb.json", 200),
        ("truncated.json", 422),
    ];
    for (path, status) in plan {
        let r = app.reload(Some(json!({ "path": path }))).await;
        assert_eq!(r.status(), status, "{path}");
    }
    done.store(true, Ordering::SeqCst);
    let mut sent = 0;
    for c in clients {
        sent += c.await.unwrap();
    }
    assert!(sent >= 160);
    assert_eq!(failures.load(Ordering::SeqCst), 0, "{sent} requests sent");
}
