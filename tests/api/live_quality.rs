//! Live quality under load and failure: concurrent feedback, the memory bounds
//! through the HTTP API, and the feedback log surviving `kill -9`.

use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// 16 clients × 50 predictions, each labelled by two racing requests: exactly
/// one of each pair is accepted, and the window, the counters and the live
/// figures account for every accepted item exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_feedback_is_counted_exactly_once() {
    const CLIENTS: usize = 16;
    const PER_CLIENT: usize = 50;
    let app = Arc::new(spawn_app_with(|s| s.feedback.window = 10_000).await);
    let data = Arc::new(sample());
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (app, data) = (Arc::clone(&app), Arc::clone(&data));
        tasks.push(tokio::spawn(async move {
            // (true label, predicted label) of accepted feedback; other outcomes
            let mut accepted = Vec::new();
            let mut duplicates = 0usize;
            for i in 0..PER_CLIENT {
                let (text, label) = &data[(c * PER_CLIENT + i) % data.len()];
                let p = app.predict(text).await;
                let body = json!({"prediction_id": p["prediction_id"], "label": label});
                let (a, b) = tokio::join!(
                    app.post_json("/feedback", &body),
                    app.post_json("/feedback", &body)
                );
                let mut statuses = [a.status().as_u16(), b.status().as_u16()];
                statuses.sort_unstable();
                assert_eq!(statuses, [202, 409], "one accepted, one duplicate");
                accepted.push((label.clone(), p["label"].as_str().unwrap().to_owned()));
                duplicates += 1;
            }
            (accepted, duplicates)
        }));
    }
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut duplicates = 0;
    for t in tasks {
        let (acc, dup) = t.await.unwrap();
        for pair in acc {
            *expected.entry(pair).or_default() += 1;
        }
        duplicates += dup;
    }
    let total = (CLIENTS * PER_CLIENT) as u64;
    assert_eq!(expected.values().sum::<u64>(), total);

    let q: Value = app.get("/model/quality").await.json().await.unwrap();
    assert_eq!(q["samples"].as_u64(), Some(total));
    let correct: u64 = expected
        .iter()
        .filter(|((t, p), _)| t == p)
        .map(|(_, n)| n)
        .sum();
    let accuracy = correct as f64 / total as f64;
    assert!((q["live"]["accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-12);

    let m = app.metrics().await;
    assert_eq!(
        metric_value(&m, "nbserve_feedback_total{result=\"accepted\"}"),
        Some(total as f64)
    );
    assert_eq!(
        metric_value(&m, "nbserve_feedback_total{result=\"duplicate\"}"),
        Some(duplicates as f64)
    );
    assert_eq!(
        metric_value(&m, "nbserve_live_window_samples{model=\"spam-nb\"}"),
        Some(total as f64)
    );
    for t in ["ham", "spam"] {
        for p in ["ham", "spam"] {
            let series = format!(
                "nbserve_feedback_confusion_total{{model=\"spam-nb\",predicted_label=\"{p}\",true_label=\"{t}\"}}"
            );
            let want = expected.get(&(t.into(), p.into())).copied().unwrap_or(0);
            assert_eq!(metric_value(&m, &series), Some(want as f64), "{series}");
        }
    }
    Arc::into_inner(app).expect("tasks done").stop().await;
}

#[tokio::test]
async fn capacity_drops_the_oldest_predictions_first() {
    let app = spawn_app_with(|s| s.feedback.capacity = 5).await;
    let texts: Vec<String> = (0..8).map(|i| format!("document number {i}")).collect();
    let r = app
        .post_json("/predict/batch", &json!({ "texts": texts }))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let ids: Vec<String> = body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["prediction_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(app.state.feedback.remembered(), 5);
    for (i, id) in ids.iter().enumerate() {
        let r = app
            .post_json("/feedback", &json!({"prediction_id": id, "label": "ham"}))
            .await;
        if i < 3 {
            assert_error(r, 404, "unknown_prediction").await;
        } else {
            assert_eq!(r.status(), 202, "prediction {i} is among the newest 5");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn predictions_older_than_max_age_are_unknown() {
    let app = spawn_app_with(|s| s.feedback.max_age_secs = 1).await;
    let old = app.predict("an early document").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Still in memory (nothing newer evicted it yet), but past max_age.
    assert_eq!(app.state.feedback.remembered(), 1);
    let r = app
        .post_json(
            "/feedback",
            &json!({"prediction_id": old["prediction_id"], "label": "ham"}),
        )
        .await;
    assert_error(r, 404, "unknown_prediction").await;
    // The next prediction drops it from memory.
    let fresh = app.predict("a later document").await;
    assert_eq!(app.state.feedback.remembered(), 1);
    let r = app
        .post_json(
            "/feedback",
            &json!({"prediction_id": fresh["prediction_id"], "label": "ham"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let r = app
        .post_json(
            "/feedback",
            &json!({"prediction_id": old["prediction_id"], "label": "ham"}),
        )
        .await;
    assert_error(r, 404, "unknown_prediction").await;
    app.stop().await;
}

/// Feedback streams in from 4 clients that never stop on their own (each
/// predicts a batch, labels it, and goes on until the server is gone); the
/// real binary is killed with SIGKILL once 300 feedbacks were accepted. Every
/// complete line of the log is JSON, a cut last line is the only allowed
/// damage, and every accepted response has its line (a line is written
/// before the response is sent; at most one request per client can have been
/// written but not yet answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_log_survives_kill_9() {
    const CLIENTS: usize = 4;
    const KILL_AFTER: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("feedback.jsonl");
    let port = free_port();
    let mut child = serve_command(
        port,
        &[
            ("NBSERVE__FEEDBACK__LOG_PATH", log.to_str().unwrap()),
            // Issue #20: with `always`, no acknowledged line may be lost.
            ("NBSERVE__FEEDBACK__LOG_FSYNC", "always"),
            ("NBSERVE__LOG__LEVEL", "warn"),
        ],
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_ready(port, &mut child);
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let give_up = Instant::now() + Duration::from_secs(120);
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, url, accepted) = (client.clone(), url.clone(), Arc::clone(&accepted));
        tasks.push(tokio::spawn(async move {
            let texts: Vec<String> = (0..50)
                .map(|i| format!("client {c} message {i} about work"))
                .collect();
            let mut acked = Vec::new();
            // Ok(acked) once the server is gone; Err if the client gave up first.
            while Instant::now() < give_up {
                let Ok(r) = client
                    .post(format!("{url}/predict/batch"))
                    .json(&json!({ "texts": texts }))
                    .send()
                    .await
                else {
                    return Ok(acked);
                };
                assert_eq!(r.status(), 200);
                let Ok(body) = r.json::<Value>().await else {
                    return Ok(acked);
                };
                for p in body["predictions"].as_array().unwrap() {
                    let id = p["prediction_id"].as_str().unwrap().to_owned();
                    let r = client
                        .post(format!("{url}/feedback"))
                        .json(&json!({"prediction_id": id, "label": "ham"}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 202 => {
                            acked.push(id);
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => panic!("feedback answered {}", r.status()),
                        Err(_) => return Ok(acked), // the server is gone
                    }
                }
            }
            Err(acked.len())
        }));
    }
    while accepted.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            Instant::now() < give_up,
            "feedback never reached {KILL_AFTER}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let mut acked = HashSet::new();
    for t in tasks {
        let mine = t.await.unwrap();
        acked.extend(mine.unwrap_or_else(|n| panic!("a client gave up after {n} feedbacks")));
    }
    assert!(acked.len() >= KILL_AFTER, "{} accepted", acked.len());

    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.split('\n').collect();
    let tail = lines.pop().unwrap(); // after the last '\n': empty, or a cut line
    assert!(
        tail.is_empty() || serde_json::from_str::<Value>(tail).is_err(),
        "a complete record without its newline: {tail}"
    );
    let mut logged = HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line {} is not JSON ({e}): {line}", i + 1));
        assert_eq!(v["label"], "ham");
        assert!(
            logged.insert(v["prediction_id"].as_str().unwrap().to_owned()),
            "logged twice: {line}"
        );
    }
    assert!(
        acked.is_subset(&logged),
        "{} accepted responses have no log line",
        acked.difference(&logged).count()
    );
    assert!(
        logged.len() <= acked.len() + CLIENTS,
        "{} lines for {} accepted responses and {CLIENTS} clients",
        logged.len(),
        acked.len()
    );
    eprintln!(
        "kill -9 after {} accepted responses: {} complete log lines, tail {} bytes",
        acked.len(),
        logged.len(),
        tail.len()
    );
}

/// A class with no labelled prediction in the window has no recall: `null`,
/// not 0 (which reads as "every spam missed"); balanced accuracy averages
/// the classes that have one.
#[tokio::test]
async fn a_class_without_feedback_has_no_recall() {
    let app = spawn_app().await;
    let q: Value = app.get("/model/quality").await.json().await.unwrap();
    assert_eq!(q["live"], Value::Null, "no feedback yet");
    let p = app
        .predict("Hi Bob, can we move the design review to 3pm?")
        .await;
    assert_eq!(p["label"], "ham");
    let body = json!({"prediction_id": p["prediction_id"], "label": "ham"});
    assert_eq!(app.post_json("/feedback", &body).await.status(), 202);
    let q: Value = app.get("/model/quality").await.json().await.unwrap();
    let recall = &q["live"]["per_class_recall"];
    assert_eq!(recall["ham"], json!(1.0));
    assert!(recall.as_object().unwrap().contains_key("spam"), "{q}");
    assert_eq!(recall["spam"], Value::Null, "{q}");
    assert_eq!(q["live"]["balanced_accuracy"], json!(1.0));
    app.stop().await;
}
