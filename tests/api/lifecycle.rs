//! The real binary: gate refusal, bad settings, SIGTERM drain, SIGHUP reload.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::helpers::*;

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn gate_refusal_exits_5_with_the_reason_and_never_binds() {
    let port = free_port();
    let out = serve_command(port, &[("NBSERVE__GATE__MIN_F1_MACRO", "0.9999")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0.9999") && stderr.contains("0.9534"),
        "{stderr}"
    );
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "port stayed free"
    );
}

#[test]
fn invalid_model_exits_4_and_bad_settings_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{\"format\": \"something-else\"}").unwrap();
    let out = serve_command(
        free_port(),
        &[("NBSERVE__MODEL__PATH", bad.to_str().unwrap())],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model format"));
    let out = serve_command(free_port(), &[("NBSERVE__SERVER__PROT", "1")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prot"));
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let port = free_port();
    // Big batches, so the requests are still being served when the signal lands.
    let mut child = serve_command(
        port,
        &[
            ("NBSERVE__SERVER__BODY_LIMIT_BYTES", "100000000"),
            // The byte budget must hold at least one maximum-size body.
            ("NBSERVE__SERVER__MAX_INFLIGHT_BODY_BYTES", "100000000"),
        ],
    )
    .spawn()
    .unwrap();
    wait_ready(port, &mut child);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let texts: Vec<String> = sample()
        .into_iter()
        .map(|(t, _)| t)
        .cycle()
        .take(1000)
        .collect();
    const N: usize = 4;
    let mut inflight = Vec::new();
    for _ in 0..N {
        let (client, url, texts) = (client.clone(), url.clone(), texts.clone());
        inflight.push(tokio::spawn(async move {
            let r = client
                .post(format!("{url}/predict/batch"))
                .json(&serde_json::json!({ "texts": texts }))
                .send()
                .await
                .expect("request accepted before the signal");
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.expect("complete body");
            (status, body["predictions"].as_array().map_or(0, Vec::len))
        }));
    }
    // Wait until the server is serving all of them (the scrape itself is one more).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = client
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metric_value(&m, "nbserve_http_requests_in_flight").unwrap_or(0.0) >= (N + 1) as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "batches never got in flight");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(&child, "TERM");
    for h in inflight {
        assert_eq!(
            h.await.unwrap(),
            (200, 1000),
            "in-flight request completed in full"
        );
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no longer accepting"
    );
}

#[test]
fn sighup_reloads_the_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    std::fs::copy(shipped_model(), &path).unwrap();
    let port = free_port();
    let mut child = serve_command(
        port,
        &[
            ("NBSERVE__MODEL__PATH", path.to_str().unwrap()),
            ("NBSERVE__MODEL__DIR", dir.path().to_str().unwrap()),
        ],
    )
    .spawn()
    .unwrap();
    wait_ready(port, &mut child);
    write_variant(dir.path(), "m.json", |a| a.model.version = "hup".into());
    signal(&child, "HUP");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reloaded = false;
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) if l.contains("model reloaded") => {
                assert!(l.contains("hup"), "{l}");
                reloaded = true;
                break;
            }
            Some(Ok(_)) => continue,
            _ => break,
        }
    }
    signal(&child, "TERM");
    let _ = child.wait();
    assert!(reloaded, "no reload logged after SIGHUP");
}

/// With debug logging, the logs carry neither request text nor the admin
/// token (right or wrong), whatever the request did.
#[tokio::test]
async fn debug_logs_never_carry_request_text_or_tokens() {
    const TEXT: &str = "Zq7TEXTSECRET";
    const GOOD: &str = "Zq7GOODTOKENSECRET";
    const WRONG: &str = "Zq7WRONGTOKENSECRET";
    let port = free_port();
    let mut cmd = serve_command(
        port,
        &[
            ("NBSERVE__LOG__LEVEL", "debug"),
            ("NBSERVE__ADMIN__TOKEN", GOOD),
        ],
    );
    cmd.env_remove("RUST_LOG");
    let mut child = cmd.spawn().unwrap();
    wait_ready(port, &mut child);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let text = format!("meeting notes {TEXT} for friday");
    let r = client
        .post(format!("{url}/predict"))
        .json(&serde_json::json!({ "text": text, "explain": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<serde_json::Value>().await.unwrap()["prediction_id"].clone();
    for (path, body) in [
        (
            "/predict/batch",
            serde_json::json!({ "texts": [text, TEXT] }),
        ),
        (
            "/feedback",
            serde_json::json!({ "prediction_id": id, "label": TEXT }),
        ),
        (
            "/feedback",
            serde_json::json!({ "prediction_id": TEXT, "label": "ham" }),
        ),
        (
            "/predict",
            serde_json::json!({ "text": TEXT, "extra": TEXT }),
        ),
        ("/predict", serde_json::json!({ TEXT: 1 })),
    ] {
        let _ = client
            .post(format!("{url}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    let _ = client
        .post(format!("{url}/predict"))
        .header("content-type", "application/json")
        .body(format!("{{\"text\": \"{TEXT}"))
        .send()
        .await
        .unwrap();
    let _ = client
        .get(format!("{url}/{TEXT}?q={TEXT}"))
        .send()
        .await
        .unwrap();
    for token in [GOOD, WRONG] {
        let _ = client
            .post(format!("{url}/admin/reload"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "path": format!("{TEXT}.json") }))
            .send()
            .await
            .unwrap();
        let r = client
            .post(format!("{url}/admin/reload"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), if token == GOOD { 200 } else { 401 });
    }
    signal(&child, "TERM");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // The logs did record the traffic at debug level...
    assert!(stderr.contains("\"level\":\"DEBUG\""), "{stderr}");
    assert!(stderr.contains("model reloaded"), "{stderr}");
    // The wrong token's attempt is logged (without the token).
    assert!(stderr.contains("admin authentication failed"), "{stderr}");
    // ...but none of the secrets.
    for secret in [TEXT, GOOD, WRONG] {
        assert!(!stderr.contains(secret), "{secret} in the logs:\n{stderr}");
    }
}

/// The small version of bench/reliability.sh (b): 16 clients, a fresh
/// connection per request, SIGTERM in the middle. Every request sent before
/// the signal is answered in full; after it connections are refused; and the
/// server's own count of accepted connections equals the answered requests
/// (+1 for the readiness probe), so no accepted connection went unanswered.
#[tokio::test]
async fn sigterm_under_load_answers_every_accepted_connection() {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = free_port();
    let mut child = serve_command(port, &[]).spawn().unwrap();
    wait_ready(port, &mut child);
    let body = serde_json::to_vec(&serde_json::json!({"text": "lunch on friday?"})).unwrap();
    let request = [
        format!(
            "POST /predict HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes(),
        body,
    ]
    .concat();
    let signalled: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (request, signalled) = (request.clone(), signalled.clone());
        clients.push(tokio::spawn(async move {
            // (sent before the signal, outcome)
            let mut outcomes: Vec<(bool, &'static str)> = Vec::new();
            let stop_at = Instant::now() + Duration::from_secs(10);
            while Instant::now() < stop_at {
                let after = signalled
                    .lock()
                    .unwrap()
                    .is_some_and(|t| t.elapsed() > Duration::from_millis(500));
                if after {
                    break;
                }
                let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    outcomes.push((false, "refused"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let sent_ok = s.write_all(&request).await.is_ok();
                let before = signalled.lock().unwrap().is_none();
                let mut reply = Vec::new();
                let _ = s.read_to_end(&mut reply).await;
                let outcome = if !sent_ok {
                    "reset"
                } else if reply.starts_with(b"HTTP/1.1 200") && reply.ends_with(b"}") {
                    "ok"
                } else {
                    "unanswered"
                };
                outcomes.push((before, outcome));
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    *signalled.lock().unwrap() = Some(Instant::now());
    signal(&child, "TERM");
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let status = tokio::task::spawn_blocking(move || {
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        (child.wait().unwrap(), stderr)
    })
    .await
    .unwrap();
    let (exit, stderr) = status;
    assert_eq!(exit.code(), Some(0));
    let before: Vec<_> = all.iter().filter(|(b, _)| *b).collect();
    assert!(
        before.len() > 50,
        "{} requests before the signal",
        before.len()
    );
    let lost: Vec<_> = before.iter().filter(|(_, o)| *o != "ok").collect();
    assert!(
        lost.is_empty(),
        "{} of {} lost: {lost:?}",
        lost.len(),
        before.len()
    );
    let completed = all.iter().filter(|(_, o)| *o == "ok").count() as u64;
    let accepted = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["connections_accepted"].as_u64())
        .expect("drain log line with connections_accepted");
    assert_eq!(accepted, completed + 1, "accepted vs. answered (+1 probe)");
    assert!(
        all.iter().any(|(b, o)| !*b && *o == "refused"),
        "new connections are refused after the signal"
    );
}

/// `server.drain_delay_secs`: after SIGTERM readiness turns 503 at once
/// while new connections are still accepted and answered (so Kubernetes can
/// take the pod out of its endpoints first); after the delay the listener
/// closes and the process drains and exits 0. Clients keep opening fresh
/// connections until one second after they saw `/ready` fail, well inside
/// the five-second delay: every one of those requests must be answered.
#[tokio::test]
async fn drain_delay_keeps_serving_while_readiness_fails() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let port = free_port();
    let mut child = serve_command(port, &[("NBSERVE__SERVER__DRAIN_DELAY_SECS", "5")])
        .spawn()
        .unwrap();
    wait_ready(port, &mut child);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let not_ready = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, not_ready, url) = (client.clone(), not_ready.clone(), url("/predict"));
        clients.push(tokio::spawn(async move {
            // (sent after /ready was seen failing, answered 200)
            let mut outcomes: Vec<(bool, bool)> = Vec::new();
            let mut stop_at: Option<Instant> = None;
            loop {
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                let during = not_ready.load(Ordering::SeqCst);
                if during && stop_at.is_none() {
                    stop_at = Some(Instant::now() + Duration::from_secs(1));
                }
                let r = client
                    .post(&url)
                    .json(&serde_json::json!({"text": "lunch on friday?"}))
                    .send()
                    .await;
                outcomes.push((during, r.is_ok_and(|r| r.status() == 200)));
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&child, "TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = client.get(url("/ready")).send().await.unwrap();
        if r.status() == 503 {
            not_ready.store(true, Ordering::SeqCst);
            break;
        }
        assert!(Instant::now() < deadline, "/ready never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let during = all.iter().filter(|(d, _)| *d).count();
    let failed: Vec<_> = all.iter().filter(|(_, ok)| !ok).collect();
    eprintln!(
        "drain delay: {} requests sent ({during} while /ready was 503), {} failed",
        all.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} failed",
        failed.len(),
        all.len()
    );
    assert!(during >= 4, "only {during} requests while not ready");
    // Then the drain as usual: the process exits 0.
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}
