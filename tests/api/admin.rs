use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn reload_needs_the_bearer_token() {
    let app = spawn_app().await;
    let url = app.url("/admin/reload");
    let r = app.client.post(&url).send().await.unwrap();
    assert_error(r, 401, "unauthorized").await;
    let r = app
        .client
        .post(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;
    let almost = format!("{}x", &TOKEN[..TOKEN.len() - 1]);
    let r = app
        .client
        .post(&url)
        .bearer_auth(almost)
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;
    let r = app
        .client
        .post(&url)
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;
    app.stop().await;
}

#[tokio::test]
async fn admin_is_off_without_a_token() {
    let app = spawn_app_with(|s| s.admin.token = None).await;
    let r = app
        .client
        .post(app.url("/admin/reload"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "admin_disabled").await;
    // Refused from the headers, before a body announced but never sent.
    let head = ["content-type: application/json", "content-length: 1000000"];
    let bytes = crate::raw::request("POST", "/admin/reload", &head, b"");
    let reply = crate::raw::exchange(app.port, bytes, Duration::from_secs(30)).await;
    assert_eq!(reply.status, Some(403), "{reply:?}");
    assert_eq!(reply.json().unwrap()["error"]["code"], "admin_disabled");
    app.stop().await;
}

#[tokio::test]
async fn reload_of_a_new_valid_model_swaps_it_in() {
    let app = spawn_app().await;
    let name = write_variant(app.models_dir.path(), "v2.json", |a| {
        a.model.version = "v2".into()
    });
    let r = app.reload(Some(json!({ "path": name }))).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["version"], "v2");
    assert_eq!(app.predict("hello world").await["model_version"], "v2");
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "nbserve_model_reloads_total{model=\"spam-nb\",result=\"success\"}"
        ),
        Some(1.0)
    );
    assert!(metrics.contains("version=\"v2\""));
    // A plain reload re-reads the file now being served.
    let r = app.reload(None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], "v2");
    app.stop().await;
}

#[tokio::test]
async fn corrupt_and_below_gate_models_are_refused_and_the_old_one_serves() {
    let app = spawn_app().await;
    let dir = app.models_dir.path();
    // One flipped byte in the middle of the vocabulary.
    let mut bytes = std::fs::read(shipped_model()).unwrap();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    std::fs::write(dir.join("corrupt.json"), &bytes).unwrap();
    let body = assert_error(
        app.reload(Some(json!({"path": "corrupt.json"}))).await,
        422,
        "invalid_model",
    )
    .await;
    assert!(
        !body.to_string().contains(dir.to_str().unwrap()),
        "no paths in answers"
    );
    // Half a file.
    std::fs::write(dir.join("half.json"), &bytes[..bytes.len() / 2]).unwrap();
    assert_error(
        app.reload(Some(json!({"path": "half.json"}))).await,
        422,
        "invalid_model",
    )
    .await;
    // Valid but below the gate.
    let low = write_variant(dir, "low.json", |a| {
        a.model.version = "low".into();
        a.evaluation.as_mut().unwrap().f1_macro = 0.5;
    });
    let body = assert_error(
        app.reload(Some(json!({"path": low}))).await,
        422,
        "gate_rejected",
    )
    .await;
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("0.5000") && msg.contains("0.9000"), "{msg}");
    // Escapes from the models directory.
    for p in ["../spam-nb.json", "/etc/passwd", "missing.json"] {
        assert_error(
            app.reload(Some(json!({"path": p}))).await,
            422,
            "invalid_model_path",
        )
        .await;
    }
    assert_error(
        app.reload(Some(json!({"path": 7}))).await,
        422,
        "invalid_request",
    )
    .await;
    assert_eq!(
        app.predict("hello world").await["model_version"],
        shipped_version()
    );
    let metrics = app.metrics().await;
    // Corrupt, half, below-gate and three refused paths; the malformed body is not a reload.
    assert_eq!(
        metric_value(
            &metrics,
            "nbserve_model_reloads_total{model=\"spam-nb\",result=\"failure\"}"
        ),
        Some(6.0)
    );
    app.stop().await;
}

/// A model genuinely different from the shipped one: trained on the
/// committed sample with another alpha (other vocabulary, priors and counts).
fn other_model(dir: &std::path::Path) -> String {
    let data =
        nbserve::Dataset::from_csv(&root().join("tests/data/sample.csv"), "text", "label").unwrap();
    let options = nbserve::training::TrainOptions {
        model: nbserve::classifier::ModelKind::Bernoulli,
        vectorizer: nbserve::classifier::vectorizer::VectorizerOptions::default(),
        calibrate_folds: None,
        alpha: 0.3,
        run: nbserve::training::RunOptions {
            test_size: 0.25,
            seed: 11,
            name: "sample-nb".into(),
            version: Some("other".into()),
            created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        },
    };
    let a = nbserve::training::train(&data, None, &options, |_, _| {}).unwrap();
    a.save(&dir.join("other.json")).unwrap();
    "other.json".into()
}

/// A model's answer for one text: (label, (class, probability) per class).
type Score = (String, Vec<(String, f64)>);

/// (label, probabilities) per text, as `model` itself scores them.
fn scores(model: &std::path::Path, texts: &[String]) -> Vec<Score> {
    let m = nbserve::Artifact::load(model).unwrap();
    let classes = m.classifier.classes();
    texts
        .iter()
        .map(|t| {
            let p = m.classifier.predict(t);
            let probs = classes
                .iter()
                .cloned()
                .zip(p.probabilities())
                .collect::<Vec<_>>();
            (classes[p.label].clone(), probs)
        })
        .collect()
}

/// Clients send /predict and /predict/batch while valid reloads (two
/// different models) and refused ones (corrupt, truncated, below the gate)
/// alternate. Every answer must be exactly what the model its
/// `model_version` names gives for that text: a torn swap (one model's
/// version with the other's scores, or a batch mixing models) fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_while_clients_send_requests_loses_nothing() {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    // Below the shipped model's and the other model's F1, above low.json's 0.5.
    let app = Arc::new(spawn_app_with(|s| s.gate.min_f1_macro = 0.6).await);
    let dir = app.models_dir.path();
    let other = other_model(dir);
    // Invalid artifacts with their own versions: were one ever swapped in,
    // a client would see its version.
    write_variant(dir, "bad.json", |a| a.model.version = "bad".into());
    let mut bytes = std::fs::read(dir.join("bad.json")).unwrap();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    std::fs::write(dir.join("corrupt.json"), &bytes).unwrap();
    std::fs::write(dir.join("truncated.json"), &bytes[..i]).unwrap();
    write_variant(dir, "low.json", |a| {
        a.model.version = "low".into();
        a.evaluation.as_mut().unwrap().f1_macro = 0.5;
    });
    let texts: Arc<Vec<String>> = Arc::new(sample().into_iter().take(50).map(|(t, _)| t).collect());
    let shipped = nbserve::Artifact::load(&dir.join("spam-nb.json")).unwrap();
    let shipped_version = shipped.meta.model.version.clone();
    let expected: Arc<HashMap<String, _>> = Arc::new(HashMap::from([
        (
            shipped_version.clone(),
            scores(&dir.join("spam-nb.json"), &texts),
        ),
        ("other".to_owned(), scores(&dir.join(&other), &texts)),
    ]));
    // The two models disagree on these texts, so a mixed-up answer shows.
    assert!(expected[&shipped_version]
        .iter()
        .zip(&expected["other"])
        .all(|(a, b)| a.1 != b.1));
    let problems: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Checks one answer (a /predict body or a batch item) against the model its version names.
    fn check(
        expected: &HashMap<String, Vec<Score>>,
        version: &Value,
        answer: &Value,
        text: usize,
    ) -> Result<String, String> {
        let version = version.as_str().ok_or("no model_version")?;
        let (label, probs) = &expected
            .get(version)
            .ok_or_else(|| format!("version {version:?} was never valid"))?[text];
        let ok = answer["label"] == label.as_str()
            && probs.iter().all(|(class, p)| {
                answer["probabilities"][class]
                    .as_f64()
                    .is_some_and(|got| (got - p).abs() <= 1e-12)
            });
        if ok {
            Ok(version.to_owned())
        } else {
            Err(format!(
                "text {text}: {answer} is not what {version} gives: {label} {probs:?}"
            ))
        }
    }
    let mut clients = Vec::new();
    for c in 0..8 {
        let (app, texts, expected, problems, seen, done) = (
            app.clone(),
            texts.clone(),
            expected.clone(),
            problems.clone(),
            seen.clone(),
            done.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while !done.load(Ordering::SeqCst) || sent < 20 {
                let at = (c * 7 + sent) % texts.len();
                let mut outcomes = Vec::new();
                if sent.is_multiple_of(2) {
                    let r = app
                        .post_json("/predict", &json!({ "text": texts[at] }))
                        .await;
                    if r.status() != 200 {
                        outcomes.push(Err(format!("/predict answered {}", r.status())));
                    } else {
                        let v: Value = r.json().await.unwrap();
                        outcomes.push(check(&expected, &v["model_version"], &v, at));
                    }
                } else {
                    let idx: Vec<usize> = (0..5).map(|k| (at + k * 3) % texts.len()).collect();
                    let batch: Vec<&String> = idx.iter().map(|&k| &texts[k]).collect();
                    let r = app
                        .post_json("/predict/batch", &json!({ "texts": batch }))
                        .await;
                    if r.status() != 200 {
                        outcomes.push(Err(format!("/predict/batch answered {}", r.status())));
                    } else {
                        let v: Value = r.json().await.unwrap();
                        let preds = v["predictions"].as_array().unwrap();
                        assert_eq!(preds.len(), idx.len());
                        for (p, &k) in preds.iter().zip(&idx) {
                            outcomes.push(check(&expected, &v["model_version"], p, k));
                        }
                    }
                }
                for o in outcomes {
                    match o {
                        Ok(version) => *seen.lock().unwrap().entry(version).or_default() += 1,
                        Err(e) => problems.lock().unwrap().push(e),
                    }
                }
                sent += 1;
            }
            sent
        }));
    }
    // Valid and invalid reloads alternate while the clients run; after each
    // valid one, wait until clients were answered by the new model.
    let plan = [
        (other.as_str(), 200),
        ("corrupt.json", 422),
        ("spam-nb.json", 200),
        ("low.json", 422),
        (other.as_str(), 200),
        ("truncated.json", 422),
        ("spam-nb.json", 200),
        ("corrupt.json", 422),
        (other.as_str(), 200),
        ("low.json", 422),
        ("spam-nb.json", 200),
        ("truncated.json", 422),
    ];
    let deadline = Instant::now() + Duration::from_secs(120);
    for (path, status) in plan {
        let r = app.reload(Some(json!({ "path": path }))).await;
        assert_eq!(r.status(), status, "{path}");
        if status == 200 {
            let version: Value = r.json().await.unwrap();
            let version = version["version"].as_str().unwrap().to_owned();
            let before = seen.lock().unwrap().get(&version).copied().unwrap_or(0);
            while seen.lock().unwrap().get(&version).copied().unwrap_or(0) < before + 5 {
                assert!(Instant::now() < deadline, "no answers from {version}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    let mut sent = 0;
    for c in clients {
        sent += c.await.unwrap();
    }
    assert!(sent >= 160);
    let problems = problems.lock().unwrap();
    assert!(
        problems.is_empty(),
        "{} of {sent} requests wrong, e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(3)]
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
}

/// The sample with every label swapped: a model that is right on it is
/// wrong on this.
fn swapped_labels_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("swapped.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["text", "label"]).unwrap();
    for (text, label) in sample() {
        let swapped = if label == "ham" { "spam" } else { "ham" };
        w.write_record([text.as_str(), swapped]).unwrap();
    }
    w.flush().unwrap();
    path
}

/// With `gate.holdout_path` the server judges every model (at start and on
/// reload) on that file and ignores the stored figure: a stored F1 of 0.5
/// passes when the holdout says otherwise, a stored 0.99 is refused when the
/// holdout shows the model is wrong.
#[tokio::test]
async fn the_server_gates_on_the_holdout_file_not_the_stored_figure() {
    let holdout = root().join("tests/data/sample.csv");
    let documents = sample().len();
    let dir = tempfile::tempdir().unwrap();
    let low = write_variant(dir.path(), "low.json", |a| {
        a.model.version = "low".into();
        a.evaluation.as_mut().unwrap().f1_macro = 0.5;
    });
    let low_path = dir.path().join(&low);
    let app = spawn_app_with(|s| {
        s.model.path = low_path.clone().into();
        s.gate.holdout_path = Some(holdout.clone());
    })
    .await;
    let m: Value = app.get("/model").await.json().await.unwrap();
    assert_eq!(m["version"], "low");
    assert_eq!(
        m["gate_source"],
        format!("holdout re-evaluation, {documents} documents")
    );
    let judged = m["gate_f1_macro"].as_f64().unwrap();
    assert!(judged >= 0.8 && judged != 0.5, "{m}");
    // A reload is judged on the holdout too: a stored 0.5 passes...
    std::fs::copy(&low_path, app.models_dir.path().join("low.json")).unwrap();
    assert_eq!(
        app.reload(Some(json!({"path": "low.json"}))).await.status(),
        200
    );
    // ...and a stored 0.99 fails on a holdout the model gets wrong.
    app.stop().await;
    let swapped = swapped_labels_csv(dir.path());
    let high = write_variant(dir.path(), "high.json", |a| {
        a.evaluation.as_mut().unwrap().f1_macro = 0.99;
    });
    let mut settings = test_settings(dir.path());
    settings.model.path = dir.path().join(high).into();
    settings.gate.holdout_path = Some(swapped);
    let err = nbserve::server::Application::build(settings)
        .await
        .err()
        .expect("refused on the holdout");
    assert!(
        matches!(
            err,
            nbserve::server::StartupError::Model {
                source: nbserve::server::LoadError::Gate(nbserve::GateError::Rejected { .. }),
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("(holdout re-evaluation, {documents} documents)")),
        "{msg}"
    );
    assert!(!msg.contains("0.9900"), "{msg}");
}
