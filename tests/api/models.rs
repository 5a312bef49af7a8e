//! Many models in one server: `model.repository`, `/models/{name}/...`,
//! `GET /models`, isolation of a refused or unloaded model, the memory
//! budget, and the V2 repository extension.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nbserve::settings::{ModelSource, NamedModel};
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, free_port, root, serve_command, spawn_app_with, wait_ready, LogLines, TestApp,
    TOKEN,
};

/// Short and long texts, spam and ham: the Complement model differs from
/// the Bernoulli one on short spam.
const TEXTS: [&str; 6] = [
    "win a free prize now",
    "URGENT: claim your cash reward, click here",
    "see you at lunch tomorrow?",
    "cheap meds online no prescription",
    "Hi Bob, the meeting moved to 3pm, notes attached. Thanks, Alice",
    "ok",
];

/// A repository of both shipped models (`spam-nb` the default) plus
/// whatever `extra` adds to the settings.
async fn spawn_repository(extra: impl FnOnce(&mut nbserve::Settings)) -> TestApp {
    spawn_app_with(|s| {
        std::fs::copy(
            root().join("models/spam-cnb.json"),
            s.model.dir.join("spam-cnb.json"),
        )
        .unwrap();
        s.model.repository = Some(s.model.dir.clone());
        extra(s);
    })
    .await
}

/// `nbserve predict --model <artifact> --json`, one line per text.
fn cli_predictions(artifact: &Path, texts: &[&str]) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nbserve"))
        .args(["predict", "--json", "--model"])
        .arg(artifact)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = texts.iter().map(|t| format!("{t}\n")).collect();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), texts.len());
    lines
}

/// The label and probabilities of a server answer equal the CLI's.
fn assert_same(server: &Value, cli: &Value, what: &str) {
    assert_eq!(server["label"], cli["label"], "{what}");
    assert_eq!(server["probabilities"], cli["probabilities"], "{what}");
}

#[tokio::test]
async fn every_model_answers_like_the_cli_on_its_artifact() {
    let app = spawn_repository(|_| {}).await;
    for (name, route) in [
        ("spam-nb", "/predict".to_owned()),
        ("spam-nb", "/models/spam-nb/predict".to_owned()),
        ("spam-cnb", "/models/spam-cnb/predict".to_owned()),
    ] {
        let cli = cli_predictions(&root().join(format!("models/{name}.json")), &TEXTS);
        for (text, expected) in TEXTS.iter().zip(&cli) {
            let r = app.post_json(&route, &json!({ "text": text })).await;
            assert_eq!(r.status(), 200, "{route}");
            assert_same(
                &r.json().await.unwrap(),
                expected,
                &format!("{route} {text:?}"),
            );
        }
        let batch: Value = app
            .post_json(&format!("{route}/batch"), &json!({ "texts": TEXTS }))
            .await
            .json()
            .await
            .unwrap();
        for (got, expected) in batch["predictions"].as_array().unwrap().iter().zip(&cli) {
            assert_same(got, expected, &format!("{route}/batch"));
        }
    }
    // The two models really differ on short spam (else this proves little).
    let nb = cli_predictions(&root().join("models/spam-nb.json"), &TEXTS);
    let cnb = cli_predictions(&root().join("models/spam-cnb.json"), &TEXTS);
    assert_ne!(nb, cnb);

    let described: Value = app.get("/models/spam-cnb").await.json().await.unwrap();
    assert_eq!(described["model"], "spam-cnb");
    let default: Value = app.get("/model").await.json().await.unwrap();
    assert_eq!(default["model"], "spam-nb");

    let list: Value = app.get("/models").await.json().await.unwrap();
    assert_eq!(list["default"], "spam-nb");
    assert_eq!(list["max_count"], 64);
    let models = list["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["spam-cnb", "spam-nb"]);
    for m in models {
        assert_eq!(m["state"], "ready", "{m}");
        assert!(m["version"].is_string(), "{m}");
        assert!(
            m["gate"]["f1_macro"].as_f64().unwrap() >= m["gate"]["min_f1_macro"].as_f64().unwrap()
        );
        assert!(m["resident_bytes"].as_u64().unwrap() > 0);
    }
    assert_eq!(models[1]["default"], true);
    assert_eq!(models[0]["default"], false);

    // The V2 protocol serves each model by name too.
    let meta: Value = app.get("/v2/models/spam-cnb").await.json().await.unwrap();
    assert_eq!(meta["name"], "spam-cnb");
    assert_eq!(app.get("/v2/models/spam-cnb/ready").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_model_is_404_naming_the_known_ones() {
    let app = spawn_repository(|_| {}).await;
    for path in [
        "/models/nope/predict",
        "/models/nope/predict/batch",
        "/models/..%2Fspam-nb/predict",
    ] {
        let body = assert_error(
            app.post_json(path, &json!({ "text": "x", "texts": ["x"] }))
                .await,
            404,
            "model_not_found",
        )
        .await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("spam-cnb, spam-nb"), "{message}");
    }
    assert_error(app.get("/models/nope").await, 404, "model_not_found").await;
    // An unknown name is not a label of its own.
    let m = app.metrics().await;
    assert!(!m.contains("model=\"nope\""), "{m}");
    assert!(
        m.contains("model=\"\",route=\"/models/{name}/predict\",status=\"404\"} 2"),
        "{m}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_refused_or_broken_model_leaves_the_others_serving() {
    let app = spawn_repository(|s| {
        std::fs::write(s.model.dir.join("broken.json"), b"{not json").unwrap();
        s.models.named.insert(
            "strict".into(),
            NamedModel {
                path: ModelSource::File(root().join("models/spam-cnb.json")),
                poll_interval_secs: None,
                min_f1_macro: Some(0.9999),
                holdout_path: None,
                required: false,
            },
        );
    })
    .await;
    assert_eq!(app.get("/ready").await.status(), 200);
    let list: Value = app.get("/models").await.json().await.unwrap();
    let state = |name: &str| {
        list["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()
            .clone()
    };
    for name in ["broken", "strict"] {
        let m = state(name);
        assert_eq!(m["state"], "unavailable", "{m}");
        assert!(m["reason"].as_str().unwrap().len() > 3, "{m}");
        assert!(m["version"].is_null(), "{m}");
        assert_error(
            app.post_json(&format!("/models/{name}/predict"), &json!({ "text": "x" }))
                .await,
            503,
            "model_unavailable",
        )
        .await;
    }
    assert!(state("strict")["reason"]
        .as_str()
        .unwrap()
        .contains("0.9999"));
    for path in ["/predict", "/models/spam-cnb/predict"] {
        let r = app.post_json(path, &json!({ "text": "free prize" })).await;
        assert_eq!(r.status(), 200, "{path}");
    }
    // A reload of the refused model is refused again; the others keep serving.
    let r = app
        .client
        .post(app.url("/v2/repository/models/strict/load"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(app.get("/v2/models/spam-cnb/ready").await.status(), 200);
    assert_eq!(app.get("/ready").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn loads_over_the_memory_budget_are_refused() {
    // The default model's size, then a budget it alone fits in.
    let probe = spawn_repository(|_| {}).await;
    let list: Value = probe.get("/models").await.json().await.unwrap();
    let bytes = |i: usize| list["models"][i]["resident_bytes"].as_u64().unwrap();
    let (cnb, nb) = (bytes(0), bytes(1));
    probe.stop().await;

    let app = spawn_repository(|s| s.models.max_total_bytes = nb + cnb / 2).await;
    let list: Value = app.get("/models").await.json().await.unwrap();
    assert_eq!(list["models"][1]["state"], "ready");
    let refused = &list["models"][0];
    assert_eq!(refused["state"], "unavailable", "{refused}");
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("models.max_total_bytes"), "{reason}");
    assert_error(
        app.post_json("/models/spam-cnb/predict", &json!({ "text": "x" }))
            .await,
        503,
        "model_unavailable",
    )
    .await;
    assert!(app.predict("free prize").await["label"].is_string());
    app.stop().await;
}

async fn repository(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = app.client.post(app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn the_v2_repository_lists_unloads_and_loads_a_model() {
    let app = spawn_repository(|_| {}).await;
    for path in [
        "/v2/repository/index",
        "/v2/repository/models/spam-cnb/unload",
        "/v2/repository/models/spam-cnb/load",
    ] {
        assert_eq!(repository(&app, path, None).await.status(), 401, "{path}");
    }
    let index: Value = repository(&app, "/v2/repository/index", Some(TOKEN))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["spam-cnb", "spam-nb"]);
    assert!(index
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["state"] == "READY"));

    // The default model cannot be unloaded.
    let r = repository(&app, "/v2/repository/models/spam-nb/unload", Some(TOKEN)).await;
    assert_eq!(r.status(), 409);
    let r = repository(&app, "/v2/repository/models/nope/unload", Some(TOKEN)).await;
    assert_eq!(r.status(), 404);

    let r = repository(&app, "/v2/repository/models/spam-cnb/unload", Some(TOKEN)).await;
    assert_eq!(r.status(), 200);
    assert_ne!(app.get("/v2/models/spam-cnb/ready").await.status(), 200);
    assert_error(
        app.post_json("/models/spam-cnb/predict", &json!({ "text": "x" }))
            .await,
        503,
        "model_unavailable",
    )
    .await;
    let index: Value = repository(&app, "/v2/repository/index", Some(TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(index[0]["state"], "UNAVAILABLE", "{index}");
    assert_eq!(index[0]["reason"], "unloaded", "{index}");
    // The default model and /ready are untouched.
    assert_eq!(app.get("/ready").await.status(), 200);
    assert!(app.predict("free prize").await["label"].is_string());
    let m = app.metrics().await;
    assert!(!m.contains("nbserve_model_info{model=\"spam-cnb\""), "{m}");

    let r = repository(&app, "/v2/repository/models/spam-cnb/load", Some(TOKEN)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.get("/v2/models/spam-cnb/ready").await.status(), 200);
    let r = app
        .post_json("/models/spam-cnb/predict", &json!({ "text": "x" }))
        .await;
    assert_eq!(r.status(), 200);
    app.stop().await;
}

/// Statuses of requests sent to `url` in a loop until `stop`.
fn hammer(
    client: reqwest::Client,
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u16>> {
    tokio::spawn(async move {
        let mut statuses = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let r = client
                .post(&url)
                .json(&json!({ "text": "win a free prize now" }))
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        statuses
    })
}

#[tokio::test]
async fn the_default_model_loses_nothing_while_another_is_unloaded_reloaded_and_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let other = scratch.path().join("other.json");
    std::fs::copy(root().join("models/spam-cnb.json"), &other).unwrap();
    let app = spawn_repository(|s| {
        // spam-cnb (F1 0.98) passes this gate; spam-nb (0.95) does not.
        s.models.named.insert(
            "other".into(),
            NamedModel {
                path: ModelSource::File(other.clone()),
                poll_interval_secs: None,
                min_f1_macro: Some(0.97),
                holdout_path: None,
                required: false,
            },
        );
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let defaults: Vec<_> = (0..3)
        .map(|_| hammer(app.client.clone(), app.url("/predict"), stop.clone()))
        .collect();
    let others: Vec<_> = (0..2)
        .map(|_| {
            hammer(
                app.client.clone(),
                app.url("/models/other/predict"),
                stop.clone(),
            )
        })
        .collect();
    let admin = |path: &'static str| repository(&app, path, Some(TOKEN));
    assert_eq!(
        admin("/v2/repository/models/other/unload").await.status(),
        200
    );
    assert_eq!(
        admin("/v2/repository/models/other/load").await.status(),
        200
    );
    assert_eq!(
        admin("/v2/repository/models/other/load").await.status(),
        200
    );
    // Its source now holds a model below its gate: refused, and the
    // version it serves keeps serving.
    std::fs::copy(root().join("models/spam-nb.json"), &other).unwrap();
    let r = admin("/v2/repository/models/other/load").await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].to_string().contains("0.97"), "{body}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut answered = 0;
    for task in defaults {
        let statuses = task.await.unwrap();
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
        answered += statuses.len();
    }
    assert!(answered > 0);
    for task in others {
        let statuses = task.await.unwrap();
        // Served, or 503 model_unavailable while unloaded: nothing else.
        assert!(
            statuses.iter().all(|&s| s == 200 || s == 503),
            "{statuses:?}"
        );
    }
    let list: Value = app.get("/models").await.json().await.unwrap();
    let other = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "other")
        .unwrap();
    assert_eq!(other["state"], "ready", "{other}");
    assert!(
        other["reason"]
            .as_str()
            .unwrap()
            .starts_with("last load refused"),
        "{other}"
    );
    let r = app
        .post_json("/models/other/predict", &json!({ "text": "x" }))
        .await;
    assert_eq!(r.status(), 200);
    app.stop().await;
}

/// A client asking for an unloaded model is no fault of the server: the
/// 503 `model_unavailable` is logged at WARN, not ERROR. Read from the real
/// binary's JSON log: a thread-local subscriber in this process would miss
/// events whenever other tests run in parallel.
#[tokio::test]
async fn a_request_for_an_unloaded_model_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["spam-nb.json", "spam-cnb.json"] {
        std::fs::copy(root().join("models").join(file), dir.path().join(file)).unwrap();
    }
    let repo = dir.path().to_str().unwrap();
    let port = free_port();
    let mut child = serve_command(
        port,
        &[
            ("NBSERVE__MODEL__REPOSITORY", repo),
            ("NBSERVE__MODEL__DIR", repo),
            ("NBSERVE__MODEL__DEFAULT", "spam-nb"),
            ("NBSERVE__ADMIN__TOKEN", TOKEN),
        ],
    )
    .spawn()
    .unwrap();
    let mut logs = LogLines::take(&mut child);
    wait_ready(port, &mut child);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let r = client
        .post(format!("{url}/v2/repository/models/spam-cnb/unload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut failures = Vec::new();
    for path in ["/models/spam-cnb/predict", "/v2/models/spam-cnb/infer"] {
        let r = client
            .post(format!("{url}{path}"))
            .json(&json!({ "text": "x" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{path}");
        let line = logs.wait_for(Duration::from_secs(30), |l| {
            l.contains("\"tower_http::trace::on_failure\"")
        });
        failures.push(line.map(|l| serde_json::from_str::<Value>(&l).unwrap()));
    }
    let _ = child.kill();
    let _ = child.wait();
    for failure in &failures {
        let f = failure.as_ref().expect("the 503 is logged");
        assert_eq!(f["level"], "WARN", "{f}");
        assert!(
            f["message"].as_str().unwrap().contains("not being served"),
            "{f}"
        );
        assert_eq!(f["code"], "model_unavailable", "{f}");
    }
}
