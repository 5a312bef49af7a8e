//! A challenger beside each model of a repository: `"model"` in `/learn`,
//! `/forget` and the promotion, `/models/{name}/challenger[/artifact]`;
//! shadow scoring, live labels, metrics, the store and the swap all of
//! the named model, the others untouched; a challenger reset as soon as
//! its model is replaced, and replayed from the learning log when that
//! model comes back.

use serde_json::{json, Value};

use nbserve::training::train_counted;
use nbserve::Artifact;

use crate::helpers::*;
use crate::learn::{
    body, kept_versions, learning_app, options, parts, post, promote, rest_examples, shadow_scored,
};

/// Writes a learnable model other than the champion (another alpha,
/// named `name`) to `path`.
fn write_other(path: &std::path::Path, name: &str) {
    let (test, base, _) = parts();
    let mut o = options();
    o.alpha = 1.0;
    o.run.name = name.into();
    let (artifact, counts) = train_counted(&base, Some(&test), &o, |_, _| {}).unwrap();
    artifact.with_statistics(&counts).save(path).unwrap();
}

/// A learning server over a repository of two learnable models: the
/// default `learnable` and `second` (another alpha, another name).
async fn two_models() -> (TestApp, tempfile::TempDir) {
    learning_app(None, |s| {
        let dir = s
            .model
            .path
            .file()
            .and_then(|p| p.parent())
            .expect("a file source")
            .to_owned();
        write_other(&dir.join("second.json"), "spam-second");
        s.model.repository = Some(dir);
    })
    .await
}

fn with_model(examples: &[(String, String)], model: &str) -> Value {
    let mut b = body(examples);
    b["model"] = json!(model);
    b
}

async fn json_of(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn each_model_learns_scores_and_promotes_its_own_challenger() {
    let (app, dir) = two_models().await;
    let names: Vec<String> = json_of(app.get("/models").await).await["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["learnable", "second"]);

    let all = rest_examples(usize::MAX);
    assert_error(
        post(&app, "/learn", &with_model(&all, "nope"), None).await,
        404,
        "model_not_found",
    )
    .await;
    let learned = json_of(post(&app, "/learn", &with_model(&all, "second"), None).await).await;
    assert_eq!(learned["model"], "second", "{learned}");
    assert_eq!(learned["champion"]["name"], "spam-second", "{learned}");
    assert_eq!(learned["learned"], all.len(), "{learned}");
    // Forgetting on the default model what only `second` learned.
    assert_error(
        post(&app, "/forget", &body(&all[..1]), None).await,
        409,
        "not_learned",
    )
    .await;
    assert_error(app.get("/challenger").await, 404, "no_challenger").await;
    let shown = json_of(app.get("/models/second/challenger").await).await;
    assert_eq!(shown["learned"], learned["learned"]);
    assert_eq!(shown["model"], "second");
    assert!(shown["holdout"]["challenger_f1_macro"].is_f64(), "{shown}");
    assert_error(
        app.get("/models/nope/challenger").await,
        404,
        "model_not_found",
    )
    .await;
    let artifact: Artifact = serde_json::from_slice(
        &app.get("/models/second/challenger/artifact")
            .await
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(artifact.model.name, "spam-second");

    // Predictions of `second` are shadow-scored by its challenger, and a
    // label judges both; the default model's are not.
    let texts = ["win a free prize now", "see you at lunch tomorrow?"];
    let mut ids = Vec::new();
    for text in texts {
        for path in ["/predict", "/models/second/predict"] {
            let r = json_of(app.post_json(path, &json!({ "text": text })).await).await;
            if path != "/predict" {
                ids.push(r["prediction_id"].as_str().unwrap().to_owned());
            }
        }
    }
    let r = app
        .post_json(
            "/feedback",
            &json!({"prediction_id": ids[0], "label": "spam"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let shown = json_of(app.get("/models/second/challenger").await).await;
    assert_eq!(shown["shadow_scored"], 2, "{shown}");
    assert_eq!(shown["live"]["labels"], 1, "{shown}");
    let metrics = app.metrics().await;
    assert_eq!(
        (
            shadow_scored(&metrics, "learnable"),
            shadow_scored(&metrics, "second")
        ),
        (0.0, 2.0)
    );
    let learned_series = "nbserve_challenger_examples_total{change=\"learned\",model=\"second\"}";
    assert_eq!(
        metric_value(&metrics, learned_series),
        Some(all.len() as f64)
    );

    // Promoted into `second`'s own file and store; the default untouched.
    let promoted =
        json_of(promote(&app, json!({"model": "second", "max_regression": 1.0})).await).await;
    assert_eq!(promoted["model"], "second", "{promoted}");
    let version = promoted["version"].as_str().unwrap();
    assert!(version.starts_with("1+learned."), "{promoted}");
    let served = json_of(app.get("/models/second").await).await;
    assert_eq!(served["version"], version, "{served}");
    let default = json_of(app.get("/model").await).await;
    assert_eq!(default["version"], "1", "{default}");
    let file: Artifact =
        serde_json::from_slice(&std::fs::read(dir.path().join("second.json")).unwrap()).unwrap();
    assert_eq!(
        (file.model.version.as_str(), file.schema_version),
        (version, 3)
    );
    let kept = kept_versions(&app.models_dir.path().join("stores/second/versions"));
    assert!(kept >= 2, "{kept} kept files of second");
    assert!(
        !app.models_dir.path().join("versions").exists(),
        "the default model's store is untouched"
    );
    let promotions = "nbserve_challenger_promotions_total{model=\"second\",outcome=\"promoted\",trigger=\"manual\"}";
    assert_eq!(metric_value(&app.metrics().await, promotions), Some(1.0));
    // The challenger belonged to the replaced model.
    assert_error(
        app.get("/models/second/challenger").await,
        404,
        "no_challenger",
    )
    .await;
    assert_error(
        promote(&app, json!({"model": "nope"})).await,
        404,
        "model_not_found",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_replaced_model_resets_its_challenger_and_gets_it_back_from_the_log() {
    let logs = tempfile::tempdir().unwrap();
    let l = logs.path().join("learning.jsonl");
    let (app, dir) = learning_app(None, move |s| s.learning.log_path = Some(l)).await;
    let models = app.models_dir.path();
    write_other(&models.join("other.json"), "spam-other");
    std::fs::copy(dir.path().join("learnable.json"), models.join("again.json")).unwrap();
    let resets = "nbserve_challenger_resets_total{model=\"learnable\"}";
    assert_eq!(metric_value(&app.metrics().await, resets), Some(0.0));

    let s = rest_examples(20);
    let first = json_of(post(&app, "/learn", &body(&s), None).await).await;
    assert_eq!(
        app.reload(Some(json!({"path": "other.json"})))
            .await
            .status(),
        200
    );
    // Reset as the new model is served, before any learn.
    assert_error(app.get("/challenger").await, 404, "no_challenger").await;
    assert_eq!(metric_value(&app.metrics().await, resets), Some(1.0));
    let r = app.post_json("/predict", &json!({"text": "hello"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(shadow_scored(&app.metrics().await, "learnable"), 0.0);
    let other = json_of(post(&app, "/learn", &body(&s[..3]), None).await).await;
    assert_eq!(other["champion"]["name"], "spam-other", "{other}");
    assert_eq!(other["learned"], 3, "{other}");

    // The first champion back (the same bytes): its challenger replayed.
    assert_eq!(
        app.reload(Some(json!({"path": "again.json"})))
            .await
            .status(),
        200
    );
    assert_eq!(metric_value(&app.metrics().await, resets), Some(2.0));
    let back = json_of(app.get("/challenger").await).await;
    assert_eq!(back["champion"], first["champion"], "{back}");
    assert_eq!(back["learned"], 20, "{back}");
    assert_eq!(back["vocabulary_size"], first["vocabulary_size"], "{back}");
    app.stop().await;
}
