//! Labelled text for retraining (#17): kept prediction texts in feedback
//! lines (`feedback.keep_text`), `POST /examples`, and the log lines read
//! by the spec's reader rule.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// A server with a feedback log in a temporary directory.
async fn app_with_log(
    configure: impl FnOnce(&mut nbserve::Settings),
) -> (TestApp, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feedback.jsonl");
    let log = path.clone();
    let app = spawn_app_with(move |s| {
        s.feedback.log_path = Some(log);
        configure(s);
    })
    .await;
    (app, dir, path)
}

/// The log's lines once everything accepted is written.
async fn lines(app: &TestApp, path: &Path) -> Vec<Value> {
    assert!(app.state.feedback.flush_log(Duration::from_secs(60)).await);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The spec's reader rule: `Some((text, label))` for a labelled example,
/// `None` for a line with a label and no text (`without_text`); anything
/// else would be `malformed` (never written by the server: fails here).
fn read(line: &Value) -> Option<(String, String)> {
    let obj = line.as_object().expect("a JSON object");
    let label = obj["label"].as_str().expect("a string label").to_owned();
    obj.get("text")
        .map(|t| (t.as_str().expect("a string text").to_owned(), label))
}

#[tokio::test]
async fn feedback_lines_carry_the_exact_predicted_text() {
    let (app, _dir, path) = app_with_log(|s| s.feedback.keep_text = true).await;
    let single = "Win a \"free\" cruise!!\nClick: http://x.example/ é 😀 \u{0007}";
    let p = app.predict(single).await;
    let single_id = p["prediction_id"].as_str().unwrap().to_owned();
    let texts = ["lunch at noon?", "  CHEAP meds  ", "rendez-vous à 18h"];
    let r = app
        .post_json("/predict/batch", &json!({ "texts": texts }))
        .await;
    assert_eq!(r.status(), 200);
    let batch: Value = r.json().await.unwrap();
    let mut expected: HashMap<String, String> = HashMap::new();
    expected.insert(single_id.clone(), single.to_owned());
    let mut items = Vec::new();
    for (p, t) in batch["predictions"].as_array().unwrap().iter().zip(texts) {
        let id = p["prediction_id"].as_str().unwrap().to_owned();
        expected.insert(id.clone(), t.to_owned());
        items.push(json!({"prediction_id": id, "label": "ham"}));
    }
    let r = app
        .post_json(
            "/feedback",
            &json!({"prediction_id": single_id, "label": "spam"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let r = app
        .post_json("/feedback/batch", &json!({ "items": items }))
        .await;
    assert_eq!(r.status(), 202);
    let logged = lines(&app, &path).await;
    assert_eq!(logged.len(), 4);
    for line in &logged {
        assert_eq!(line["source"], "feedback");
        let id = line["prediction_id"].as_str().unwrap();
        let (text, label) = read(line).expect("a labelled example");
        assert_eq!(text, expected[id], "{line}");
        assert_eq!(label, if id == single_id { "spam" } else { "ham" });
    }
    // Taken by their feedback: nothing kept any more.
    let m = app.metrics().await;
    assert_eq!(
        metric_value(&m, "nbserve_feedback_kept_text_bytes"),
        Some(0.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn texts_over_the_budget_are_dropped_oldest_first() {
    let (app, _dir, path) = app_with_log(|s| {
        s.feedback.keep_text = true;
        s.feedback.text_budget_bytes = 30;
    })
    .await;
    let old = "a".repeat(20);
    let new = "b".repeat(20);
    let old_id = app.predict(&old).await["prediction_id"].clone();
    let new_id = app.predict(&new).await["prediction_id"].clone();
    let m = app.metrics().await;
    assert_eq!(
        metric_value(&m, "nbserve_feedback_kept_text_bytes"),
        Some(20.0)
    );
    for id in [&old_id, &new_id] {
        let r = app
            .post_json("/feedback", &json!({"prediction_id": id, "label": "ham"}))
            .await;
        assert_eq!(r.status(), 202, "accepted with or without its text");
    }
    let logged = lines(&app, &path).await;
    assert_eq!(logged.len(), 2);
    assert_eq!(logged[0]["prediction_id"], old_id);
    assert_eq!(
        read(&logged[0]),
        None,
        "the older text was dropped: {}",
        logged[0]
    );
    assert_eq!(logged[0]["source"], "feedback");
    assert_eq!(read(&logged[1]), Some((new, "ham".to_owned())));
    app.stop().await;
}

#[tokio::test]
async fn without_keep_text_no_text_is_logged() {
    let (app, _dir, path) = app_with_log(|_| {}).await;
    let id = app.predict("private words").await["prediction_id"].clone();
    let r = app
        .post_json("/feedback", &json!({"prediction_id": id, "label": "ham"}))
        .await;
    assert_eq!(r.status(), 202);
    let logged = lines(&app, &path).await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["source"], "feedback");
    assert!(logged[0].get("text").is_none(), "{}", logged[0]);
    app.stop().await;
}

#[tokio::test]
async fn examples_are_validated_and_appended() {
    let (app, _dir, path) = app_with_log(|s| {
        s.feedback.accept_examples = true;
        s.server.max_text_bytes = 100;
        s.server.max_batch_size = 3;
        s.server.body_limit_bytes = 4096;
    })
    .await;
    let r = app
        .post_json(
            "/examples",
            &json!({"text": "buy cheap pills", "label": "spam"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"accepted": 1}));
    let batch = json!({"examples": [
        {"text": "see you at lunch", "label": "ham"},
        {"text": "buy cheap pills", "label": "ham"},
    ]});
    let r = app.post_json("/examples", &batch).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"accepted": 2}));

    // Refused, none of them written.
    let cases = [
        (
            json!({"text": "hello", "label": "eggs"}),
            422,
            "invalid_label",
        ),
        (
            json!({"examples": [{"text": "ok", "label": "ham"}, {"text": "x", "label": "Spam"}]}),
            422,
            "invalid_label",
        ),
        (
            json!({"text": "x".repeat(101), "label": "ham"}),
            422,
            "text_too_long",
        ),
        (json!({"text": " \n\t", "label": "ham"}), 422, "empty_text"),
        (json!({"examples": []}), 422, "empty_batch"),
        (
            json!({"examples": vec![json!({"text": "t", "label": "ham"}); 4]}),
            422,
            "batch_too_large",
        ),
        (
            json!({"text": "t", "label": "ham", "extra": 1}),
            422,
            "invalid_request",
        ),
        (json!({"text": "t"}), 422, "invalid_request"),
        (json!({"text": 5, "label": "ham"}), 422, "invalid_request"),
        (json!(["t", "ham"]), 422, "invalid_request"),
    ];
    for (body, status, code) in &cases {
        let r = app.post_json("/examples", body).await;
        let e = assert_error(r, *status, code).await;
        let message = e["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("eggs") && !message.contains("xxxx"),
            "{message}"
        );
    }
    let r = app
        .post_raw(
            "/examples",
            Some("application/json"),
            b"{\"text\": ".to_vec(),
        )
        .await;
    assert_error(r, 400, "invalid_json").await;
    let r = app
        .post_raw("/examples", Some("text/plain"), b"{}".to_vec())
        .await;
    assert_error(r, 415, "unsupported_media_type").await;
    let big = serde_json::to_vec(&json!({"text": "x".repeat(5000), "label": "ham"})).unwrap();
    let r = app
        .post_raw("/examples", Some("application/json"), big)
        .await;
    assert_error(r, 413, "payload_too_large").await;

    let logged = lines(&app, &path).await;
    let version = shipped_version();
    assert_eq!(logged.len(), 3, "{logged:?}");
    let read_back: Vec<(String, String)> = logged.iter().map(|l| read(l).unwrap()).collect();
    assert_eq!(
        read_back,
        [
            ("buy cheap pills".to_owned(), "spam".to_owned()),
            ("see you at lunch".to_owned(), "ham".to_owned()),
            ("buy cheap pills".to_owned(), "ham".to_owned()),
        ]
    );
    for line in &logged {
        assert_eq!(line["source"], "example");
        assert_eq!(line["model"], "spam-nb");
        assert_eq!(line["model_version"], version.as_str());
        assert!(
            chrono::DateTime::parse_from_rfc3339(line["received_at"].as_str().unwrap()).is_ok()
        );
        assert_eq!(line.as_object().unwrap().len(), 6, "{line}");
    }
    let m = app.metrics().await;
    let count = |result: &str| {
        metric_value(
            &m,
            &format!("nbserve_examples_total{{result=\"{result}\"}}"),
        )
        .unwrap()
    };
    assert_eq!(count("accepted"), 3.0);
    assert_eq!(count("invalid_label"), 2.0);
    assert_eq!(count("invalid_text"), 2.0);
    assert_eq!(count("invalid_batch"), 2.0);
    // Four JSON-level refusals plus 400 and 415 (413 is refused before the route).
    assert_eq!(count("invalid_request"), 6.0);
    assert_eq!(count("disabled"), 0.0);
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let op = &spec["paths"]["/examples"]["post"];
    for status in ["200", "404", "422", "400", "413", "415", "503"] {
        assert!(
            op["responses"].get(status).is_some(),
            "{status} undocumented"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn examples_are_off_by_default() {
    let app = spawn_app().await;
    let r = app
        .post_json("/examples", &json!({"text": "buy now", "label": "spam"}))
        .await;
    assert_error(r, 404, "examples_disabled").await;
    let r = app
        .post_raw("/examples", Some("application/json"), b"not json".to_vec())
        .await;
    assert_error(r, 404, "examples_disabled").await;
    let m = app.metrics().await;
    assert_eq!(
        metric_value(&m, "nbserve_examples_total{result=\"disabled\"}"),
        Some(2.0)
    );
    app.stop().await;
}

/// The settings refuse kept texts and examples without a log: the binary
/// exits 3 (settings) with a message naming both settings.
#[test]
fn keep_text_or_examples_without_a_log_is_a_settings_error() {
    for key in [
        "NBSERVE__FEEDBACK__KEEP_TEXT",
        "NBSERVE__FEEDBACK__ACCEPT_EXAMPLES",
    ] {
        let out = serve_command(free_port(), &[(key, "true")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{key}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("feedback.log_path"), "{stderr}");
        let name = key
            .trim_start_matches("NBSERVE__")
            .replace("__", ".")
            .to_lowercase();
        assert!(stderr.contains(&name), "{stderr}");
    }
}
