//! Feedback-log durability: rotation by rename while feedback flows, a
//! non-log file refused at start-up.

use std::collections::HashSet;
use std::time::Duration;

use nbserve::settings::LogFsync;
use serde_json::{json, Value};

use crate::helpers::*;

/// Accepted prediction ids found in the given JSON-lines files.
fn logged_ids(paths: &[std::path::PathBuf]) -> Vec<String> {
    paths
        .iter()
        .filter(|p| p.exists())
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    v["prediction_id"].as_str().unwrap().to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_by_rename_while_feedback_flows_loses_no_accepted_line() {
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("feedback.jsonl");
    let app = spawn_app_with(|s| s.feedback.log_path = Some(path.clone())).await;
    let mut accepted = HashSet::new();
    let mut rotated = Vec::new();
    const N: usize = 300;
    for i in 0..N {
        // Rotate twice while feedback is flowing, the way logrotate does
        // (rename; the server notices the path now names another file).
        if i == N / 3 || i == 2 * N / 3 {
            // Lines are written by the log's own thread after the answer
            // (`interval`): let it catch up, so the count per file below is
            // exact (a line still queued at a rename goes to the new file).
            assert!(app.state.feedback.flush_log(Duration::from_secs(60)).await);
            let to = logs.path().join(format!("feedback.jsonl.{i}"));
            std::fs::rename(&path, &to).unwrap();
            rotated.push(to);
        }
        let p = app.predict(&format!("message number {i}")).await;
        let id = p["prediction_id"].as_str().unwrap().to_owned();
        let r = app
            .post_json("/feedback", &json!({"prediction_id": id, "label": "ham"}))
            .await;
        assert_eq!(r.status(), 202);
        accepted.insert(id);
    }
    rotated.push(path.clone());
    assert!(app.state.feedback.flush_log(Duration::from_secs(60)).await);
    let ids = logged_ids(&rotated);
    let logged: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), N, "every line once");
    assert_eq!(logged, accepted);
    // The current file got the lines after the last rotation.
    assert_eq!(logged_ids(&[path]).len(), N - 2 * N / 3);
    let errors = metric_value(&app.metrics().await, "nbserve_feedback_log_errors_total");
    assert_eq!(errors, Some(0.0));
    app.stop().await;
}

#[tokio::test]
async fn a_file_that_is_not_a_feedback_log_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("important.txt");
    let text = "line one\nline two without a newline";
    std::fs::write(&path, text).unwrap();
    let mut settings = test_settings(dir.path());
    settings.feedback.log_path = Some(path.clone());
    assert!(nbserve::server::Application::build(settings).await.is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

/// Issue #20: a stalled log writer (a slow disk, a blocking write) never
/// blocks a request. On this test's single runtime thread — shared by the
/// server and the client — any request that blocked its worker on the log
/// would hang the whole test instead.
#[tokio::test(flavor = "current_thread")]
async fn a_stalled_log_writer_blocks_no_request() {
    for fsync in [LogFsync::Interval, LogFsync::Always] {
        let logs = tempfile::tempdir().unwrap();
        let path = logs.path().join("feedback.jsonl");
        let log = path.clone();
        let app = spawn_app_with(move |s| {
            s.feedback.log_path = Some(log);
            s.feedback.log_fsync = fsync;
            s.feedback.keep_text = true;
        })
        .await;
        let stall = app.state.feedback.pause_log_writer().unwrap();
        let first = app.predict("first message").await["prediction_id"].clone();
        let feedback = tokio::spawn({
            let (client, url) = (app.client.clone(), app.url("/feedback"));
            async move {
                let body = json!({"prediction_id": first, "label": "spam"});
                client.post(url).json(&body).send().await.unwrap().status()
            }
        });
        // While the writer is stalled: predictions, health and (under
        // `interval`) feedback are answered.
        for i in 0..20 {
            let id = app.predict(&format!("message {i}")).await["prediction_id"].clone();
            assert_eq!(app.get("/health").await.status(), 200);
            if fsync == LogFsync::Interval {
                let r = app
                    .post_json("/feedback", &json!({"prediction_id": id, "label": "ham"}))
                    .await;
                assert_eq!(r.status(), 202);
            }
        }
        let body = std::fs::read_to_string(&path).unwrap();
        assert_eq!(body, "", "nothing written while stalled");
        if fsync == LogFsync::Always {
            // Acknowledged only once synced: still waiting, the worker free.
            assert!(
                !feedback.is_finished(),
                "acknowledged before the line was synced"
            );
        }
        drop(stall);
        assert_eq!(feedback.await.unwrap(), 202);
        assert!(app.state.feedback.flush_log(Duration::from_secs(60)).await);
        let body = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let expected = if fsync == LogFsync::Always { 1 } else { 21 };
        assert_eq!(lines.len(), expected, "{fsync:?}");
        assert!(lines.iter().any(|l| l["text"] == "first message"));
        let m = app.metrics().await;
        assert_eq!(
            metric_value(&m, "nbserve_feedback_log_dropped_total"),
            Some(0.0)
        );
        app.stop().await;
    }
}
