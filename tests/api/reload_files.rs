//! Reloads from hostile files: symlinks out of the models directory,
//! devices, FIFOs, oversized files, abandoned reloads, quoted content.

use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

async fn reload_failures(app: &TestApp) -> Option<f64> {
    metric_value(
        &app.metrics().await,
        "nbserve_model_reloads_total{model=\"spam-nb\",result=\"failure\"}",
    )
}

#[tokio::test]
async fn refused_paths_share_one_answer_whatever_lies_behind_them() {
    let app = spawn_app().await;
    let dir = app.models_dir.path();
    let outside = tempfile::tempdir().unwrap();
    // A valid, gate-passing model outside the directory, reached by a symlink.
    write_variant(outside.path(), "out.json", |a| {
        a.model.version = "outside".into()
    });
    symlink(outside.path().join("out.json"), dir.join("link.json")).unwrap();
    symlink("/dev/zero", dir.join("zero.json")).unwrap();
    mkfifo(&dir.join("fifo.json"));
    std::fs::create_dir(dir.join("sub")).unwrap();
    let mut messages = Vec::new();
    for p in [
        "link.json",
        "zero.json",
        "fifo.json",
        "sub",
        "missing.json",
        "../spam-nb.json",
    ] {
        let body = assert_error(
            app.reload(Some(json!({ "path": p }))).await,
            422,
            "invalid_model_path",
        )
        .await;
        messages.push(body["error"]["message"].as_str().unwrap().to_owned());
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(app.predict("hello").await["model_version"], "2026.11.30");
    assert_eq!(reload_failures(&app).await, Some(6.0));
    app.stop().await;
}

#[tokio::test]
async fn plain_reload_refuses_a_model_path_turned_device_or_fifo() {
    let app = spawn_app().await;
    let model = app.models_dir.path().join("spam-nb.json");
    std::fs::remove_file(&model).unwrap();
    symlink("/dev/zero", &model).unwrap();
    let body = assert_error(app.reload(None).await, 422, "invalid_model").await;
    assert_eq!(body["error"]["message"], "model file is not a regular file");
    std::fs::remove_file(&model).unwrap();
    mkfifo(&model);
    // Without the check this blocks for good waiting for a writer.
    let body = assert_error(app.reload(None).await, 422, "invalid_model").await;
    assert_eq!(body["error"]["message"], "model file is not a regular file");
    assert_eq!(app.predict("hello").await["model_version"], "2026.11.30");
    app.stop().await;
}

#[tokio::test]
async fn start_up_refuses_a_device_as_model_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    let zero = dir.path().join("zero.json");
    symlink("/dev/zero", &zero).unwrap();
    settings.model.path = zero.into();
    let e = nbserve::server::Application::build(settings)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

#[tokio::test]
async fn a_model_larger_than_max_bytes_is_refused() {
    let size = std::fs::metadata(shipped_model()).unwrap().len();
    let app = spawn_app_with(|s| s.model.max_bytes = size).await;
    let dir = app.models_dir.path();
    let big = write_variant(dir, "big.json", |a| a.created_at.push_str(&" ".repeat(100)));
    let body = assert_error(
        app.reload(Some(json!({ "path": big }))).await,
        422,
        "invalid_model",
    )
    .await;
    assert_eq!(
        body["error"]["message"],
        format!("model file is larger than model.max_bytes ({size} bytes)")
    );
    assert_eq!(
        app.reload(None).await.status(),
        200,
        "the cap itself is allowed"
    );
    app.stop().await;
}

#[tokio::test]
async fn reload_errors_quote_nothing_from_the_file() {
    let app = spawn_app().await;
    let dir = app.models_dir.path();
    let hostile = format!(
        "{{\"format\": \"{}\\nforged log line\", \"schema_version\": 2}}",
        "A".repeat(1_000_000)
    );
    std::fs::write(dir.join("hostile.json"), hostile).unwrap();
    let resp = app.reload(Some(json!({"path": "hostile.json"}))).await;
    let text = resp.text().await.unwrap();
    assert!(text.len() < 300, "{} bytes", text.len());
    assert!(!text.contains("AAAA") && !text.contains("forged"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "invalid_model");
    app.stop().await;
}

#[tokio::test]
async fn an_abandoned_reload_still_completes_under_the_lock_and_is_counted() {
    let app = spawn_app().await;
    // Hold the reload lock from another thread, so the reload below waits
    // inside its blocking task.
    let state = app.state.clone();
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _guard = state.models.default_entry().load_lock().blocking_lock();
        held_tx.send(()).unwrap();
        let _ = hold_rx.recv();
    });
    held_rx.recv().unwrap();
    let reload = app.state.reload(None);
    // Polled once, so the blocking task exists, then dropped: the caller is gone.
    assert!(tokio::time::timeout(Duration::from_millis(1), reload)
        .await
        .is_err());
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, "nbserve_model_reloads_abandoned_total"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "nbserve_model_reloads_total{model=\"spam-nb\",result=\"success\"}"
        ),
        Some(0.0),
        "waits for the lock"
    );
    hold_tx.send(()).unwrap();
    holder.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = metric_value(
            &app.metrics().await,
            "nbserve_model_reloads_total{model=\"spam-nb\",result=\"success\"}",
        );
        if done == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "abandoned reload never completed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_replaced_models_label_series_are_removed() {
    let app = spawn_app().await;
    let old: Vec<String> = app
        .state
        .default_model()
        .unwrap()
        .loaded
        .meta
        .classes
        .clone();
    let renamed = write_variant(app.models_dir.path(), "renamed.json", |a| {
        for c in &mut a.classes {
            *c = format!("new_{c}");
        }
    });
    app.predict("hello").await;
    let before = app.metrics().await;
    let series =
        |label: &str| format!("nbserve_predictions_total{{label=\"{label}\",model=\"spam-nb\"}}");
    assert!(metric_value(&before, &series(&old[0])).is_some());
    assert_eq!(
        app.reload(Some(json!({ "path": renamed }))).await.status(),
        200
    );
    let after = app.metrics().await;
    for label in &old {
        assert_eq!(metric_value(&after, &series(label)), None, "{label}");
        assert!(
            !after.contains(&format!("true_label=\"{label}\"")),
            "{label} confusion series left"
        );
        assert_eq!(
            metric_value(&after, &series(&format!("new_{label}"))),
            Some(0.0)
        );
    }
    app.stop().await;
}

/// (Issue #20, "echoes") a 422 for a mistyped field must not quote the
/// request text it was given.
#[tokio::test]
async fn a_mistyped_texts_field_is_not_echoed() {
    let app = spawn_app().await;
    let secret = "confidential wording that must stay private";
    for (path, body) in [
        ("/predict/batch", json!({ "texts": secret })),
        ("/predict", json!({ "text": [secret] , "explain": secret})),
    ] {
        let body = assert_error(app.post_json(path, &body).await, 422, "invalid_request").await;
        assert!(!body.to_string().contains("confidential"), "{body}");
    }
    app.stop().await;
}
