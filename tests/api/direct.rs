//! `POST /predict` is answered without the router (the server's hot path);
//! every other request goes through `nbserve::server::router`, which has the
//! same route. Both must answer alike: the same request, over HTTP and
//! through the router, gets the same status, headers and body.

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use crate::helpers::spawn_app_with;

/// What must match between the two answers: status, the headers a client
/// reads, and the body with the per-request prediction id masked.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Value,
}

fn answer(status: StatusCode, headers: &HeaderMap, body: &[u8], sent_id: Option<&str>) -> Answer {
    let mut kept = Vec::new();
    for name in [header::CONTENT_TYPE, header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = headers.get(&name) {
            kept.push((name.to_string(), v.to_str().unwrap().to_owned()));
        }
    }
    // The request id: the client's when acceptable, else a fresh UUID.
    let id = headers
        .get("x-request-id")
        .expect("x-request-id echoed")
        .to_str()
        .unwrap();
    let id = match sent_id {
        Some(sent) if sent == id => "the client's".to_owned(),
        _ => {
            assert!(uuid::Uuid::parse_str(id).is_ok(), "fresh id {id:?}");
            "fresh".to_owned()
        }
    };
    kept.push(("x-request-id".into(), id));
    let mut body: Value = serde_json::from_slice(body).expect("a JSON body");
    if let Some(p) = body.get_mut("prediction_id") {
        assert!(uuid::Uuid::parse_str(p.as_str().unwrap()).is_ok());
        *p = "masked".into();
    }
    Answer {
        status,
        headers: kept,
        body,
    }
}

/// Path, content type, client request id, body.
type Case = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Vec<u8>,
);

#[tokio::test]
async fn predict_answers_alike_with_and_without_the_router() {
    let app = spawn_app_with(|s| s.server.body_limit_bytes = 4096).await;
    let router = nbserve::server::router(app.state.clone());
    let json = Some("application/json");
    let cases: Vec<Case> = vec![
        (
            "/predict",
            json,
            None,
            br#"{"text":"win money now"}"#.to_vec(),
        ),
        (
            "/predict?explain=1",
            Some("Application/JSON; charset=utf-8"),
            Some("client-id-1"),
            br#"{"text":"meeting at noon","explain":true}"#.to_vec(),
        ),
        (
            "/predict",
            json,
            Some("bad id with spaces"),
            b"{\"text\":".to_vec(),
        ),
        ("/predict", None, None, br#"{"text":"x"}"#.to_vec()),
        (
            "/predict",
            Some("text/plain"),
            None,
            br#"{"text":"x"}"#.to_vec(),
        ),
        ("/predict", json, None, br#"{"text":5}"#.to_vec()),
        ("/predict", json, None, br#"{"texts":["a"]}"#.to_vec()),
        ("/predict", json, None, br#"[1,2]"#.to_vec()),
        ("/predict", json, None, br#"{"text":""}"#.to_vec()),
        ("/predict", json, None, vec![b'a'; 8192]),
    ];
    for (path, content_type, id, body) in cases {
        let mut http = app.client.post(app.url(path)).body(body.clone());
        let mut req = Request::post(path);
        if let Some(ct) = content_type {
            http = http.header("content-type", ct);
            req = req.header("content-type", ct);
        }
        if let Some(id) = id {
            http = http.header("x-request-id", id);
            req = req.header("x-request-id", id);
        }
        req = req.header("content-length", body.len());
        let over_http = http.send().await.unwrap();
        let over_http = answer(
            over_http.status(),
            &over_http.headers().clone(),
            &over_http.bytes().await.unwrap(),
            id,
        );
        let routed = router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let (parts, routed_body) = routed.into_parts();
        let routed_body = axum::body::to_bytes(routed_body, usize::MAX).await.unwrap();
        let routed = answer(parts.status, &parts.headers, &routed_body, id);
        assert_eq!(over_http, routed, "{path} {content_type:?}");
    }
}
