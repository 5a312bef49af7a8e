//! `spawn_app`: the real server on port 0, talked to over HTTP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nbserve::server::{AppState, Application};
use nbserve::Settings;
use serde_json::Value;
use tokio::sync::oneshot;

/// Admin token configured in test apps.
pub const TOKEN: &str = "test-admin-token";

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped model.
pub fn shipped_model() -> PathBuf {
    root().join("models/spam-nb.json")
}

/// The shipped model's `model.version`, read as plain JSON.
pub fn shipped_version() -> String {
    let bytes = std::fs::read(shipped_model()).expect("shipped model");
    let v: Value = serde_json::from_slice(&bytes).expect("JSON");
    v["model"]["version"]
        .as_str()
        .expect("model.version")
        .to_owned()
}

/// A running test server.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub state: AppState,
    /// The app's private models directory (a copy of the shipped model lives there).
    pub models_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Settings every test starts from: loopback, port 0, admin on, a private
/// models directory holding a copy of the shipped model.
pub fn test_settings(models_dir: &Path) -> Settings {
    let model = models_dir.join("spam-nb.json");
    if !model.exists() {
        std::fs::copy(shipped_model(), &model).expect("copy shipped model");
    }
    let mut s = Settings::default();
    s.server.host = "127.0.0.1".into();
    s.server.port = 0;
    s.model.path = model.into();
    s.model.dir = models_dir.to_owned();
    s.admin.token = Some(TOKEN.into());
    // Loading the shipped model (110k terms, debug build) on a loaded machine
    // can outlast the default 10 s: a reload must not turn into a 408. Tests
    // of the timeout set their own.
    s.server.request_timeout_ms = 120_000;
    s
}

/// Spawns the app with default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the app after `configure` adjusts the settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let models_dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(models_dir.path());
    configure(&mut settings);
    let app = Application::build(settings).await.expect("app builds");
    let port = app.port();
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        // Idle pooled connections are dropped well before the server's
        // header_read_timeout (10 s by default) closes them: reusing one the
        // server is closing fails the request (IncompleteMessage).
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(3))
            .build()
            .unwrap(),
        state,
        models_dir,
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send().await.expect("request")
    }

    pub async fn predict(&self, text: &str) -> Value {
        let r = self
            .post_json("/predict", &serde_json::json!({ "text": text }))
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn reload(&self, body: Option<Value>) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/admin/reload"))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request")
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    /// Tells the server to stop (readiness turns 503, the drain begins)
    /// without waiting; [`TestApp::stop`] then waits for the drain.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// Asserts the app's error shape and returns the code.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(
        resp.status().as_u16(),
        status,
        "status for expected code {code}"
    );
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let body: Value = resp.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

/// The value of a sample line in a Prometheus text exposition, e.g.
/// `metric_value(text, "nbserve_predictions_total{label=\"ham\",model=\"spam-nb\"}")`.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let rest = rest.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// Texts of the committed sample with their labels.
pub fn sample() -> Vec<(String, String)> {
    let d =
        nbserve::Dataset::from_csv(&root().join("tests/data/sample.csv"), "text", "label").unwrap();
    d.texts.into_iter().zip(d.labels).collect()
}

/// Writes a copy of the shipped model with a field changed (and re-sealed, so
/// only the intended property differs), returning the file name.
pub fn write_variant(dir: &Path, name: &str, edit: impl FnOnce(&mut nbserve::Artifact)) -> String {
    let bytes = std::fs::read(shipped_model()).unwrap();
    let mut a: nbserve::Artifact = serde_json::from_slice(&bytes).unwrap();
    edit(&mut a);
    a.seal();
    a.save(&dir.join(name)).unwrap();
    name.to_owned()
}

/// A free loopback port (for spawning the real binary).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `nbserve serve` on loopback `port` with JSON logs on a piped stderr; `extra`
/// adds or overrides environment variables.
pub fn serve_command(port: u16, extra: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nbserve"));
    cmd.arg("serve")
        .current_dir(root())
        .env("NBSERVE__SERVER__HOST", "127.0.0.1")
        .env("NBSERVE__SERVER__PORT", port.to_string())
        .env("NBSERVE__LOG__FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

/// Waits until `child` answers `GET /ready` on `port` with 200; panics
/// (killing it) if it exits or is not ready within 30 s. Returns how many
/// probe connections the server accepted (refused connects do not count),
/// for tests that balance the server's connection count.
pub fn wait_ready(port: u16, child: &mut std::process::Child) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut accepted = 0;
    while std::time::Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            accepted += 1;
            if ready_answer(&mut s).is_some_and(|status| status == 200) {
                return accepted;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("server on port {port} not ready within 30 s");
}

/// The status of one `GET /ready` on an open connection (None: no answer
/// within 10 s).
fn ready_answer(s: &mut std::net::TcpStream) -> Option<u16> {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).ok()?;
    let line = reply.split(|b| *b == b'\r').next()?;
    std::str::from_utf8(line)
        .ok()?
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()
}

/// A child's stderr read line by line on its own thread, so a test can wait
/// for a line with a deadline that always holds (a blocking read cannot
/// outlive it).
pub struct LogLines {
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LogLines {
    /// Takes `child`'s piped stderr.
    pub fn take(child: &mut std::process::Child) -> Self {
        use std::io::BufRead;
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The first line (not returned before) for which `wanted` holds, waiting
    /// at most `timeout`; None if it did not come in time or stderr closed.
    pub fn wait_for(&mut self, timeout: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if wanted(&line) {
                return Some(line);
            }
        }
    }

    /// Every line, once stderr closed (the process exited) or `timeout` passed.
    pub fn all(mut self, timeout: Duration) -> String {
        let _ = self.wait_for(timeout, |_| false);
        self.seen.join("\n")
    }
}

/// Waits for `child` to exit, at most `timeout`; kills it and panics if it
/// does not.
pub fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} still running after {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
