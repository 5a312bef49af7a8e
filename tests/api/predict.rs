use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn predict_returns_label_probabilities_version_and_id() {
    let app = spawn_app().await;
    // A known spam mail of the committed sample (its first), and a plain
    // ham note: the class each must get.
    let (spam, label) = sample().into_iter().find(|(_, l)| l == "spam").unwrap();
    assert_eq!(label, "spam");
    let ham = "Hi Bob, can we move the design review to 3pm tomorrow? Thanks";
    assert_eq!(app.predict(ham).await["label"], "ham");
    let body = app.predict(&spam).await;
    let label = body["label"].as_str().unwrap();
    assert_eq!(label, "spam", "{body}");
    let probs = body["probabilities"].as_object().unwrap();
    assert_eq!(probs.len(), 2);
    let total: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9);
    let best = probs
        .iter()
        .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
        .unwrap()
        .0;
    assert_eq!(best, label);
    assert_eq!(body["model_version"], shipped_version());
    assert!(uuid::Uuid::parse_str(body["prediction_id"].as_str().unwrap()).is_ok());
    assert!(body.get("explanation").is_none());
    app.stop().await;
}

#[tokio::test]
async fn predictions_agree_with_the_library_on_real_documents() {
    let app = spawn_app().await;
    let model = nbserve::Artifact::load(&shipped_model()).unwrap();
    for (text, _) in sample().iter().take(40) {
        let body = app.predict(text).await;
        let expected = model.classifier.predict(text);
        let classes = model.classifier.classes();
        assert_eq!(body["label"], classes[expected.label]);
        for (class, p) in classes.iter().zip(expected.probabilities()) {
            let got = body["probabilities"][class].as_f64().unwrap();
            assert!((got - p).abs() <= 1e-12, "{class}: {got} vs {p}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn explain_lists_terms_pushing_toward_the_label() {
    let app = spawn_app().await;
    let (text, _) = sample().into_iter().find(|(_, l)| l == "spam").unwrap();
    let r = app
        .post_json("/predict", &json!({ "text": text, "explain": true }))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let terms = body["explanation"].as_array().unwrap();
    assert!(!terms.is_empty() && terms.len() <= 10);
    let lower = text.to_lowercase();
    let mut last = f64::INFINITY;
    for t in terms {
        let odds = t["log_odds"].as_f64().unwrap();
        assert!(odds > 0.0 && odds <= last, "sorted, positive: {terms:?}");
        last = odds;
        assert!(lower.contains(t["term"].as_str().unwrap()));
    }
    app.stop().await;
}

#[tokio::test]
async fn batch_matches_single_predictions_in_order() {
    let app = spawn_app().await;
    let texts: Vec<String> = sample().into_iter().take(25).map(|(t, _)| t).collect();
    let r = app
        .post_json("/predict/batch", &json!({ "texts": texts }))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let preds = body["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), texts.len());
    assert_eq!(body["model_version"], shipped_version());
    for (p, t) in preds.iter().zip(&texts) {
        let single = app.predict(t).await;
        assert_eq!(p["label"], single["label"]);
        assert_eq!(p["probabilities"], single["probabilities"]);
        assert_ne!(p["prediction_id"], single["prediction_id"]);
    }
    app.stop().await;
}

#[tokio::test]
async fn health_ready_model_and_openapi() {
    let app = spawn_app().await;
    let h: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    let r: Value = app.get("/ready").await.json().await.unwrap();
    assert_eq!(r["status"], "ready");
    assert_eq!(r["model_version"], shipped_version());
    let m: Value = app.get("/model").await.json().await.unwrap();
    assert_eq!(m["name"], "spam-nb");
    assert_eq!(m["classes"], json!(["ham", "spam"]));
    assert!(m["vocabulary_size"].as_u64().unwrap() > 10_000);
    assert!(m["sha256"].as_str().unwrap().starts_with("sha256:"));
    assert!(
        m["evaluation"]["f1_macro"].as_f64().unwrap() >= m["gate_min_f1_macro"].as_f64().unwrap()
    );
    assert_eq!(m["gate_min_f1_macro"], 0.9);
    assert!(m["loaded_at"].is_string() && m["trained_at"].is_string());
    // The shipped model is tuned and calibrated; /model says so.
    assert_eq!(m["training"]["model"], "bernoulli");
    assert!(m["training"]["vectorizer"]["min_df"].is_u64());
    let t = m["calibration"]["temperature"].as_f64().unwrap();
    assert!(t > 1.0, "temperature {t}");
    let e = &m["evaluation"];
    assert!(e["ece"].as_f64().unwrap() <= 0.03);
    assert!(e["ece"].as_f64().unwrap() < e["ece_uncalibrated"].as_f64().unwrap());
    assert!(e["brier_score"].as_f64().unwrap() < e["brier_score_uncalibrated"].as_f64().unwrap());
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/predict",
        "/predict/batch",
        "/feedback",
        "/health",
        "/ready",
        "/model",
        "/admin/reload",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn request_id_is_returned_and_propagated() {
    let app = spawn_app().await;
    let r = app.get("/health").await;
    let id = r.headers().get("x-request-id").unwrap().to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    let r = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "client-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-id");
    app.stop().await;
}
