//! `feedback.token`: the endpoints that write labels into the feedback log
//! (`/feedback`, `/feedback/batch`, `/examples`) need it when it is set, and
//! are open when it is not; `/predict` stays open either way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::raw::{exchange, request};

const FEEDBACK_TOKEN: &str = "labels-only-token";

/// A server with a feedback log and `POST /examples` on.
async fn app_with_log(token: Option<&str>) -> (TestApp, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feedback.jsonl");
    let log = path.clone();
    let token = token.map(str::to_owned);
    let app = spawn_app_with(move |s| {
        s.feedback.log_path = Some(log);
        s.feedback.accept_examples = true;
        s.feedback.token = token;
    })
    .await;
    (app, dir, path)
}

/// The log's lines once everything accepted is written (none when the file
/// was never created).
async fn lines(app: &TestApp, path: &Path) -> Vec<Value> {
    assert!(app.state.feedback.flush_log(Duration::from_secs(60)).await);
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

/// A prediction id, from an unauthenticated `/predict`.
async fn prediction_id(app: &TestApp, text: &str) -> String {
    let r = app.post_json("/predict", &json!({ "text": text })).await;
    assert_eq!(r.status(), 200, "/predict needs no token");
    r.json::<Value>().await.unwrap()["prediction_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The three label-writing requests, for one prediction id each.
fn label_requests(single: &str, batched: &str) -> [(&'static str, Value); 3] {
    [
        (
            "/feedback",
            json!({"prediction_id": single, "label": "spam"}),
        ),
        (
            "/feedback/batch",
            json!({"items": [{"prediction_id": batched, "label": "ham"}]}),
        ),
        (
            "/examples",
            json!({"text": "cheap meds now", "label": "spam"}),
        ),
    ]
}

async fn post(app: &TestApp, path: &str, body: &Value, auth: Option<&str>) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).json(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

fn count(metrics: &str, family: &str, result: &str) -> f64 {
    metric_value(metrics, &format!("{family}{{result=\"{result}\"}}")).unwrap()
}

#[tokio::test]
async fn with_a_feedback_token_labels_need_it() {
    let (app, _dir, path) = app_with_log(Some(FEEDBACK_TOKEN)).await;
    let single = prediction_id(&app, "win a free cruise").await;
    let batched = prediction_id(&app, "lunch at noon?").await;
    let prefix = format!("Bearer {}", &FEEDBACK_TOKEN[..FEEDBACK_TOKEN.len() - 1]);
    let lower = format!("bearer {FEEDBACK_TOKEN}");
    let bare = FEEDBACK_TOKEN.to_owned();
    let admin = format!("Bearer {TOKEN}");
    let refused: [Option<&str>; 6] = [
        None,
        Some("Bearer wrong-token-here"),
        Some(&prefix),
        Some(&lower),
        Some(&bare),
        // The admin token is another secret: it does not open the labels.
        Some(&admin),
    ];
    for (route, body) in label_requests(&single, &batched) {
        for auth in refused {
            let r = post(&app, route, &body, auth).await;
            let e = assert_error(r, 401, "unauthorized").await;
            assert_eq!(e["error"]["message"], "missing or invalid bearer token");
        }
        // Authentication comes before the body is judged.
        let r = app
            .client
            .post(app.url(route))
            .header("content-type", "application/json")
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_error(r, 401, "unauthorized").await;
    }
    assert!(
        lines(&app, &path).await.is_empty(),
        "a refused label was logged"
    );
    let m = app.metrics().await;
    // Refused requests: 7 on each of /feedback and /feedback/batch...
    assert_eq!(count(&m, "nbserve_feedback_total", "unauthorized"), 14.0);
    assert_eq!(count(&m, "nbserve_feedback_total", "accepted"), 0.0);
    // ...and 7 on /examples.
    assert_eq!(count(&m, "nbserve_examples_total", "unauthorized"), 7.0);
    assert_eq!(count(&m, "nbserve_examples_total", "accepted"), 0.0);

    // The right token: the same requests are accepted (the refused ones
    // used up nothing: the ids still take their feedback).
    let right = format!("Bearer {FEEDBACK_TOKEN}");
    for ((route, body), status) in label_requests(&single, &batched)
        .into_iter()
        .zip([202, 202, 200])
    {
        let r = post(&app, route, &body, Some(&right)).await;
        assert_eq!(r.status(), status, "{route}");
        let answer: Value = r.json().await.unwrap();
        if route == "/feedback/batch" {
            assert_eq!(answer["accepted"], 1, "{answer}");
        }
    }
    let logged = lines(&app, &path).await;
    assert_eq!(logged.len(), 3, "{logged:?}");
    assert_eq!(logged[0]["prediction_id"], single.as_str());
    assert_eq!(logged[0]["label"], "spam");
    assert_eq!(logged[1]["prediction_id"], batched.as_str());
    assert_eq!(logged[1]["label"], "ham");
    assert_eq!(logged[2]["text"], "cheap meds now");
    let m = app.metrics().await;
    assert_eq!(count(&m, "nbserve_feedback_total", "accepted"), 2.0);
    assert_eq!(count(&m, "nbserve_examples_total", "accepted"), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn without_a_feedback_token_labels_are_open() {
    let (app, _dir, path) = app_with_log(None).await;
    let single = prediction_id(&app, "win a free cruise").await;
    let batched = prediction_id(&app, "lunch at noon?").await;
    for ((route, body), (status, auth)) in label_requests(&single, &batched).into_iter().zip([
        (202, None),
        (202, Some("Bearer anything")),
        (200, None),
    ]) {
        let r = post(&app, route, &body, auth).await;
        assert_eq!(r.status(), status, "{route}");
    }
    assert_eq!(lines(&app, &path).await.len(), 3);
    let m = app.metrics().await;
    assert_eq!(count(&m, "nbserve_feedback_total", "unauthorized"), 0.0);
    assert_eq!(count(&m, "nbserve_examples_total", "unauthorized"), 0.0);
    app.stop().await;
}

/// The OpenAPI document says so: bearer security that may be absent (the
/// token is optional) and the 401, on the three operations and no others
/// but `/admin/reload`.
#[tokio::test]
async fn openapi_declares_the_optional_bearer_security() {
    let app = spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    for route in ["/feedback", "/feedback/batch", "/examples"] {
        let op = &spec["paths"][route]["post"];
        assert_eq!(op["security"], json!([{}, {"bearer": []}]), "{route}");
        assert!(
            op["responses"].get("401").is_some(),
            "{route}: 401 undocumented"
        );
    }
    for route in ["/predict", "/predict/batch"] {
        let op = &spec["paths"][route]["post"];
        assert!(op.get("security").is_none(), "{route}");
        assert!(op["responses"].get("401").is_none(), "{route}");
    }
    app.stop().await;
}

/// A request without the token is refused from its headers: a client that
/// announces a large body and sends none gets its 401 at once, not the
/// request timeout's 408 (120 s in the test settings, past the deadline
/// here), on every token-protected route.
#[tokio::test]
async fn the_token_is_checked_before_the_body_is_read() {
    let (app, _dir, path) = app_with_log(Some(FEEDBACK_TOKEN)).await;
    let wrong = "authorization: Bearer wrong-token-here";
    for route in ["/feedback", "/feedback/batch", "/examples", "/admin/reload"] {
        for auth in [None, Some(wrong)] {
            let mut head = vec!["content-type: application/json", "content-length: 1000000"];
            head.extend(auth);
            let bytes = request("POST", route, &head, b"");
            let reply = exchange(app.port, bytes, Duration::from_secs(30)).await;
            assert_eq!(reply.status, Some(401), "{route} {auth:?}: {reply:?}");
            let body = reply.json().expect("JSON error body");
            assert_eq!(body["error"]["code"], "unauthorized", "{route}: {body}");
        }
    }
    assert!(lines(&app, &path).await.is_empty());
    let m = app.metrics().await;
    assert_eq!(count(&m, "nbserve_feedback_total", "unauthorized"), 4.0);
    assert_eq!(count(&m, "nbserve_examples_total", "unauthorized"), 2.0);
    app.stop().await;
}
