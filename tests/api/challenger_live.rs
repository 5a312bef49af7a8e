//! Shadow scoring judged by labels: `/feedback` on a prediction the
//! challenger also scored updates both models' live F1 macro, and
//! `GET /challenger` shows it beside both models' holdout F1 macro.

use serde_json::{json, Value};

use nbserve::Artifact;

use crate::helpers::metric_value;
use crate::learn::{body, flipped_rest, learning_app, parts, post, promote, rest_examples};

/// scikit-learn's `f1_score(truth, predicted, average="macro")`
/// (`zero_division=0`, over the classes in either list), written out.
fn f1_macro(truth: &[&str], predicted: &[&str]) -> f64 {
    let mut classes: Vec<&str> = truth.iter().chain(predicted).copied().collect();
    classes.sort_unstable();
    classes.dedup();
    let sum: f64 = classes
        .iter()
        .map(|c| {
            let pairs = truth.iter().zip(predicted);
            let tp = pairs.clone().filter(|(t, p)| *t == c && *p == c).count() as f64;
            let fp = pairs.clone().filter(|(t, p)| *t != c && *p == c).count() as f64;
            let fn_ = pairs.filter(|(t, p)| *t == c && *p != c).count() as f64;
            if tp == 0.0 {
                0.0
            } else {
                2.0 * tp / (2.0 * tp + fp + fn_)
            }
        })
        .sum();
    sum / classes.len() as f64
}

#[test]
fn the_hand_written_f1_is_scikit_learns() {
    // a: P 1, R 1/2; b: P 1/2, R 1/2; c: predicted once, never true.
    let got = f1_macro(&["a", "a", "b", "b"], &["a", "b", "b", "c"]);
    assert!((got - (2.0 / 3.0 + 0.5 + 0.0) / 3.0).abs() < 1e-12);
}

#[tokio::test]
async fn feedback_scores_champion_and_challenger_live_on_the_same_predictions() {
    let (app, dir) = learning_app(None, |_| {}).await;
    // Learned with every label flipped: a challenger that often disagrees.
    let flipped = flipped_rest();
    assert_eq!(
        post(&app, "/learn", &body(&flipped), None).await.status(),
        200
    );
    let bytes = app.get("/challenger/artifact").await.bytes().await.unwrap();
    let challenger = Artifact::load_bytes(&bytes).unwrap();
    let (test, _, _) = parts();
    // 20 of each class.
    let pick = |class: &'static str| {
        let rows = test.texts.iter().zip(&test.labels);
        rows.filter(move |(_, l)| *l == class).take(20)
    };
    let (texts, truth): (Vec<&String>, Vec<&str>) = pick("spam")
        .chain(pick("ham"))
        .map(|(t, l)| (t, l.as_str()))
        .unzip();
    let (mut champion_said, mut challenger_said) = (Vec::new(), Vec::new());
    for (text, label) in texts.iter().zip(&truth) {
        let r: Value = app
            .post_json("/predict", &json!({"text": text}))
            .await
            .json()
            .await
            .unwrap();
        champion_said.push(r["label"].as_str().unwrap().to_owned());
        let c = challenger.classifier.predict(text);
        challenger_said.push(challenger.classifier.classes()[c.label].clone());
        let id = r["prediction_id"].as_str().unwrap();
        let fb = app
            .post_json("/feedback", &json!({"prediction_id": id, "label": label}))
            .await;
        assert_eq!(fb.status(), 202);
    }
    let champion_said: Vec<&str> = champion_said.iter().map(String::as_str).collect();
    let challenger_said: Vec<&str> = challenger_said.iter().map(String::as_str).collect();
    assert_ne!(champion_said, challenger_said, "the two models disagree");
    let state: Value = app.get("/challenger").await.json().await.unwrap();
    let live = &state["live"];
    assert_eq!(live["labels"], 40, "{state}");
    let expected = (
        f1_macro(&truth, &champion_said),
        f1_macro(&truth, &challenger_said),
    );
    let got = (
        live["champion_f1_macro"].as_f64().unwrap(),
        live["challenger_f1_macro"].as_f64().unwrap(),
    );
    assert!(
        (got.0 - expected.0).abs() < 1e-12 && (got.1 - expected.1).abs() < 1e-12,
        "live {got:?}, by hand {expected:?}"
    );
    assert!(got.0 > got.1, "the flipped challenger is worse: {got:?}");
    // Holdout: the champion's as the gate judged it, the challenger's as
    // its artifact's evaluation (made on the same holdout).
    let model: Value = app.get("/model").await.json().await.unwrap();
    let holdout = &state["holdout"];
    assert_eq!(
        holdout["champion_f1_macro"], model["gate_f1_macro"],
        "{model}"
    );
    let challenger_f1 = holdout["challenger_f1_macro"].as_f64().unwrap();
    assert!((challenger_f1 - challenger.meta.evaluation.f1_macro).abs() < 1e-12);
    // Worse than the champion on the holdout: refused as a regression.
    assert_eq!(promote(&app, json!({})).await.status(), 409);
    // Computed once per generation: with the holdout gone, the same
    // generation still shows it; the next one cannot be evaluated.
    std::fs::remove_file(dir.path().join("holdout.csv")).unwrap();
    let again: Value = app.get("/challenger").await.json().await.unwrap();
    assert_eq!(again["holdout"]["challenger_f1_macro"], challenger_f1);
    let one = rest_examples(1);
    assert_eq!(post(&app, "/learn", &body(&one), None).await.status(), 200);
    let next: Value = app.get("/challenger").await.json().await.unwrap();
    assert_eq!(
        next["holdout"]["challenger_f1_macro"],
        Value::Null,
        "{next}"
    );
    // The live window spans the challenger's generations.
    assert_eq!(next["live"], *live);
    // The same figures, and what led to them, in the metrics; refused
    // promotions counted by their outcome (no holdout now: 422).
    assert_eq!(promote(&app, json!({})).await.status(), 422);
    let text = app.metrics().await;
    let value = |series: &str| metric_value(&text, series).unwrap_or(f64::NAN);
    let learned = (flipped.len() + 1) as f64;
    assert_eq!(
        value("nbserve_challenger_examples_total{change=\"learned\",model=\"learnable\"}"),
        learned
    );
    assert_eq!(
        value("nbserve_challenger_examples_total{change=\"forgotten\",model=\"learnable\"}"),
        0.0
    );
    let disagreed = champion_said
        .iter()
        .zip(&challenger_said)
        .filter(|(a, b)| a != b)
        .count() as f64;
    let shadow = "nbserve_challenger_shadow_predictions_total";
    assert_eq!(
        value(&format!(
            "{shadow}{{model=\"learnable\",result=\"disagreed\"}}"
        )),
        disagreed
    );
    assert_eq!(
        value(&format!(
            "{shadow}{{model=\"learnable\",result=\"agreed\"}}"
        )),
        40.0 - disagreed
    );
    let f1 = "nbserve_challenger_live_f1_macro";
    assert_eq!(
        value(&format!("{f1}{{model=\"learnable\",role=\"champion\"}}")),
        got.0
    );
    assert_eq!(
        value(&format!("{f1}{{model=\"learnable\",role=\"challenger\"}}")),
        got.1
    );
    assert_eq!(
        value("nbserve_challenger_live_labels{model=\"learnable\"}"),
        40.0
    );
    assert_eq!(
        value("nbserve_challenger_learned_bytes{model=\"learnable\"}"),
        next["learned_bytes"].as_f64().unwrap()
    );
    let promotions = "nbserve_challenger_promotions_total";
    assert_eq!(
        value(&format!(
            "{promotions}{{model=\"learnable\",outcome=\"regression\",trigger=\"manual\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!(
            "{promotions}{{model=\"learnable\",outcome=\"refused\",trigger=\"manual\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!(
            "{promotions}{{model=\"learnable\",outcome=\"promoted\",trigger=\"manual\"}}"
        )),
        0.0
    );
    app.stop().await;
}

#[tokio::test]
async fn predictions_not_shadow_scored_leave_the_live_comparison_empty() {
    let (app, _dir) = learning_app(None, |s| s.learning.shadow_scoring = false).await;
    assert_eq!(
        post(&app, "/learn", &body(&rest_examples(20)), None)
            .await
            .status(),
        200
    );
    let r: Value = app
        .post_json("/predict", &json!({"text": "cheap pills now"}))
        .await
        .json()
        .await
        .unwrap();
    let id = r["prediction_id"].as_str().unwrap();
    let fb = app
        .post_json("/feedback", &json!({"prediction_id": id, "label": "spam"}))
        .await;
    assert_eq!(fb.status(), 202);
    let state: Value = app.get("/challenger").await.json().await.unwrap();
    assert_eq!(
        state["live"],
        json!({"labels": 0, "champion_f1_macro": null, "challenger_f1_macro": null})
    );
    app.stop().await;
}
