//! Learning in place: `POST /learn` and `POST /forget` change a challenger
//! beside the served model exactly, `GET /challenger` shows it and
//! `GET /challenger/artifact` hands it out as an ordinary artifact.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use nbserve::classifier::{DfBound, ModelKind, VectorizerOptions};
use nbserve::training::{train, train_counted, RunOptions, TrainOptions};
use nbserve::{Artifact, Dataset};

use crate::helpers::*;

const LABELS_TOKEN: &str = "labels-token";

pub(crate) fn options() -> TrainOptions {
    TrainOptions {
        model: ModelKind::Multinomial,
        vectorizer: VectorizerOptions {
            min_df: DfBound::Count(2),
            max_df: DfBound::Proportion(1.0),
            max_features: 0,
            binary: false,
        },
        calibrate_folds: None,
        alpha: 0.5,
        run: RunOptions {
            test_size: 0.25,
            seed: 7,
            name: "spam-learn".into(),
            version: Some("1".into()),
            created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        },
    }
}

fn rows(data: &Dataset, keep: impl Fn(usize) -> bool) -> Dataset {
    let idx: Vec<usize> = (0..data.len()).filter(|&i| keep(i)).collect();
    data.subset(&idx)
}

/// The sample cut in three: the holdout, the champion's rows, the rest.
pub(crate) fn parts() -> (Dataset, Dataset, Dataset) {
    let data = Dataset::from_csv(&root().join("tests/data/sample.csv"), "text", "label").unwrap();
    (
        rows(&data, |i| i % 4 == 0),
        rows(&data, |i| i % 4 == 1 || i % 4 == 2),
        rows(&data, |i| i % 4 == 3),
    )
}

/// Writes a schema-3 champion trained on `base` (every row fitted) and
/// the holdout CSV into `dir`.
fn write_champion(dir: &Path, base: &Dataset, test: &Dataset) -> (PathBuf, PathBuf) {
    let (artifact, counts) = train_counted(base, Some(test), &options(), |_, _| {}).unwrap();
    let model = dir.join("learnable.json");
    artifact.with_statistics(&counts).save(&model).unwrap();
    let holdout = dir.join("holdout.csv");
    test.write_csv(&holdout).unwrap();
    (model, holdout)
}

/// A server on a learnable champion, learning on, `feedback.token` set
/// when given.
pub(crate) async fn learning_app(
    token: Option<&str>,
    edit: impl FnOnce(&mut nbserve::Settings),
) -> (TestApp, tempfile::TempDir) {
    let (test, base, _) = parts();
    let dir = tempfile::tempdir().unwrap();
    let (model, holdout) = write_champion(dir.path(), &base, &test);
    let token = token.map(str::to_owned);
    let app = spawn_app_with(move |s| {
        s.model.path = model.into();
        s.gate.min_f1_macro = 0.0;
        s.gate.holdout_path = Some(holdout);
        s.learning.enabled = true;
        s.feedback.token = token;
        edit(s);
    })
    .await;
    (app, dir)
}

pub(crate) fn body(examples: &[(String, String)]) -> Value {
    json!({"examples": examples.iter().map(|(t, l)| json!({"text": t, "label": l})).collect::<Vec<_>>()})
}

/// Every row of `data` as (text, label).
pub(crate) fn labelled(data: &Dataset) -> Vec<(String, String)> {
    data.texts
        .iter()
        .cloned()
        .zip(data.labels.iter().cloned())
        .collect()
}

pub(crate) fn rest_examples(n: usize) -> Vec<(String, String)> {
    let (_, _, rest) = parts();
    rest.texts.into_iter().zip(rest.labels).take(n).collect()
}

/// Every row not in the champion nor the holdout, its label flipped: a
/// challenger worse than the champion.
pub(crate) fn flipped_rest() -> Vec<(String, String)> {
    rest_examples(usize::MAX)
        .into_iter()
        .map(|(t, l)| (t, if l == "spam" { "ham" } else { "spam" }.to_owned()))
        .collect()
}

pub(crate) async fn post(
    app: &TestApp,
    path: &str,
    body: &Value,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn learning_equals_training_on_the_union_and_forgetting_gives_the_champion_back() {
    let (app, dir) = learning_app(None, |_| {}).await;
    let (test, base, rest) = parts();
    let all = labelled(&rest);
    // Learned in two requests.
    let (a, b) = all.split_at(all.len() / 2);
    for half in [a, b] {
        let r = post(&app, "/learn", &body(half), None).await;
        assert_eq!(r.status(), 200);
    }
    let state: Value = app.get("/challenger").await.json().await.unwrap();
    assert_eq!(state["learned"], all.len() as u64, "{state}");
    assert_eq!(state["net_examples"], all.len() as u64);
    assert_eq!(state["champion"]["name"], "spam-learn");
    // The challenger's artifact is the model `train` makes on base ∪ rest.
    let r = app
        .client
        .get(app.url("/challenger/artifact"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    let challenger: Artifact = serde_json::from_slice(&bytes).unwrap();
    Artifact::load_bytes(&bytes).expect("an ordinary, servable artifact");
    let union = Dataset {
        texts: base.texts.iter().chain(&rest.texts).cloned().collect(),
        labels: base.labels.iter().chain(&rest.labels).cloned().collect(),
        sha256: "u".into(),
    };
    let expected = train(&union, Some(&test), &options(), |_, _| {}).unwrap();
    assert_eq!(challenger.vocabulary, expected.vocabulary);
    assert_eq!(challenger.parameters, expected.parameters);
    assert!(challenger.predicts_like(&expected));
    // Forget all of it: the champion again.
    let r = post(&app, "/forget", &body(&all), None).await;
    assert_eq!(r.status(), 200);
    let state: Value = r.json().await.unwrap();
    assert_eq!(state["forgotten"], all.len() as u64);
    assert_eq!(state["net_examples"], 0);
    let bytes = app
        .client
        .get(app.url("/challenger/artifact"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let back: Artifact = serde_json::from_slice(&bytes).unwrap();
    let champion: Artifact =
        serde_json::from_slice(&std::fs::read(dir.path().join("learnable.json")).unwrap()).unwrap();
    assert!(back.predicts_like(&champion));
    app.stop().await;
}

#[tokio::test]
async fn forgetting_what_was_never_learned_is_a_409_and_changes_nothing() {
    let (app, _dir) = learning_app(None, |_| {}).await;
    let s = rest_examples(3);
    assert_eq!(
        post(&app, "/learn", &body(&s[..2]), None).await.status(),
        200
    );
    let before: Value = app.get("/challenger").await.json().await.unwrap();
    let r = post(&app, "/forget", &body(&[s[0].clone(), s[2].clone()]), None).await;
    let e = assert_error(r, 409, "not_learned").await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("example 1"),
        "{e}"
    );
    let after: Value = app.get("/challenger").await.json().await.unwrap();
    assert_eq!(before, after);
    app.stop().await;
}

#[tokio::test]
async fn learning_is_off_unless_enabled_and_needs_statistics() {
    // Off by default.
    let app = spawn_app().await;
    let s = rest_examples(1);
    assert_error(
        post(&app, "/learn", &body(&s), None).await,
        404,
        "learning_disabled",
    )
    .await;
    assert_error(app.get("/challenger").await, 404, "learning_disabled").await;
    app.stop().await;
    // On, over the shipped (schema 2) model: served, but it cannot learn.
    let app = spawn_app_with(|s| s.learning.enabled = true).await;
    let e = assert_error(
        post(&app, "/learn", &body(&s), None).await,
        409,
        "no_statistics",
    )
    .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--statistics"),
        "{e}"
    );
    let r = app.post_json("/predict", &json!({"text": "hello"})).await;
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn learning_needs_the_feedback_token_when_it_is_set() {
    let (app, _dir) = learning_app(Some(LABELS_TOKEN), |_| {}).await;
    let s = rest_examples(2);
    assert_error(
        post(&app, "/learn", &body(&s), None).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        post(&app, "/forget", &body(&s), Some("wrong")).await,
        401,
        "unauthorized",
    )
    .await;
    let r = app
        .client
        .get(app.url("/challenger/artifact"))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;
    assert_error(app.get("/challenger").await, 404, "no_challenger").await;
    assert_eq!(
        post(&app, "/learn", &body(&s), Some(LABELS_TOKEN))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&app, "/forget", &body(&s), Some(LABELS_TOKEN))
            .await
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn labels_are_the_champions_classes_unless_new_ones_are_allowed() {
    let mut s = rest_examples(3);
    s[1].1 = "phishing".into();
    let (app, _dir) = learning_app(None, |_| {}).await;
    let e = assert_error(
        post(&app, "/learn", &body(&s), None).await,
        422,
        "invalid_label",
    )
    .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("example 1"),
        "{e}"
    );
    assert_error(app.get("/challenger").await, 404, "no_challenger").await;
    app.stop().await;
    let (app, _dir) = learning_app(None, |s| s.learning.allow_new_classes = true).await;
    let r = post(&app, "/learn", &body(&s), None).await;
    assert_eq!(r.status(), 200);
    let state: Value = r.json().await.unwrap();
    assert!(
        state["classes"]
            .as_array()
            .unwrap()
            .contains(&json!("phishing")),
        "{state}"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_batches_are_refused_before_anything_is_learned() {
    let (app, _dir) = learning_app(None, |s| s.server.max_batch_size = 2).await;
    let s = rest_examples(3);
    assert_error(
        post(&app, "/learn", &json!({"examples": []}), None).await,
        422,
        "empty_batch",
    )
    .await;
    assert_error(
        post(&app, "/learn", &body(&s), None).await,
        422,
        "batch_too_large",
    )
    .await;
    let empty_text = body(&[(String::new(), s[0].1.clone())]);
    let r = post(&app, "/learn", &empty_text, None).await;
    assert_eq!(r.status(), 422);
    let control = body(&[(s[0].0.clone(), "sp\nam".into())]);
    assert_error(
        post(&app, "/learn", &control, None).await,
        422,
        "invalid_label",
    )
    .await;
    let r = post(&app, "/learn", &json!({"examples": [{"text": "x"}]}), None).await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_error(app.get("/challenger").await, 404, "no_challenger").await;
    app.stop().await;
}

#[tokio::test]
async fn a_learn_past_the_byte_budget_is_a_507() {
    let (app, _dir) = learning_app(None, |s| s.learning.max_bytes = 64).await;
    let r = post(&app, "/learn", &body(&rest_examples(5)), None).await;
    let e = assert_error(r, 507, "challenger_full").await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("learning.max_bytes"),
        "{e}"
    );
    assert_error(app.get("/challenger").await, 404, "no_challenger").await;
    app.stop().await;
}

#[tokio::test]
async fn concurrent_learns_lose_no_update_and_readers_see_whole_batches() {
    let (app, _dir) = learning_app(None, |_| {}).await;
    let s = rest_examples(40);
    let writers: Vec<_> = s
        .chunks(4)
        .map(|b| {
            let req = app.client.post(app.url("/learn")).json(&body(b));
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut seen = Vec::new();
    for _ in 0..20 {
        let r = app.get("/challenger").await;
        if r.status() == 200 {
            let v: Value = r.json().await.unwrap();
            seen.push(v["learned"].as_u64().unwrap());
        }
    }
    for w in writers {
        assert_eq!(w.await.unwrap(), 200);
    }
    // A reader only ever sees whole batches of 4.
    assert!(seen.iter().all(|n| n % 4 == 0), "{seen:?}");
    let state: Value = app.get("/challenger").await.json().await.unwrap();
    assert_eq!(state["learned"], 40);
    assert_eq!(state["net_examples"], 40);
    app.stop().await;
}

#[tokio::test]
async fn served_predictions_are_shadow_scored_by_the_challenger() {
    let (app, _dir) = learning_app(None, |_| {}).await;
    let s = rest_examples(30);
    let (test, _, _) = parts();
    // Learned then forgotten: the challenger is the champion, so it agrees
    // on every prediction.
    assert_eq!(post(&app, "/learn", &body(&s), None).await.status(), 200);
    assert_eq!(post(&app, "/forget", &body(&s), None).await.status(), 200);
    for text in test.texts.iter().take(10) {
        let r = app.post_json("/predict", &json!({"text": text})).await;
        assert_eq!(r.status(), 200);
    }
    let state: Value = app.get("/challenger").await.json().await.unwrap();
    assert_eq!(state["shadow_scored"], 10, "{state}");
    assert_eq!(state["shadow_agreed"], 10, "{state}");
    app.stop().await;
    // Off: nothing is shadow-scored.
    let (app, _dir) = learning_app(None, |s| s.learning.shadow_scoring = false).await;
    assert_eq!(post(&app, "/learn", &body(&s), None).await.status(), 200);
    let r = app
        .post_json("/predict", &json!({"text": "cheap pills"}))
        .await;
    assert_eq!(r.status(), 200);
    let state: Value = app.get("/challenger").await.json().await.unwrap();
    assert_eq!(state["shadow_scored"], 0, "{state}");
    app.stop().await;
}

/// Artifacts kept in a store's `versions` directory.
pub(crate) fn kept_versions(versions: &Path) -> usize {
    std::fs::read_dir(versions)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count()
}

/// Predictions of `model` its challenger shadow-scored, from the metrics.
pub(crate) fn shadow_scored(metrics: &str, model: &str) -> f64 {
    ["agreed", "disagreed"]
        .iter()
        .map(|result| {
            let series = format!(
                "nbserve_challenger_shadow_predictions_total{{model=\"{model}\",result=\"{result}\"}}"
            );
            metric_value(metrics, &series).unwrap()
        })
        .sum()
}

pub(crate) async fn promote(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/admin/challenger/promote"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_promoted_challenger_is_gated_kept_and_served() {
    let (app, dir) = learning_app(None, |_| {}).await;
    assert_error(promote(&app, json!({})).await, 404, "no_challenger").await;
    let r = app
        .client
        .post(app.url("/admin/challenger/promote"))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;
    let all = rest_examples(usize::MAX);
    assert_eq!(post(&app, "/learn", &body(&all), None).await.status(), 200);
    let r = promote(&app, json!({"max_regression": 1.0})).await;
    assert_eq!(r.status(), 200);
    let promoted: Value = r.json().await.unwrap();
    let version = promoted["version"].as_str().unwrap().to_owned();
    assert!(version.starts_with("1+learned."), "{promoted}");
    // Without MLflow: no run, no registration.
    assert_eq!(promoted["registered"], Value::Null, "{promoted}");
    // Served, written to model.path as schema 3, the old one kept.
    let model: Value = app.get("/model").await.json().await.unwrap();
    assert_eq!(model["version"], version.as_str(), "{model}");
    let file: Artifact =
        serde_json::from_slice(&std::fs::read(dir.path().join("learnable.json")).unwrap()).unwrap();
    assert_eq!(file.model.version, version);
    assert_eq!(file.schema_version, 3);
    assert_eq!(file.mlflow_run_id, None);
    let kept = kept_versions(&app.models_dir.path().join("versions"));
    assert!(kept >= 2, "{kept} kept files");
    // The challenger belonged to the old champion.
    assert_error(app.get("/challenger").await, 404, "no_challenger").await;
    let r = app.post_json("/predict", &json!({"text": "hello"})).await;
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_challenger_worse_than_the_served_model_is_not_promoted() {
    let (app, _dir) = learning_app(None, |_| {}).await;
    let before: Value = app.get("/model").await.json().await.unwrap();
    // Every remaining row with the wrong label.
    let flipped = flipped_rest();
    assert_eq!(
        post(&app, "/learn", &body(&flipped), None).await.status(),
        200
    );
    let e = assert_error(promote(&app, json!({})).await, 409, "regression").await;
    assert!(
        e["error"]["message"].as_str().unwrap().contains("F1 macro"),
        "{e}"
    );
    let after: Value = app.get("/model").await.json().await.unwrap();
    assert_eq!(before["version"], after["version"]);
    assert_eq!(app.get("/challenger").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_restarted_server_replays_the_learning_log() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("learning.jsonl");
    let l = log.clone();
    let (app, dir) = learning_app(None, move |s| s.learning.log_path = Some(l)).await;
    let s = rest_examples(12);
    assert_eq!(post(&app, "/learn", &body(&s), None).await.status(), 200);
    assert_eq!(
        post(&app, "/forget", &body(&s[..5]), None).await.status(),
        200
    );
    let before: Value = app.get("/challenger").await.json().await.unwrap();
    app.stop().await;
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
    // The same champion and log: the same challenger, before any request.
    let (model, holdout) = (
        dir.path().join("learnable.json"),
        dir.path().join("holdout.csv"),
    );
    let l = log.clone();
    let app = spawn_app_with(move |s| {
        s.model.path = model.into();
        s.gate.min_f1_macro = 0.0;
        s.gate.holdout_path = Some(holdout);
        s.learning.enabled = true;
        s.learning.log_path = Some(l);
    })
    .await;
    // Replayed at start: the first prediction is shadow-scored already.
    let r = app.post_json("/predict", &json!({"text": "hello"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(shadow_scored(&app.metrics().await, "learnable"), 1.0);
    let after: Value = app.get("/challenger").await.json().await.unwrap();
    for key in [
        "learned",
        "forgotten",
        "net_examples",
        "vocabulary_size",
        "classes",
    ] {
        assert_eq!(before[key], after[key], "{key}: {before} vs {after}");
    }
    // What was forgotten before the restart stays forgotten.
    let r = post(&app, "/forget", &body(&s[..1]), None).await;
    assert_error(r, 409, "not_learned").await;
    assert_eq!(
        post(&app, "/forget", &body(&s[5..6]), None).await.status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn a_change_the_learning_log_cannot_take_is_refused() {
    let logs = tempfile::tempdir().unwrap();
    // A directory where the file should be: every append fails.
    let l = logs.path().to_owned();
    let (app, _dir) = learning_app(None, move |s| s.learning.log_path = Some(l)).await;
    let r = post(&app, "/learn", &body(&rest_examples(3)), None).await;
    assert_error(r, 503, "log_unavailable").await;
    assert_error(app.get("/challenger").await, 404, "no_challenger").await;
    app.stop().await;
}
