//! The bodies of nbserve's fuzz targets, one function per target.
//!
//! Shared by the `cargo fuzz` targets in `fuzz/fuzz_targets/` and by the
//! main crate's `tests/fuzz_corpus.rs`, which replays the committed seed
//! corpora (and every crash input ever fixed) through the same functions in
//! the ordinary `cargo test` run. Each function panics exactly when the
//! property it checks is broken; anything else it returns quietly.
//!
//! - [`artifact`]: artifact bytes never panic the loader, and a model that
//!   loads and passes the gate scores text to finite probabilities.
//! - [`requests`]: any request to the real router (routes, content types,
//!   headers, bodies) is answered with a status below 500, and every error is
//!   the documented JSON shape.
//! - [`tokenizer`]: the tokenizer's tokens equal those of an independent
//!   scanner for scikit-learn's `(?u)\b\w\w+\b`, built on the `regex` crate.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use nbserve::artifact::Artifact;
use nbserve::gate::ServingRule;
use nbserve::monitoring::FeedbackStore;
use nbserve::server::loader::{load_gated_bytes, ServingModel};
use nbserve::server::metrics::Metrics;
use nbserve::server::{router, AppState};
use nbserve::settings::{GateSettings, Settings};
use serde_json::Value;
use tower::ServiceExt;

/// A small real artifact (40 terms, trained on `tests/data/sample.csv`),
/// also a seed of the artifact corpus. Its F1 macro is 0.84.
pub const SEED_MODEL: &[u8] = include_bytes!("../corpus/artifact/bernoulli-40-terms.json");

/// Texts every model that loads must score to finite probabilities.
const PROBE_TEXTS: [&str; 3] = ["", "win money now", "Re: the meeting agenda 2002 http www"];

/// A gate every valid artifact passes: the loader's checks, not the F1 bar
/// nor the size limits.
fn open_gate() -> ServingRule {
    ServingRule {
        gate: GateSettings {
            min_f1_macro: 0.0,
            holdout_path: None,
            max_memory_bytes: u64::MAX,
        },
        max_bytes: u64::MAX,
    }
}

/// Artifact bytes through the gated load path, as written and re-sealed.
///
/// Random bytes rarely get past the checksum, so bytes that parse as an
/// artifact are also re-sealed (checksum recomputed) and loaded again: that
/// drives the validation behind the checksum (alpha, finite tables, class
/// and length caps, checked sums) with whatever values the fuzzer wrote.
///
/// Returns whether the bytes as written loaded and passed the gate.
pub fn artifact(data: &[u8]) -> bool {
    let plain = Artifact::load_bytes(data).ok().map(|m| m.classifier);
    let plain_loaded = plain.is_some();
    check_loaded(plain);
    let served = load_gated_bytes(data.to_vec(), PathBuf::from("<fuzz>"), &open_gate()).ok();
    // The gated path only adds checks to Artifact::load_bytes.
    assert!(
        plain_loaded || served.is_none(),
        "the gated path served bytes Artifact::load_bytes refuses"
    );
    check_served(served);
    if let Ok(mut parsed) = serde_json::from_slice::<Artifact>(data) {
        parsed.seal();
        let resealed = parsed.to_bytes();
        check_served(load_gated_bytes(resealed, PathBuf::from("<fuzz>"), &open_gate()).ok());
    }
    plain_loaded
}

fn check_served(model: Option<ServingModel>) {
    check_loaded(model.map(|m| m.loaded.classifier));
}

fn check_loaded(classifier: Option<nbserve::Classifier>) {
    let Some(classifier) = classifier else {
        return;
    };
    for text in PROBE_TEXTS {
        let p = classifier.predict(text);
        assert!(
            p.log_probabilities.iter().all(|l| l.is_finite()),
            "a loaded model scored {text:?} to {:?}",
            p.log_probabilities
        );
        let total: f64 = p.log_probabilities.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "probabilities sum to {total}");
        assert!(p.label < p.log_probabilities.len());
    }
}

/// The router around [`SEED_MODEL`], on a current-thread runtime: one per
/// process (built once, then shared by every input).
struct App {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let model = load_gated_bytes(
            SEED_MODEL.to_vec(),
            PathBuf::from("seed.json"),
            &open_gate(),
        )
        .expect("the seed model loads");
        let mut settings = Settings::default();
        settings.feedback.capacity = 1000;
        settings.server.max_batch_size = 64;
        let f = &settings.feedback;
        let feedback = FeedbackStore::new(
            f.capacity,
            Duration::from_secs(f.max_age_secs),
            f.window,
            None,
        )
        .expect("an in-memory feedback store");
        let state = AppState::with_model(settings, model, Metrics::new("fuzz"), feedback)
            .expect("a one-model repository");
        App {
            runtime,
            router: router(state),
        }
    })
}

/// Where a fuzz input's first byte sends it (the seed model is `fuzz-seed`).
const ROUTES: [(&str, &str); 12] = [
    ("POST", "/predict"),
    ("POST", "/predict/batch"),
    ("POST", "/feedback"),
    ("POST", "/feedback/batch"),
    ("POST", "/v2/models/fuzz-seed/infer"),
    ("POST", "/v2/models/fuzz-seed/versions/1/infer"),
    ("POST", "/v2/models/other/infer"),
    ("POST", "/admin/reload"),
    ("GET", "/model"),
    ("GET", "/model/quality"),
    ("GET", "/v2/models/fuzz-seed"),
    ("PUT", "/predict"),
];

const CONTENT_TYPES: [Option<&str>; 6] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("application/vnd.custom+json"),
    Some("application/octet-stream"),
    Some("text/plain"),
    None,
];

/// In a body, `$ID` stands for the id of a prediction made just before (so
/// feedback inputs can name a real prediction).
const ID_PLACEHOLDER: &[u8] = b"$ID";

/// One request to the real router, built from `data`:
///
/// ```text
/// byte 0   route: ROUTES[b % 12]; 255 = the URI is the bytes up to the first '\n'
/// byte 1   Content-Type: CONTENT_TYPES[b % 6]
/// byte 2   flags: 1 = x-request-id, 2 = Inference-Header-Content-Length,
///          4 = Authorization (a wrong bearer token)
/// then     for flag 1: a length byte and that many bytes of request id;
///          for flag 2: a length byte and that many bytes of header value
/// rest     the body
/// ```
///
/// The answer must be below 500 and, for an error, `{"error": {"code",
/// "message"}}` (or `{"error": "..."}` on `/v2` paths, the protocol's shape).
/// Returns the status, or `None` when `data` makes no request.
pub fn requests(data: &[u8]) -> Option<StatusCode> {
    let (request, is_v2) = build_request(data)?;
    let app = app();
    app.runtime.block_on(async {
        let request = with_prediction_id(&app.router, request).await;
        let response = app
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let json_length = response
            .headers()
            .get("inference-header-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("an in-memory body");
        assert!(
            status.as_u16() < 500,
            "answered {status} with {}",
            String::from_utf8_lossy(&body)
        );
        let json = match json_length {
            Some(n) if n <= body.len() => &body[..n],
            _ => &body[..],
        };
        if status.is_client_error() {
            check_error_shape(status, json, is_v2);
        } else if status.is_success() {
            serde_json::from_slice::<Value>(json).unwrap_or_else(|e| {
                panic!(
                    "200 with a body that is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(json)
                )
            });
        }
        Some(status)
    })
}

fn check_error_shape(status: StatusCode, body: &[u8], is_v2: bool) {
    let value: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{status} with a body that is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    });
    let error = &value["error"];
    let ok = if is_v2 {
        error.is_string()
    } else {
        error["code"].is_string() && error["message"].is_string()
    };
    assert!(ok, "{status} with an error of the wrong shape: {value}");
}

fn build_request(data: &[u8]) -> Option<(Request<Body>, bool)> {
    let (&[route, content_type, flags], mut rest) = data.split_first_chunk::<3>()?;
    let (method, uri) = if route == 255 {
        let end = rest.iter().position(|&b| b == b'\n')?;
        let uri = std::str::from_utf8(&rest[..end]).ok()?.to_owned();
        rest = &rest[end + 1..];
        (Method::POST, uri)
    } else {
        let (m, p) = ROUTES[usize::from(route) % ROUTES.len()];
        (Method::from_bytes(m.as_bytes()).ok()?, p.to_owned())
    };
    let is_v2 = uri == "/v2" || uri.starts_with("/v2/");
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(ct) = CONTENT_TYPES[usize::from(content_type) % CONTENT_TYPES.len()] {
        builder = builder.header("content-type", ct);
    }
    for (flag, name) in [
        (1u8, "x-request-id"),
        (2, "inference-header-content-length"),
    ] {
        if flags & flag != 0 {
            let (&len, tail) = rest.split_first()?;
            let len = usize::from(len).min(tail.len());
            // A value the http crate refuses could not arrive over the wire.
            if let Ok(v) = HeaderValue::from_bytes(&tail[..len]) {
                builder = builder.header(name, v);
            }
            rest = &tail[len..];
        }
    }
    if flags & 4 != 0 {
        builder = builder.header("authorization", "Bearer not-the-admin-token");
    }
    builder
        .body(Body::from(rest.to_vec()))
        .ok()
        .map(|r| (r, is_v2))
}

/// Replaces [`ID_PLACEHOLDER`] in the body with the id of a fresh prediction.
async fn with_prediction_id(router: &axum::Router, request: Request<Body>) -> Request<Body> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("an in-memory body");
    let Some(at) = body
        .windows(ID_PLACEHOLDER.len())
        .position(|w| w == ID_PLACEHOLDER)
    else {
        return Request::from_parts(parts, Body::from(body));
    };
    let predict = Request::post("/predict")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"text": "lunch on friday?"}"#))
        .expect("a valid request");
    let answer = router.clone().oneshot(predict).await.expect("infallible");
    let answer = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .expect("an in-memory body");
    let id = serde_json::from_slice::<Value>(&answer)
        .ok()
        .and_then(|v| v["prediction_id"].as_str().map(str::to_owned))
        .expect("/predict answers with a prediction_id");
    let mut replaced = body[..at].to_vec();
    replaced.extend_from_slice(id.as_bytes());
    replaced.extend_from_slice(&body[at + ID_PLACEHOLDER.len()..]);
    Request::from_parts(parts, Body::from(replaced))
}

/// The tokenizer against an independent scanner for `(?u)\b\w\w+\b` on
/// valid UTF-8 input (the server only tokenizes `str`).
///
/// Python's `\w` for `str` patterns is `[\p{L}\p{N}_]`; after `str.lower`
/// its tokens are the runs of two or more of those. The `regex` crate's
/// tables are newer than CPython 3.11's Unicode 14.0, so characters assigned
/// after 14.0 (outside `\p{Age=14.0}`, which is cumulative) are dropped
/// from the input first, as the tokenizer's own proptest oracle does; the
/// tokenizer's handling of those is checked code point by code point
/// against a dump from Python by its unit tests.
///
/// Returns the number of tokens (`None` for input that is not UTF-8).
pub fn tokenizer(data: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(data).ok()?;
    let scanner = reference_scanner();
    let known = scanner.newer.replace_all(text, "");
    let lowered = known.to_lowercase();
    let expected: Vec<&str> = scanner
        .words
        .find_iter(&lowered)
        .map(|m| m.as_str())
        .collect();
    let actual = nbserve::classifier::tokenizer::tokenize(&known);
    assert_eq!(actual, expected, "tokens of {known:?}");
    Some(actual.len())
}

struct Reference {
    newer: regex::Regex,
    words: regex::Regex,
}

fn reference_scanner() -> &'static Reference {
    static SCANNER: OnceLock<Reference> = OnceLock::new();
    SCANNER.get_or_init(|| Reference {
        newer: regex::Regex::new(r"\P{Age=14.0}").expect("a valid pattern"),
        words: regex::Regex::new(r"[\p{L}\p{N}_]{2,}").expect("a valid pattern"),
    })
}
