use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn feedback_is_accepted_once_and_validated() {
    let app = spawn_app().await;
    let p = app.predict("Meeting notes for tomorrow's review").await;
    let id = p["prediction_id"].as_str().unwrap();
    let predicted = p["label"].as_str().unwrap();
    let r = app
        .post_json(
            "/feedback",
            &json!({"prediction_id": id, "label": "nonsense"}),
        )
        .await;
    assert_error(r, 422, "invalid_label").await;
    let r = app
        .post_json(
            "/feedback",
            &json!({"prediction_id": id, "label": predicted}),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["correct"], true);
    let r = app
        .post_json(
            "/feedback",
            &json!({"prediction_id": id, "label": predicted}),
        )
        .await;
    assert_error(r, 409, "duplicate_feedback").await;
    let r = app
        .post_json(
            "/feedback",
            &json!({"prediction_id": uuid::Uuid::new_v4().to_string(), "label": "ham"}),
        )
        .await;
    assert_error(r, 404, "unknown_prediction").await;
    let r = app
        .post_json("/feedback", &json!({"prediction_id": "x", "label": "ham"}))
        .await;
    assert_error(r, 404, "unknown_prediction").await;
    let q: Value = app.get("/model/quality").await.json().await.unwrap();
    assert_eq!(q["samples"], 1);
    assert_eq!(q["live"]["accuracy"], 1.0);
    assert!(q["stored"]["f1_macro"].as_f64().unwrap() > 0.8);
    let m = app.metrics().await;
    let series = format!("nbserve_feedback_confusion_total{{model=\"spam-nb\",predicted_label=\"{predicted}\",true_label=\"{predicted}\"}}");
    assert_eq!(metric_value(&m, &series), Some(1.0));
    assert_eq!(
        metric_value(&m, "nbserve_feedback_total{result=\"duplicate\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&m, "nbserve_live_window_samples{model=\"spam-nb\"}"),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn batch_feedback_reports_each_item() {
    let app = spawn_app().await;
    let a = app.predict("first document here").await;
    let b = app.predict("second document here").await;
    let r = app
        .post_json(
            "/feedback/batch",
            &json!({"items": [
                {"prediction_id": a["prediction_id"], "label": "ham"},
                {"prediction_id": b["prediction_id"], "label": "bogus"},
                {"prediction_id": a["prediction_id"], "label": "ham"},
            ]}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"], 2);
    let results: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, vec!["accepted", "invalid_label", "duplicate"]);
    app.stop().await;
}

#[tokio::test]
async fn live_quality_over_a_replayed_split_equals_offline_evaluation() {
    let app = spawn_app_with(|s| s.feedback.window = 10_000).await;
    let data = sample();
    let model = nbserve::Artifact::load(&shipped_model()).unwrap();
    let offline = nbserve::training::evaluate_on(
        &model.classifier,
        &nbserve::Dataset {
            texts: data.iter().map(|d| d.0.clone()).collect(),
            labels: data.iter().map(|d| d.1.clone()).collect(),
            sha256: String::new(),
        },
    )
    .unwrap();
    for (text, label) in &data {
        let p = app.predict(text).await;
        let r = app
            .post_json(
                "/feedback",
                &json!({"prediction_id": p["prediction_id"], "label": label}),
            )
            .await;
        assert_eq!(r.status(), 202);
    }
    let q: Value = app.get("/model/quality").await.json().await.unwrap();
    assert_eq!(q["samples"].as_u64().unwrap(), data.len() as u64);
    for (live, off) in [
        ("f1_macro", offline.f1_macro),
        ("balanced_accuracy", offline.balanced_accuracy),
        ("accuracy", offline.accuracy),
    ] {
        let v = q["live"][live].as_f64().unwrap();
        assert!((v - off).abs() < 1e-9, "{live}: live {v} vs offline {off}");
    }
    let m = app.metrics().await;
    assert!(
        (metric_value(&m, "nbserve_live_f1_macro{model=\"spam-nb\"}").unwrap() - offline.f1_macro)
            .abs()
            < 1e-9
    );
    app.stop().await;
}

/// Prediction ids are version-8 UUIDs that only the issuing server accepts:
/// one changed hex digit, or the id of another server's prediction made at
/// the same point in its sequence, is an unknown prediction.
#[tokio::test]
async fn only_issued_ids_are_accepted() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    let text = "The quarterly report is attached";
    let from_a = a.predict(text).await["prediction_id"].clone();
    let from_b = b.predict(text).await["prediction_id"].clone();
    let id = from_a.as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 8);
    assert_ne!(from_a, from_b);
    let r = b
        .post_json("/feedback", &json!({"prediction_id": id, "label": "ham"}))
        .await;
    assert_error(r, 404, "unknown_prediction").await;
    for (i, c) in id.char_indices().filter(|(_, c)| *c != '-') {
        let digit = c.to_digit(16).unwrap();
        let changed = char::from_digit((digit + 1) % 16, 16).unwrap();
        let forged = format!("{}{changed}{}", &id[..i], &id[i + 1..]);
        let r = a
            .post_json(
                "/feedback",
                &json!({"prediction_id": forged, "label": "ham"}),
            )
            .await;
        assert_error(r, 404, "unknown_prediction").await;
    }
    let r = a
        .post_json("/feedback", &json!({"prediction_id": id, "label": "ham"}))
        .await;
    assert_eq!(r.status(), 202);
    a.stop().await;
    b.stop().await;
}
