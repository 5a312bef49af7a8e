//! The real binary: gate refusal, bad settings, SIGTERM drain, SIGHUP reload.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(port: u16, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nbserve"));
    cmd.arg("serve")
        .current_dir(root())
        .env("NBSERVE__SERVER__HOST", "127.0.0.1")
        .env("NBSERVE__SERVER__PORT", port.to_string())
        .env("NBSERVE__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server did not bind port {port}");
}

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
    let out = serve(port, &[("NBSERVE__GATE__MIN_F1_MACRO", "0.9999")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0.9999") && stderr.contains("0.8289"),
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
    let out = serve(
        free_port(),
        &[("NBSERVE__MODEL__PATH", bad.to_str().unwrap())],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model format"));
    let out = serve(free_port(), &[("NBSERVE__SERVER__PROT", "1")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prot"));
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let port = free_port();
    let mut child = serve(port, &[]).spawn().unwrap();
    wait_ready(port);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let texts: Vec<String> = sample().into_iter().take(30).map(|(t, _)| t).collect();
    // Start a burst of big batch requests, then signal while they are in flight.
    let mut inflight = Vec::new();
    for _ in 0..6 {
        let (client, url, texts) = (client.clone(), url.clone(), texts.clone());
        inflight.push(tokio::spawn(async move {
            client
                .post(format!("{url}/predict/batch"))
                .json(&serde_json::json!({ "texts": texts }))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    signal(&child, "TERM");
    let mut completed = 0;
    for h in inflight {
        // Requests sent before the signal complete; ones that raced the closing
        // listener may be refused at connect, but none may be cut off midway.
        match h.await.unwrap() {
            Ok(status) => {
                assert_eq!(status, 200);
                completed += 1;
            }
            Err(e) => assert!(e.is_connect(), "request cut off: {e}"),
        }
    }
    assert!(completed > 0);
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
    let mut child = serve(
        port,
        &[
            ("NBSERVE__MODEL__PATH", path.to_str().unwrap()),
            ("NBSERVE__MODEL__DIR", dir.path().to_str().unwrap()),
        ],
    )
    .spawn()
    .unwrap();
    wait_ready(port);
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
