//! A battery of hostile requests against the real server, one table.
//!
//! Every case states what must come back. Almost all are answered by the app
//! with its JSON error (`{"error": {"code", "message"}}`), checked for status,
//! code, a short message that echoes no request text, path or internals.
//!
//! Exceptions — answered by hyper's HTTP/1 parser *before the app sees the
//! request*, so with an empty body, no JSON, `connection: close`, and no
//! `nbserve_http_requests_total` sample (`Expect::Http`):
//! - 431 — request head (request line + headers) over 64 KiB
//!   (`server::MAX_HEAD_BYTES`, which also makes a >64 KiB URL a 431 rather
//!   than 414), or more than 100 header fields;
//! - 400 — unparsable request line or header bytes, duplicate or invalid
//!   `Content-Length`.
//!
//! After every case `/health` must still answer 200, and at the end no
//! `status="5xx"` series may exist in `/metrics`.

use std::time::Duration;

use crate::helpers::*;
use crate::raw::{exchange, post_json, request, Reply};

/// Planted in request text: must never come back in an error.
const SECRET: &str = "Zq7SECRETzq7";

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The app's JSON error with this status and code.
    App(u16, &'static str),
    /// Hostile but valid: served, JSON body.
    Served(u16),
    /// Answered by hyper before the app: empty body, connection closed.
    Http(u16),
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        bytes,
        expect,
    }
}

fn text_body(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap()
}

fn auth(token: &str) -> String {
    format!("authorization: Bearer {token}")
}

fn admin(headers: &[&str], body: &[u8]) -> Vec<u8> {
    request("POST", "/admin/reload", headers, body)
}

fn chunked(path: &str, payload: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for piece in payload.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Expect::*;
    let j = "content-type: application/json";
    let tok = auth(TOKEN);
    let almost = auth(&format!("{}X", &TOKEN[..TOKEN.len() - 1]));
    let prefix = auth(&TOKEN[..TOKEN.len() - 1]);
    let longer = auth(&format!("{TOKEN}x"));
    let lower = format!("authorization: bearer {TOKEN}");
    let secret_texts = |n: usize, text: &str| {
        let texts: Vec<String> = (0..n).map(|_| text.to_owned()).collect();
        serde_json::to_vec(&serde_json::json!({ "texts": texts })).unwrap()
    };
    let feedback_items = |n: usize| {
        let items: Vec<_> = (0..n)
            .map(|_| serde_json::json!({"prediction_id": SECRET, "label": "ham"}))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "items": items })).unwrap()
    };
    let long_field = format!("{{\"text\": \"hi\", \"{}\": 1}}", "f".repeat(10_000));
    let long_admin_field = format!("{{\"{}\": 1}}", "f".repeat(10_000));
    let nul_text = {
        let mut b = br#"{"text": "abc"#.to_vec();
        b.push(0);
        b.extend_from_slice(format!("{SECRET}\"}}").as_bytes());
        b
    };
    let bad_utf8 = {
        let mut b = br#"{"text": "caf"#.to_vec();
        b.extend_from_slice(&[0xC3, 0x28, 0xFF, 0xFE]);
        b.extend_from_slice(format!("{SECRET}\"}}").as_bytes());
        b
    };
    let huge_string = text_body(&format!("{SECRET}{}", "a".repeat(3 * 1024 * 1024)));
    let long_text = text_body(&format!("{SECRET} {}", "word ".repeat(220_000)));
    let unicode_soup = "İ\u{301}\u{202E}ǅ\u{200D}👩‍👩‍👧 ﷽ \u{FFFF}\u{10FFFF}σς Σ ß ﬃ ٠١٢ ".repeat(4_000);
    let mut v = vec![
        // --- malformed, truncated, wrong JSON
        case("truncated JSON", post_json("/predict", br#"{"text": "#), App(400, "invalid_json")),
        case("not JSON", post_json("/predict", b"not json at all"), App(400, "invalid_json")),
        case("empty body", post_json("/predict", b""), App(400, "invalid_json")),
        case("whitespace-only body", post_json("/predict", b" \r\n\t "), App(400, "invalid_json")),
        case("trailing garbage", post_json("/predict", br#"{"text": "hi"} {"text": "again"}"#), App(400, "invalid_json")),
        case("UTF-8 BOM before JSON", post_json("/predict", "\u{FEFF}{\"text\": \"hi\"}".as_bytes()), App(400, "invalid_json")),
        case("number out of range", post_json("/predict", br#"{"text": "hi", "explain": 1e999}"#), App(400, "invalid_json")),
        case("JSON null", post_json("/predict", b"null"), App(422, "invalid_request")),
        case("JSON string", post_json("/predict", br#""just a string""#), App(422, "invalid_request")),
        case("text is a number", post_json("/predict", br#"{"text": 42}"#), App(422, "invalid_request")),
        case("text is null", post_json("/predict", br#"{"text": null}"#), App(422, "invalid_request")),
        case("text is an object", post_json("/predict", br#"{"text": {"a": 1}}"#), App(422, "invalid_request")),
        case("explain is a string", post_json("/predict", br#"{"text": "hi", "explain": "yes"}"#), App(422, "invalid_request")),
        case("missing text", post_json("/predict", br#"{"explain": true}"#), App(422, "invalid_request")),
        case("extra field", post_json("/predict", br#"{"text": "hi", "admin": true}"#), App(422, "invalid_request")),
        case("10 kB unknown field name", post_json("/predict", long_field.as_bytes()), App(422, "invalid_request")),
        case("duplicate field", post_json("/predict", br#"{"text": "a", "text": "b"}"#), App(422, "invalid_request")),
        case("100k nested arrays", post_json("/predict", &b"[".repeat(100_000)), App(422, "invalid_request")),
        case("100k nested arrays in a field", post_json("/predict", &[br#"{"text": "#.as_slice(), &b"[".repeat(100_000)].concat()), App(422, "invalid_request")),
        case("100k nested objects", post_json("/predict/batch", &br#"{"a":"#.repeat(100_000)), App(422, "invalid_request")),
        case("raw NUL byte in a string", post_json("/predict", &nul_text), App(400, "invalid_json")),
        case("invalid UTF-8 in a string", post_json("/predict", &bad_utf8), App(400, "invalid_json")),
        case("lone surrogate escape", post_json("/predict", br#"{"text": "\ud800 hi"}"#), App(400, "invalid_json")),
        // --- texts
        case("empty text", post_json("/predict", &text_body("")), App(422, "empty_text")),
        case("whitespace-only text", post_json("/predict", &text_body(" \t\n\r\u{a0}\u{2003}\u{3000} ")), App(422, "empty_text")),
        case("text over max_text_bytes", post_json("/predict", &long_text), App(422, "text_too_long")),
        case("single 3 MB string (over the body limit)", post_json("/predict", &huge_string), App(413, "payload_too_large")),
        case("3 MB chunked, no length", chunked("/predict", &huge_string, 64 * 1024), App(413, "payload_too_large")),
        case("escaped NUL in text", post_json("/predict", br#"{"text": "a\u0000b"}"#), Served(200)),
        case("zero-width-space-only text", post_json("/predict", &text_body("\u{200B}\u{200B}")), Served(200)),
        case("unicode soup (combining, RTL override, ZWJ, noncharacters)", post_json("/predict", &text_body(&unicode_soup)), Served(200)),
        // --- batches
        case("empty batch", post_json("/predict/batch", br#"{"texts": []}"#), App(422, "empty_batch")),
        case("10,000-text batch", post_json("/predict/batch", &secret_texts(10_000, SECRET)), App(422, "batch_too_large")),
        case("batch with an empty text", post_json("/predict/batch", br#"{"texts": ["fine text", "  "]}"#), App(422, "empty_text")),
        case("batch of numbers", post_json("/predict/batch", br#"{"texts": [1, 2, 3]}"#), App(422, "invalid_request")),
        case("texts is a string", post_json("/predict/batch", br#"{"texts": "one text"}"#), App(422, "invalid_request")),
        case("1,000-text batch (at the limit)", post_json("/predict/batch", &secret_texts(1_000, "meeting at noon, bring the slides")), Served(200)),
        // --- feedback
        case("feedback: id not a UUID", post_json("/feedback", format!(r#"{{"prediction_id": "../../{SECRET}", "label": "ham"}}"#).as_bytes()), App(404, "unknown_prediction")),
        case("feedback: unknown UUID", post_json("/feedback", br#"{"prediction_id": "00000000-0000-4000-8000-000000000000", "label": "ham"}"#), App(404, "unknown_prediction")),
        case("feedback: label missing", post_json("/feedback", br#"{"prediction_id": "x"}"#), App(422, "invalid_request")),
        case("feedback: empty batch", post_json("/feedback/batch", br#"{"items": []}"#), App(422, "empty_batch")),
        case("feedback: 10,000-item batch", post_json("/feedback/batch", &feedback_items(10_000)), App(422, "batch_too_large")),
        // --- methods and content types
        case("GET /predict", request("GET", "/predict", &[], b""), App(405, "method_not_allowed")),
        case("DELETE /predict/batch", request("DELETE", "/predict/batch", &[], b""), App(405, "method_not_allowed")),
        case("PUT /admin/reload", request("PUT", "/admin/reload", &[&tok], b""), App(405, "method_not_allowed")),
        case("POST /health", request("POST", "/health", &[j], b"{}"), App(405, "method_not_allowed")),
        case("made-up method", request("BREW", "/predict", &[j], &text_body("hi")), App(405, "method_not_allowed")),
        case("content-type text/plain", request("POST", "/predict", &["content-type: text/plain"], &text_body("hi")), App(415, "unsupported_media_type")),
        case("no content-type", request("POST", "/predict", &[], &text_body("hi")), App(415, "unsupported_media_type")),
        case("content-type application/xml", request("POST", "/predict/batch", &["content-type: application/xml"], b"<texts/>"), App(415, "unsupported_media_type")),
        case("content-type multipart", request("POST", "/feedback", &["content-type: multipart/form-data; boundary=x"], b"--x--"), App(415, "unsupported_media_type")),
        case("gzip content-encoding (not decoded)", request("POST", "/predict", &[j, "content-encoding: gzip"], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), App(400, "invalid_json")),
        // --- odd routes
        case("%00 in the path", request("GET", "/%00", &[], b""), App(404, "not_found")),
        case("../ traversal", request("GET", "/../../etc/passwd", &[], b""), App(404, "not_found")),
        case("../ into admin", request("POST", "/predict/../admin/reload", &[j, &tok], b""), App(404, "not_found")),
        case("encoded slash", request("POST", "/predict%2Fbatch", &[j], &text_body("hi")), App(404, "not_found")),
        case("raw UTF-8 in the path", request("GET", "/mod\u{e8}le/\u{4e2d}", &[], b""), App(404, "not_found")),
        case("percent-encoded emoji", request("GET", "/%F0%9F%92%A9?q=%FF", &[], b""), App(404, "not_found")),
        case("double slash", request("POST", "//predict", &[j], &text_body("hi")), App(404, "not_found")),
        case("60 kB URL", request("GET", &format!("/{}", "a".repeat(60_000)), &[], b""), App(404, "not_found")),
        case("70 kB URL", request("GET", &format!("/{}", "a".repeat(70_000)), &[], b""), Http(431)),
        case("70 kB header", request("GET", "/health", &[&format!("x-big: {}", "b".repeat(70_000))], b""), Http(431)),
        case("150 headers", request("GET", "/health", &(0..150).map(|i| format!("x-h{i}: v")).collect::<Vec<_>>().iter().map(String::as_str).collect::<Vec<_>>(), b""), Http(431)),
        // --- framing
        case("duplicate Content-Length", request("POST", "/predict", &[j, "content-length: 5", "content-length: 16"], &text_body("hi")), Http(400)),
        case("negative Content-Length", request("POST", "/predict", &[j, "content-length: -1"], b""), Http(400)),
        case("Content-Length over u64", request("POST", "/predict", &[j, "content-length: 99999999999999999999999"], b""), Http(400)),
        case("binary request line", b"\x00\x01\x02\xff GET / HTTP/1.1\r\n\r\n".to_vec(), Http(400)),
        case("control byte in a header value", request("GET", "/health", &["x-a: a\x01b"], b""), Http(400)),
        case("invalid chunk size", [&b"POST /predict HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"[..]].concat(), App(400, "unreadable_body")),
        case("TE and CL both (chunked wins)", request("POST", "/predict", &[j, "transfer-encoding: chunked", "content-length: 40"], b"0\r\n\r\n"), App(400, "invalid_json")),
        case("3 MB announced with Expect: 100-continue", request("POST", "/predict", &[j, "expect: 100-continue", "content-length: 3145728"], b""), App(413, "payload_too_large")),
        // --- admin
        case("admin: no token", admin(&[], b""), App(401, "unauthorized")),
        case("admin: wrong token", admin(&[&auth("wrong-token-wrong")], b""), App(401, "unauthorized")),
        case("admin: last character differs", admin(&[&almost], b""), App(401, "unauthorized")),
        case("admin: token prefix", admin(&[&prefix], b""), App(401, "unauthorized")),
        case("admin: token plus one", admin(&[&longer], b""), App(401, "unauthorized")),
        case("admin: lower-case scheme", admin(&[&lower], b""), App(401, "unauthorized")),
        case("admin: Basic auth", admin(&["authorization: Basic dGVzdDp0ZXN0"], b""), App(401, "unauthorized")),
        case("admin: bare token", admin(&[&format!("authorization: {TOKEN}")], b""), App(401, "unauthorized")),
        case("admin: empty bearer", admin(&["authorization: Bearer "], b""), App(401, "unauthorized")),
        case("admin: token with non-UTF-8 bytes", b"POST /admin/reload HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\nauthorization: Bearer test-admin-tok\xc3\xa9n\xff\r\n\r\n".to_vec(), App(401, "unauthorized")),
        case("admin: path traversal", admin(&[&tok, j], br#"{"path": "../../../../etc/passwd"}"#), App(422, "invalid_model_path")),
        case("admin: absolute path", admin(&[&tok, j], br#"{"path": "/etc/hostname"}"#), App(422, "invalid_model_path")),
        case("admin: NUL in path", admin(&[&tok, j], br#"{"path": "spam-nb.json\u0000.txt"}"#), App(422, "invalid_model_path")),
        case("admin: the directory itself", admin(&[&tok, j], br#"{"path": "."}"#), App(422, "invalid_model_path")),
        case("admin: 100 kB path", admin(&[&tok, j], format!(r#"{{"path": "{}"}}"#, "p/".repeat(50_000)).as_bytes()), App(422, "invalid_model_path")),
        case("admin: path is a number", admin(&[&tok, j], br#"{"path": 7}"#), App(422, "invalid_request")),
        case("admin: 10 kB unknown field", admin(&[&tok, j], long_admin_field.as_bytes()), App(422, "invalid_request")),
        case("admin: malformed body", admin(&[&tok, j], br#"{"path": "#), App(400, "invalid_json")),
        case("admin: 3 MB body", admin(&[&tok, j], &huge_string), App(413, "payload_too_large")),
    ];
    // Request ids a client sends are echoed unless unsafe: these get a fresh one.
    v.push(case(
        "x-request-id with non-ASCII bytes",
        [&b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-request-id: \xff\xfe\x80abc\r\n\r\n"[..]].concat(),
        Served(200),
    ));
    v.push(case(
        "5 kB x-request-id",
        request("GET", "/health", &[&format!("x-request-id: {}", "r".repeat(5_000))], b""),
        Served(200),
    ));
    v
}

/// Strings no error message may contain.
fn forbidden(app: &TestApp) -> Vec<String> {
    vec![
        SECRET.to_owned(),
        app.models_dir.path().display().to_string(),
        root().display().to_string(),
        "/etc/".into(),
        ".rs:".into(),
        "panicked".into(),
        "backtrace".into(),
        "RUST_".into(),
        TOKEN.into(),
    ]
}

fn check(app: &TestApp, c: &Case, r: &Reply) -> Result<(), String> {
    let got = r.status;
    let body = String::from_utf8_lossy(&r.body[..r.body.len().min(300)]).into_owned();
    match c.expect {
        Expect::App(status, code) => {
            if got != Some(status) {
                return Err(format!("status {got:?}, want {status}; body {body}"));
            }
            let ct = r.header("content-type").unwrap_or("");
            if !ct.starts_with("application/json") {
                return Err(format!("content-type {ct:?}; body {body}"));
            }
            let v = r.json().ok_or(format!("not JSON: {body}"))?;
            if v["error"]["code"] != code {
                return Err(format!("code {}, want {code}", v["error"]["code"]));
            }
            let msg = v["error"]["message"].as_str().unwrap_or("");
            if msg.is_empty() || msg.chars().count() > 300 {
                return Err(format!("message empty or over 300 chars: {msg:?}"));
            }
            if let Some(f) = forbidden(app).iter().find(|f| msg.contains(f.as_str())) {
                return Err(format!("message echoes {f:?}: {msg}"));
            }
            if r.header("x-request-id").is_none() {
                return Err("no x-request-id".into());
            }
        }
        Expect::Served(status) => {
            if got != Some(status) {
                return Err(format!("status {got:?}, want {status}; body {body}"));
            }
            r.json().ok_or(format!("not JSON: {body}"))?;
            let id = r.header("x-request-id").unwrap_or("");
            if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("unsafe x-request-id echoed: {id:?}"));
            }
        }
        Expect::Http(status) => {
            if got != Some(status) {
                return Err(format!("status {got:?}, want {status}; body {body}"));
            }
            if !r.body.is_empty() || r.header("connection") != Some("close") {
                return Err(format!(
                    "hyper's answer changed (body {body:?}, connection {:?}): update the docs",
                    r.header("connection")
                ));
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn hostile_requests_get_documented_answers_and_never_a_5xx() {
    let app = spawn_app_with(|s| {
        // Short enough that a stalled case would fail fast, long enough for
        // the 1,000-text batch in a debug build.
        s.server.request_timeout_ms = 5_000;
    })
    .await;
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let r = exchange(app.port, c.bytes.clone(), Duration::from_secs(20)).await;
        if let Err(e) = check(&app, c, &r) {
            failures.push(format!("{}: {e}", c.name));
        }
        let health = app.get("/health").await.status();
        if health != 200 {
            failures.push(format!("{}: /health answered {health} afterwards", c.name));
        }
    }
    let metrics = app.metrics().await;
    let five_xx: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("nbserve_http_requests_total") && l.contains("status=\"5"))
        .collect();
    assert!(five_xx.is_empty(), "5xx answers: {five_xx:?}");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The server still does its job.
    assert_eq!(app.predict("lunch on friday?").await["label"], "ham");
    app.stop().await;
}

/// A reload path that is a symlink pointing out of the models directory is
/// refused, although its name is inside the directory.
#[tokio::test]
async fn reload_refuses_a_symlink_escaping_the_models_directory() {
    let app = spawn_app().await;
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("elsewhere.json");
    std::fs::copy(shipped_model(), &target).unwrap();
    let link = app.models_dir.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dir_link = app.models_dir.path().join("sub");
    std::os::unix::fs::symlink(outside.path(), &dir_link).unwrap();
    for p in ["link.json", "sub/elsewhere.json"] {
        let body = assert_error(
            app.reload(Some(serde_json::json!({ "path": p }))).await,
            422,
            "invalid_model_path",
        )
        .await;
        let text = body.to_string();
        assert!(!text.contains(outside.path().to_str().unwrap()), "{text}");
    }
    // A symlink that stays inside is fine.
    std::os::unix::fs::symlink(
        app.models_dir.path().join("spam-nb.json"),
        app.models_dir.path().join("current.json"),
    )
    .unwrap();
    assert_eq!(
        app.reload(Some(serde_json::json!({"path": "current.json"})))
            .await
            .status(),
        200
    );
    app.stop().await;
}

/// Property test over the router in process (no sockets, so thousands of
/// cases are cheap): whatever bytes arrive as a body on a JSON route — random
/// bytes, random JSON, or a valid body with bytes inserted, deleted or cut
/// off — the answer is 2xx or a 4xx with the app's JSON error, never a 5xx.
/// (cargo-fuzz needs nightly, which cannot be installed here; this is the
/// stable-Rust substitute, alongside scripts/api-fuzz.sh.)
#[test]
fn arbitrary_bodies_never_get_a_5xx() {
    use axum::body::Body;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use tower::ServiceExt;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = rt
        .block_on(nbserve::server::Application::build(test_settings(
            dir.path(),
        )))
        .unwrap();
    let router = nbserve::server::router(app.state());

    let valid = [
        (
            "/predict",
            r#"{"text": "lunch on friday?", "explain": true}"#,
        ),
        (
            "/predict/batch",
            r#"{"texts": ["first message", "second one"]}"#,
        ),
        (
            "/feedback",
            r#"{"prediction_id": "00000000-0000-4000-8000-000000000000", "label": "ham"}"#,
        ),
        (
            "/feedback/batch",
            r#"{"items": [{"prediction_id": "x", "label": "spam"}]}"#,
        ),
        ("/admin/reload", r#"{"path": "spam-nb.json"}"#),
    ];
    let json_value = {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("text".to_owned()),
                        Just("texts".to_owned()),
                        Just("path".to_owned()),
                        Just("items".to_owned()),
                        Just("label".to_owned()),
                        Just("prediction_id".to_owned()),
                        Just("explain".to_owned()),
                        "[a-z]{1,8}",
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    };
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        json_value.prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (
            0..valid.len(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            0..3u8
        )
            .prop_map(move |(i, at, byte, how)| {
                let mut b = valid[i].1.as_bytes().to_vec();
                let at = at.index(b.len());
                match how {
                    0 => b.insert(at, byte),
                    1 => {
                        b.remove(at);
                    }
                    _ => b.truncate(at),
                }
                b
            }),
    ];
    let strategy = (
        0..valid.len(),
        prop_oneof![
            Just(Some("application/json")),
            Just(None),
            Just(Some("text/plain"))
        ],
        any::<bool>(),
        body,
    );
    let mut runner = TestRunner::new(Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(route, content_type, authorized, body)| {
            let mut req = axum::http::Request::post(valid[route].0);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            if authorized {
                req = req.header("authorization", format!("Bearer {TOKEN}"));
            }
            let response = rt
                .block_on(router.clone().oneshot(req.body(Body::from(body)).unwrap()))
                .unwrap();
            let status = response.status();
            prop_assert!(!status.is_server_error(), "{status}");
            if status.is_client_error() {
                let bytes = rt
                    .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
                    .unwrap();
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
                prop_assert!(v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()));
                let msg = v["error"]["message"].as_str().unwrap_or("");
                prop_assert!(!msg.is_empty() && msg.chars().count() <= 300, "{msg}");
            }
            Ok(())
        })
        .unwrap();
}
