use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn metrics_describe_traffic_and_the_model() {
    let app = spawn_app().await;
    let before = app.metrics().await;
    let ham_before = metric_value(
        &before,
        "nbserve_predictions_total{label=\"ham\",model=\"spam-nb\"}",
    )
    .unwrap();
    let spam_before = metric_value(
        &before,
        "nbserve_predictions_total{label=\"spam\",model=\"spam-nb\"}",
    )
    .unwrap();
    for _ in 0..3 {
        app.predict("hello team, see you at the meeting").await;
    }
    app.post_json(
        "/predict/batch",
        &json!({"texts": ["a document", "another one"]}),
    )
    .await;
    // Over the inline limit (64 KiB): scored on the blocking pool after
    // waiting for a batch slot.
    let big = "word ".repeat(20_000);
    app.post_json("/predict/batch", &json!({"texts": [big, "short"]}))
        .await;
    app.post_json("/predict", &json!({"text": ""})).await;
    app.get("/definitely/not/a/route/12345").await;
    let m = app.metrics().await;
    let ham = metric_value(
        &m,
        "nbserve_predictions_total{label=\"ham\",model=\"spam-nb\"}",
    )
    .unwrap();
    let spam = metric_value(
        &m,
        "nbserve_predictions_total{label=\"spam\",model=\"spam-nb\"}",
    )
    .unwrap();
    assert_eq!((ham + spam) - (ham_before + spam_before), 7.0);
    assert_eq!(
        metric_value(
            &m,
            "nbserve_http_requests_total{method=\"POST\",model=\"spam-nb\",route=\"/predict\",status=\"200\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "nbserve_http_requests_total{method=\"POST\",model=\"spam-nb\",route=\"/predict\",status=\"422\"}"
        ),
        Some(1.0)
    );
    // Unmatched paths share one label value: cardinality stays bounded.
    assert_eq!(
        metric_value(
            &m,
            "nbserve_http_requests_total{method=\"GET\",model=\"\",route=\"unmatched\",status=\"404\"}"
        ),
        Some(1.0)
    );
    assert!(!m.contains("12345"));
    assert_eq!(
        metric_value(&m, "nbserve_batch_size_count{model=\"spam-nb\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric_value(&m, "nbserve_prediction_confidence_count{model=\"spam-nb\"}"),
        Some(7.0)
    );
    assert_eq!(
        metric_value(&m, "nbserve_batch_slot_wait_seconds_count"),
        Some(1.0)
    );
    assert!(
        metric_value(
            &m,
            "nbserve_http_request_duration_seconds_count{method=\"POST\",model=\"spam-nb\",route=\"/predict\"}"
        )
        .unwrap()
            >= 4.0
    );
    assert!(m.contains("nbserve_model_info{model=\"spam-nb\",name=\"spam-nb\",sha256=\"sha256:"));
    assert!(metric_value(&m, "nbserve_model_f1_macro{model=\"spam-nb\"}").unwrap() > 0.8);
    assert_eq!(
        metric_value(&m, "nbserve_gate_min_f1_macro{model=\"spam-nb\"}"),
        Some(0.9)
    );
    // No holdout configured: the gate judged the stored F1.
    assert_eq!(
        metric_value(&m, "nbserve_gate_f1_macro{model=\"spam-nb\"}"),
        metric_value(&m, "nbserve_model_f1_macro{model=\"spam-nb\"}")
    );
    assert_eq!(metric_value(&m, "nbserve_max_concurrency"), Some(1024.0));
    assert!(
        metric_value(
            &m,
            "nbserve_model_loaded_timestamp_seconds{model=\"spam-nb\"}"
        )
        .unwrap()
            > 1.7e9
    );
    // The artifact's own created_at, not the load time.
    let shipped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shipped_model()).unwrap()).unwrap();
    let created = chrono::DateTime::parse_from_rfc3339(shipped["created_at"].as_str().unwrap())
        .unwrap()
        .timestamp() as f64;
    assert_eq!(
        metric_value(
            &m,
            "nbserve_model_created_timestamp_seconds{model=\"spam-nb\"}"
        ),
        Some(created)
    );
    assert!(m.contains("nbserve_build_info{version=\""));
    assert!(m.contains("nbserve_oov_token_ratio_bucket"));
    assert!(m.contains("process_resident_memory_bytes"));
    assert!(metric_value(&m, "nbserve_http_requests_in_flight").is_some());
    app.stop().await;
}

/// A reload publishes the new artifact's creation time (what the freshness
/// alert reads); a refused reload leaves the served model's in place.
#[tokio::test]
async fn model_created_timestamp_follows_reloads() {
    let app = spawn_app().await;
    let dir = app.models_dir.path();
    let old = write_variant(dir, "old.json", |a| {
        a.model.version = "old".into();
        a.created_at = "2020-01-02T03:04:05Z".into();
    });
    let before = app.metrics().await;
    let shipped = metric_value(
        &before,
        "nbserve_model_created_timestamp_seconds{model=\"spam-nb\"}",
    )
    .unwrap();
    assert_eq!(app.reload(Some(json!({"path": old}))).await.status(), 200);
    let m = app.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "nbserve_model_created_timestamp_seconds{model=\"spam-nb\"}"
        ),
        Some(1_577_934_245.0)
    );
    assert_ne!(shipped, 1_577_934_245.0);
    std::fs::write(dir.join("broken.json"), b"{}").unwrap();
    assert_eq!(
        app.reload(Some(json!({"path": "broken.json"})))
            .await
            .status(),
        422
    );
    let m = app.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "nbserve_model_created_timestamp_seconds{model=\"spam-nb\"}"
        ),
        Some(1_577_934_245.0)
    );
    app.stop().await;
}

/// What Prometheus sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The series (name and labels) of an exposition's sample lines.
fn series(exposition: &str) -> std::collections::BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_scrape_that_asks_for_openmetrics_gets_it_and_others_the_classic_format() {
    let app = spawn_app().await;
    app.predict("hello team, see you at the meeting").await;
    // The scrape's own series exist from the second scrape on.
    app.metrics().await;
    let scrape = |accept: Option<&'static str>| {
        let mut req = reqwest::Client::new().get(app.url("/metrics"));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            (ct, r.text().await.unwrap())
        }
    };
    let (ct, open) = scrape(Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(
        ct,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(open.ends_with("\n# EOF\n"), "{open}");
    // Counters are named without `_total` in their metadata.
    assert!(open.contains("# TYPE nbserve_http_requests counter\n"));
    assert!(!open.contains("# TYPE nbserve_http_requests_total"));
    for accept in [None, Some("*/*"), Some("text/plain;version=0.0.4")] {
        let (ct, classic) = scrape(accept).await;
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8", "{accept:?}");
        assert!(!classic.contains("# EOF"));
        assert!(classic.contains("# TYPE nbserve_http_requests_total counter\n"));
        // The same series in both formats.
        let (a, b) = (series(&open), series(&classic));
        let differ: Vec<_> = a.symmetric_difference(&b).collect();
        assert!(differ.is_empty(), "{accept:?}: {differ:?}");
    }
    let predicted = "nbserve_http_requests_total{method=\"POST\",model=\"spam-nb\",route=\"/predict\",status=\"200\"}";
    assert_eq!(metric_value(&open, predicted), Some(1.0));
    // Tracing is off here: no exemplars.
    assert!(!open.contains(" # {"), "{open}");
    app.stop().await;
}
