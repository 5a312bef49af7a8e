//! `learning.auto_promote`: the challenger promoted by itself once it has
//! learned `auto_promote_min_examples` and been judged on
//! `auto_promote_min_live_labels` labels, through the gate of
//! `POST /admin/challenger/promote`; a refused one waits for a new learn.

use serde_json::{json, Value};

use crate::helpers::{metric_value, TestApp};
use crate::learn::{body, labelled, learning_app, parts, post, rest_examples};

/// `nbserve_challenger_promotions_total{model, trigger="auto", outcome}`
/// of the served model.
async fn auto_attempts(app: &TestApp, outcome: &str) -> f64 {
    let series = format!(
        "nbserve_challenger_promotions_total{{model=\"learnable\",outcome=\"{outcome}\",trigger=\"auto\"}}"
    );
    metric_value(&app.metrics().await, &series).unwrap()
}

/// Every automatic attempt so far, whatever its outcome.
async fn all_auto_attempts(app: &TestApp) -> f64 {
    let mut n = 0.0;
    for outcome in [
        "promoted",
        "gate_rejected",
        "regression",
        "refused",
        "failed",
    ] {
        n += auto_attempts(app, outcome).await;
    }
    n
}

async fn served_version(app: &TestApp) -> String {
    let model: Value = app.get("/model").await.json().await.unwrap();
    model["version"].as_str().unwrap().to_owned()
}

/// Predicts the holdout's first `n` texts and labels each truly: `n`
/// labels for the live comparison once a challenger shadow-scores.
async fn label_predictions(app: &TestApp, skip: usize, n: usize) {
    let (test, _, _) = parts();
    for (text, label) in test.texts.iter().zip(&test.labels).skip(skip).take(n) {
        let r: Value = app
            .post_json("/predict", &json!({"text": text}))
            .await
            .json()
            .await
            .unwrap();
        let id = r["prediction_id"].as_str().unwrap();
        let fb = app
            .post_json("/feedback", &json!({"prediction_id": id, "label": label}))
            .await;
        assert_eq!(fb.status(), 202);
    }
}

async fn live_labels(app: &TestApp) -> u64 {
    let state: Value = app.get("/challenger").await.json().await.unwrap();
    state["live"]["labels"].as_u64().unwrap()
}

#[tokio::test]
async fn promoted_once_both_minimums_are_met_and_not_before_either() {
    let (app, _dir) = learning_app(None, |s| {
        s.learning.auto_promote = true;
        s.learning.auto_promote_min_examples = 75;
        s.learning.auto_promote_min_live_labels = 5;
    })
    .await;
    let champion = served_version(&app).await;
    // The holdout's 75 rows, truly labelled: a challenger better on the
    // holdout (fewer of them may not be, on this small sample).
    let (test, _, _) = parts();
    let examples = labelled(&test);
    assert_eq!(examples.len(), 75);
    // Enough examples, no label yet.
    assert_eq!(
        post(&app, "/learn", &body(&examples), None).await.status(),
        200
    );
    assert_eq!(all_auto_attempts(&app).await, 0.0);
    // One forgotten (74 left), then enough labels: still too few examples.
    assert_eq!(
        post(&app, "/forget", &body(&examples[..1]), None)
            .await
            .status(),
        200
    );
    label_predictions(&app, 0, 5).await;
    assert_eq!(live_labels(&app).await, 5);
    assert_eq!(all_auto_attempts(&app).await, 0.0);
    assert_eq!(served_version(&app).await, champion);
    // Learned again: both minimums met, promoted by that request.
    assert_eq!(
        post(&app, "/learn", &body(&examples[..1]), None)
            .await
            .status(),
        200
    );
    assert_eq!(auto_attempts(&app, "promoted").await, 1.0);
    assert_eq!(all_auto_attempts(&app).await, 1.0);
    let version = served_version(&app).await;
    assert!(version.starts_with("1+learned."), "{version}");
    // The challenger belonged to the old champion; nothing more to do.
    assert_eq!(app.get("/challenger").await.status(), 404);
    label_predictions(&app, 5, 2).await;
    assert_eq!(all_auto_attempts(&app).await, 1.0);
    app.stop().await;
}

#[tokio::test]
async fn a_refused_auto_promotion_waits_for_the_next_learn() {
    let (app, _dir) = learning_app(None, |s| {
        s.learning.auto_promote = true;
        s.learning.auto_promote_min_examples = 1;
        s.learning.auto_promote_min_live_labels = 1;
    })
    .await;
    let champion = served_version(&app).await;
    // Every remaining row with the wrong label: worse on the holdout.
    let flipped: Vec<(String, String)> = rest_examples(usize::MAX)
        .into_iter()
        .map(|(t, l)| (t, if l == "spam" { "ham" } else { "spam" }.to_owned()))
        .collect();
    let (first, last) = flipped.split_at(flipped.len() - 1);
    assert_eq!(post(&app, "/learn", &body(first), None).await.status(), 200);
    assert_eq!(all_auto_attempts(&app).await, 0.0, "no label yet");
    // The first label meets both minimums: tried, refused by the
    // no-regression gate.
    label_predictions(&app, 0, 1).await;
    assert_eq!(auto_attempts(&app, "regression").await, 1.0);
    assert_eq!(all_auto_attempts(&app).await, 1.0);
    // More labels on the same challenger: not tried again.
    label_predictions(&app, 1, 3).await;
    assert_eq!(live_labels(&app).await, 4);
    assert_eq!(all_auto_attempts(&app).await, 1.0);
    // Something new learned: tried again, refused again.
    assert_eq!(post(&app, "/learn", &body(last), None).await.status(), 200);
    assert_eq!(auto_attempts(&app, "regression").await, 2.0);
    assert_eq!(all_auto_attempts(&app).await, 2.0);
    assert_eq!(served_version(&app).await, champion);
    assert_eq!(auto_attempts(&app, "promoted").await, 0.0);
    app.stop().await;
}

#[tokio::test]
async fn auto_promotion_is_off_by_default() {
    let (app, _dir) = learning_app(None, |s| {
        s.learning.auto_promote_min_examples = 1;
        s.learning.auto_promote_min_live_labels = 1;
    })
    .await;
    let champion = served_version(&app).await;
    let (test, _, _) = parts();
    let examples = labelled(&test)[..10].to_vec();
    assert_eq!(
        post(&app, "/learn", &body(&examples), None).await.status(),
        200
    );
    label_predictions(&app, 0, 3).await;
    assert_eq!(all_auto_attempts(&app).await, 0.0);
    assert_eq!(served_version(&app).await, champion);
    app.stop().await;
}
