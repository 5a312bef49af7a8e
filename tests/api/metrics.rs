use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn metrics_describe_traffic_and_the_model() {
    let app = spawn_app().await;
    let before = app.metrics().await;
    let ham_before = metric_value(&before, "nbserve_predictions_total{label=\"ham\"}").unwrap();
    let spam_before = metric_value(&before, "nbserve_predictions_total{label=\"spam\"}").unwrap();
    for _ in 0..3 {
        app.predict("hello team, see you at the meeting").await;
    }
    app.post_json(
        "/predict/batch",
        &json!({"texts": ["a document", "another one"]}),
    )
    .await;
    app.post_json("/predict", &json!({"text": ""})).await;
    app.get("/definitely/not/a/route/12345").await;
    let m = app.metrics().await;
    let ham = metric_value(&m, "nbserve_predictions_total{label=\"ham\"}").unwrap();
    let spam = metric_value(&m, "nbserve_predictions_total{label=\"spam\"}").unwrap();
    assert_eq!((ham + spam) - (ham_before + spam_before), 5.0);
    assert_eq!(
        metric_value(
            &m,
            "nbserve_http_requests_total{method=\"POST\",route=\"/predict\",status=\"200\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "nbserve_http_requests_total{method=\"POST\",route=\"/predict\",status=\"422\"}"
        ),
        Some(1.0)
    );
    // Unmatched paths share one label value: cardinality stays bounded.
    assert_eq!(
        metric_value(
            &m,
            "nbserve_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        Some(1.0)
    );
    assert!(!m.contains("12345"));
    assert_eq!(metric_value(&m, "nbserve_batch_size_count"), Some(1.0));
    assert_eq!(
        metric_value(&m, "nbserve_prediction_confidence_count"),
        Some(5.0)
    );
    assert!(
        metric_value(
            &m,
            "nbserve_http_request_duration_seconds_count{method=\"POST\",route=\"/predict\"}"
        )
        .unwrap()
            >= 4.0
    );
    assert!(m.contains("nbserve_model_info{name=\"spam-nb\",sha256=\"sha256:"));
    assert!(metric_value(&m, "nbserve_model_f1_macro").unwrap() > 0.8);
    assert_eq!(metric_value(&m, "nbserve_gate_min_f1_macro"), Some(0.9));
    assert!(metric_value(&m, "nbserve_model_loaded_timestamp_seconds").unwrap() > 1.7e9);
    assert!(m.contains("nbserve_build_info{version=\""));
    assert!(m.contains("nbserve_oov_token_ratio_bucket"));
    assert!(m.contains("process_resident_memory_bytes"));
    assert!(metric_value(&m, "nbserve_http_requests_in_flight").is_some());
    app.stop().await;
}
