//! `models.max_total_bytes` counts what learning in place keeps: a
//! schema-3 model's decoded statistics, and the challenger beside the
//! served models.

use nbserve::artifact::MemoryEstimate;
use nbserve::server::Application;
use nbserve::Artifact;

use crate::helpers::{assert_error, metric_value, TestApp};
use crate::learn::{body, learning_app, post, rest_examples};

/// The served model's holding, as `nbserve_model_resident_bytes` shows it.
async fn resident_bytes(app: &TestApp) -> u64 {
    let text = app.metrics().await;
    metric_value(&text, "nbserve_model_resident_bytes{model=\"learnable\"}").unwrap() as u64
}

/// What the served schema-3 file should hold: the estimate of its
/// vocabulary and tables, plus its statistics once decoded.
fn expected_holding(dir: &std::path::Path) -> (u64, u64) {
    let bytes = std::fs::read(dir.join("learnable.json")).unwrap();
    let estimate = MemoryEstimate::of_bytes(&bytes).unwrap().resident;
    let statistics = Artifact::load_bytes(&bytes)
        .unwrap()
        .statistics
        .expect("schema 3")
        .heap_bytes();
    (estimate, statistics)
}

#[tokio::test]
async fn a_schema_3_model_holds_its_statistics_of_the_budget() {
    let (app, dir) = learning_app(None, |_| {}).await;
    let (estimate, statistics) = expected_holding(dir.path());
    assert!(statistics > 0);
    assert_eq!(resident_bytes(&app).await, estimate + statistics);
    app.stop().await;
}

#[tokio::test]
async fn a_schema_3_model_whose_statistics_pass_the_budget_is_not_loaded() {
    let (app, dir) = learning_app(None, |_| {}).await;
    let (estimate, statistics) = expected_holding(dir.path());
    app.stop().await;
    // Room for the model's tables, not for its statistics too.
    let budget = estimate + statistics / 2;
    let models = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::test_settings(models.path());
    settings.model.path = dir.path().join("learnable.json").into();
    settings.gate.min_f1_macro = 0.0;
    settings.models.max_total_bytes = budget;
    let e = match Application::build(settings).await {
        Ok(_) => panic!("started within {budget} bytes"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("models.max_total_bytes"), "{e}");
}

#[tokio::test]
async fn a_learn_whose_challenger_does_not_fit_the_budget_is_a_507() {
    let (app, dir) = learning_app(None, |_| {}).await;
    let (estimate, statistics) = expected_holding(dir.path());
    app.stop().await;
    // The model fits; a challenger (a second scorer) does not.
    let (app, _dir) = learning_app(None, move |s| {
        s.models.max_total_bytes = estimate + statistics + 1024;
    })
    .await;
    let r = post(&app, "/learn", &body(&rest_examples(5)), None).await;
    let e = assert_error(r, 507, "challenger_over_budget").await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("models.max_total_bytes"),
        "{e}"
    );
    assert_error(app.get("/challenger").await, 404, "no_challenger").await;
    app.stop().await;
    // With room for both, the same learn is taken.
    let (app, _dir) = learning_app(None, move |s| {
        s.models.max_total_bytes = 2 * (estimate + statistics);
    })
    .await;
    assert_eq!(
        post(&app, "/learn", &body(&rest_examples(5)), None)
            .await
            .status(),
        200
    );
    app.stop().await;
}
