//! `model.poll_interval_secs`: a server follows its model file's content.

use std::time::Duration;

use crate::helpers::*;

/// Polls `metric` on `app` every 100 ms until it reaches `at_least` (10 s deadline).
async fn wait_for_metric(app: &TestApp, series: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = metric_value(&app.metrics().await, series).unwrap_or(0.0);
        if value >= at_least || tokio::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_polling_server_follows_an_atomic_mv_and_refuses_a_bad_replacement_once() {
    let app = spawn_app_with(|s| s.model.poll_interval_secs = 1).await;
    let dir = app.models_dir.path();
    let served = dir.join("spam-nb.json");
    let polls = |result: &str| {
        format!("nbserve_model_polls_total{{model=\"spam-nb\",result=\"{result}\"}}")
    };

    // Same content rewritten: not a change.
    std::fs::copy(shipped_model(), &served).unwrap();
    assert!(wait_for_metric(&app, &polls("unchanged"), 1.0).await >= 1.0);
    assert_eq!(
        metric_value(&app.metrics().await, &polls("reloaded")),
        Some(0.0)
    );

    let next = write_variant(dir, "next.json", |a| a.model.version = "next".into());
    std::fs::rename(dir.join(next), &served).unwrap();
    assert_eq!(wait_for_metric(&app, &polls("reloaded"), 1.0).await, 1.0);
    assert_eq!(app.predict("hello world").await["model_version"], "next");

    let low = write_variant(dir, "low.json", |a| {
        a.model.version = "low".into();
        a.evaluation.as_mut().unwrap().f1_macro = 0.5;
    });
    std::fs::rename(dir.join(low), &served).unwrap();
    assert_eq!(wait_for_metric(&app, &polls("refused"), 1.0).await, 1.0);
    // Not retried while the file stays as it is.
    let unchanged = metric_value(&app.metrics().await, &polls("unchanged")).unwrap();
    wait_for_metric(&app, &polls("unchanged"), unchanged + 2.0).await;
    let m = app.metrics().await;
    assert_eq!(metric_value(&m, &polls("refused")), Some(1.0));
    assert_eq!(metric_value(&m, &polls("reloaded")), Some(1.0));
    assert_eq!(app.predict("hello world").await["model_version"], "next");

    // A missing file is an error, and the model keeps serving.
    std::fs::remove_file(&served).unwrap();
    assert!(wait_for_metric(&app, &polls("error"), 1.0).await >= 1.0);
    assert_eq!(app.predict("hello world").await["model_version"], "next");
    app.stop().await;
}

#[tokio::test]
async fn polling_is_off_by_default() {
    let app = spawn_app().await;
    let dir = app.models_dir.path();
    let next = write_variant(dir, "next.json", |a| a.model.version = "next".into());
    std::fs::rename(dir.join(next), dir.join("spam-nb.json")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = app.metrics().await;
    for result in ["unchanged", "reloaded", "refused", "error"] {
        let series = format!("nbserve_model_polls_total{{model=\"spam-nb\",result=\"{result}\"}}");
        assert_eq!(metric_value(&m, &series), Some(0.0), "{series}");
    }
    assert_ne!(app.predict("hello world").await["model_version"], "next");
    app.stop().await;
}
