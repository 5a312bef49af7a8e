//! The real binary: gate refusal, bad settings, SIGTERM drain, SIGHUP reload.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// How long a signalled server may take to exit (generous: a loaded machine).
const EXIT_WITHIN: Duration = Duration::from_secs(60);

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
    // The figure the gate judged, as the artifact stores it (read as plain
    // JSON, not through nbserve's loader).
    let artifact: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shipped_model()).unwrap()).unwrap();
    let stored = artifact["evaluation"]["f1_macro"].as_f64().unwrap();
    assert!(
        stderr.contains(&format!("model F1 macro {stored:.4} (stored evaluation)"))
            && stderr.contains("below the gate minimum 0.9999"),
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
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child, EXIT_WITHIN))
        .await
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
    let mut logs = LogLines::take(&mut child);
    wait_ready(port, &mut child);
    write_variant(dir.path(), "m.json", |a| a.model.version = "hup".into());
    signal(&child, "HUP");
    let reloaded = logs.wait_for(Duration::from_secs(30), |l| l.contains("model reloaded"));
    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child, EXIT_WITHIN).code(), Some(0));
    let line = reloaded.expect("no reload logged within 30 s of SIGHUP");
    assert!(line.contains("\"hup\""), "{line}");
}

/// The handlers are in place before the port is bound: SIGHUP and SIGTERM
/// sent the moment the port first accepts a connection reload and drain
/// instead of killing the process with the default action.
#[test]
fn signals_sent_as_soon_as_the_port_accepts_are_handled() {
    for sig in ["HUP", "TERM"] {
        let port = free_port();
        let mut child = serve_command(port, &[]).spawn().unwrap();
        let mut logs = LogLines::take(&mut child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "server exited");
            assert!(Instant::now() < deadline, "port {port} never bound");
            std::thread::sleep(Duration::from_millis(1));
        }
        signal(&child, sig);
        if sig == "HUP" {
            let reloaded = logs.wait_for(Duration::from_secs(30), |l| l.contains("model reloaded"));
            assert!(reloaded.is_some(), "SIGHUP right after bind: no reload");
            wait_ready(port, &mut child);
            signal(&child, "TERM");
        }
        let status = wait_exit(&mut child, EXIT_WITHIN);
        assert_eq!(
            status.code(),
            Some(0),
            "SIG{sig} right after bind: {status}"
        );
    }
}

/// The handlers are in place before the model loads: a SIGHUP during the
/// load (here a holdout evaluation) is kept and reloads once the server is
/// up; a SIGTERM during the load ends the start with exit 0, nothing bound.
/// (The default action used to kill the process: 129, 143.)
#[test]
fn signals_while_the_model_loads_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let holdout = dir.path().join("holdout.csv");
    let sample = std::fs::read_to_string(root().join("tests/data/sample.csv")).unwrap();
    let (head, rows) = sample.split_once('\n').unwrap();
    std::fs::write(&holdout, format!("{head}\n{}", rows.repeat(4))).unwrap();
    for sig in ["HUP", "TERM"] {
        let port = free_port();
        let mut child = serve_command(
            port,
            &[("NBSERVE__GATE__HOLDOUT_PATH", holdout.to_str().unwrap())],
        )
        .spawn()
        .unwrap();
        let mut logs = LogLines::take(&mut child);
        // More than one thread: the runtime is up, the load about to start.
        let tasks = format!("/proc/{}/task", child.id());
        while std::fs::read_dir(&tasks).map_or(0, Iterator::count) < 2 {
            assert!(child.try_wait().unwrap().is_none(), "server exited");
            std::thread::sleep(Duration::from_micros(500));
        }
        signal(&child, sig);
        let (up, reloaded) = if sig == "HUP" {
            let up = logs.wait_for(Duration::from_secs(60), |l| l.contains("listening"));
            let reloaded = logs.wait_for(Duration::from_secs(60), |l| l.contains("model reloaded"));
            if child.try_wait().unwrap().is_none() {
                signal(&child, "TERM");
            }
            (up.is_some(), reloaded.is_some())
        } else {
            (false, false)
        };
        let status = wait_exit(&mut child, EXIT_WITHIN);
        let logs = logs.all(Duration::from_secs(5));
        assert_eq!(
            status.code(),
            Some(0),
            "SIG{sig} while loading: {status}\n{logs}"
        );
        if sig == "HUP" {
            assert!(up && reloaded, "up {up}, reloaded {reloaded}:\n{logs}");
        } else {
            assert!(logs.contains("stopped while loading the model"), "{logs}");
            assert!(!logs.contains("listening"), "{logs}");
        }
    }
}

/// With debug logging, the logs carry neither request text nor the admin
/// or feedback token (right or wrong), whatever the request did.
#[tokio::test]
async fn debug_logs_never_carry_request_text_or_tokens() {
    const TEXT: &str = "Zq7TEXTSECRET";
    const GOOD: &str = "Zq7GOODTOKENSECRET";
    const WRONG: &str = "Zq7WRONGTOKENSECRET";
    const LABELS: &str = "Zq7FEEDBACKTOKENSECRET";
    let port = free_port();
    let mut cmd = serve_command(
        port,
        &[
            ("NBSERVE__LOG__LEVEL", "debug"),
            ("NBSERVE__ADMIN__TOKEN", GOOD),
            ("NBSERVE__FEEDBACK__TOKEN", LABELS),
        ],
    );
    cmd.env_remove("RUST_LOG");
    let mut child = cmd.spawn().unwrap();
    let logs = LogLines::take(&mut child);
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
            .bearer_auth(LABELS)
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    let r = client
        .post(format!("{url}/feedback"))
        .bearer_auth(WRONG)
        .json(&serde_json::json!({ "prediction_id": id, "label": "ham" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
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
    let stderr = logs.all(EXIT_WITHIN);
    assert_eq!(wait_exit(&mut child, EXIT_WITHIN).code(), Some(0));
    // The logs did record the traffic at debug level...
    assert!(stderr.contains("\"level\":\"DEBUG\""), "{stderr}");
    assert!(stderr.contains("model reloaded"), "{stderr}");
    // The wrong token's attempt is logged (without the token).
    assert!(stderr.contains("admin authentication failed"), "{stderr}");
    assert!(
        stderr.contains("feedback authentication failed"),
        "{stderr}"
    );
    // ...but none of the secrets.
    for secret in [TEXT, GOOD, WRONG, LABELS] {
        assert!(!stderr.contains(secret), "{secret} in the logs:\n{stderr}");
    }
}

/// The small version of bench/reliability.sh (b): 16 clients, a fresh
/// connection per request, SIGTERM once 200 requests were answered. Every
/// request sent before the signal is answered in full; after it connections
/// are refused (each client goes on until it sees a refusal); and the
/// server's own count of accepted connections equals the answered requests
/// plus the readiness probes, so no accepted connection went unanswered.
/// Conditions, not clocks: every wait polls to a generous deadline.
#[tokio::test]
async fn sigterm_under_load_answers_every_accepted_connection() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const ANSWERED_BEFORE_SIGNAL: usize = 200;
    let port = free_port();
    let mut child = serve_command(port, &[]).spawn().unwrap();
    let logs = LogLines::take(&mut child);
    let probes = wait_ready(port, &mut child);
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
    let signalled = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (request, signalled, answered) = (request.clone(), signalled.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            // (sent before the signal, outcome)
            let mut outcomes: Vec<(bool, &'static str)> = Vec::new();
            while Instant::now() < give_up {
                let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    let before = !signalled.load(Ordering::SeqCst);
                    outcomes.push((before, "refused"));
                    if before {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    break; // refused after the signal: this client is done
                };
                let sent_ok = s.write_all(&request).await.is_ok();
                let before = !signalled.load(Ordering::SeqCst);
                let mut reply = Vec::new();
                let _ = s.read_to_end(&mut reply).await;
                let outcome = if !sent_ok {
                    "reset"
                } else if reply.starts_with(b"HTTP/1.1 200") && reply.ends_with(b"}") {
                    answered.fetch_add(1, Ordering::SeqCst);
                    "ok"
                } else {
                    "unanswered"
                };
                outcomes.push((before, outcome));
            }
            outcomes
        }));
    }
    while answered.load(Ordering::SeqCst) < ANSWERED_BEFORE_SIGNAL {
        assert!(Instant::now() < give_up, "the clients were never served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signalled.store(true, Ordering::SeqCst);
    signal(&child, "TERM");
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let (exit, stderr) = tokio::task::spawn_blocking(move || {
        let stderr = logs.all(EXIT_WITHIN);
        (wait_exit(&mut child, EXIT_WITHIN), stderr)
    })
    .await
    .unwrap();
    assert_eq!(exit.code(), Some(0));
    let before: Vec<_> = all.iter().filter(|(b, _)| *b).collect();
    assert!(before.len() >= ANSWERED_BEFORE_SIGNAL);
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
    assert_eq!(
        accepted,
        completed + probes,
        "accepted vs. answered (+{probes} readiness probes)"
    );
    assert!(
        all.iter().any(|(b, o)| !*b && *o == "refused"),
        "new connections are refused after the signal"
    );
}

/// During the drain `/ready` answers 503 `not_ready` (so a load balancer
/// stops sending), and `server.shutdown_timeout_secs` bounds the drain: a
/// request whose body never comes (it would time out only after 10 minutes)
/// does not hold the shutdown beyond it.
#[tokio::test]
async fn drain_turns_ready_to_503_and_is_bounded_by_shutdown_timeout() {
    use tokio::io::AsyncWriteExt;
    use tower::ServiceExt;
    let mut app = spawn_app_with(|s| {
        s.server.shutdown_timeout_secs = 1;
        s.server.request_timeout_ms = 600_000;
    })
    .await;
    let mut held = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    held.write_all(
        b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"te",
    )
    .await
    .unwrap();
    let max = app.state.settings.server.max_concurrency;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.state.concurrency.available_permits() == max {
        assert!(Instant::now() < deadline, "held request never admitted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.get("/ready").await.status(), 200);

    let started = Instant::now();
    app.begin_stop();
    while app.state.is_ready() {
        assert!(Instant::now() < deadline, "the drain never began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The listener is closing: ask the server's own router, as a connection
    // accepted during the drain would.
    let router = nbserve::server::router(app.state.clone());
    let request = axum::http::Request::get("/ready")
        .body(axum::body::Body::empty())
        .unwrap();
    let r = router.oneshot(request).await.unwrap();
    assert_eq!(r.status(), 503);
    let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "not_ready", "{v}");

    tokio::time::timeout(Duration::from_secs(120), app.stop())
        .await
        .expect("the drain outlived shutdown_timeout_secs by minutes");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "drain cut short"
    );
    drop(held);
}

/// `nbserve healthcheck` (the container health check) exits 0 against a
/// healthy server and 6 once it is gone.
#[test]
fn healthcheck_exits_0_on_a_healthy_server_and_6_on_a_dead_one() {
    let port = free_port();
    let mut child = serve_command(port, &[]).spawn().unwrap();
    wait_ready(port, &mut child);
    let healthcheck = || {
        Command::new(env!("CARGO_BIN_EXE_nbserve"))
            .args(["healthcheck", "--url"])
            .arg(format!("http://127.0.0.1:{port}/health"))
            .args(["--timeout-ms", "30000"])
            .output()
            .unwrap()
    };
    let o = healthcheck();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child, EXIT_WITHIN).code(), Some(0));
    let o = healthcheck();
    assert_eq!(o.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("127.0.0.1:{port}")));
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
