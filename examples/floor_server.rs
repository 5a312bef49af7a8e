//! The load-test floor: the least an axum server can do per `/predict`
//! request (read the body, answer a fixed JSON), on the same runtime and
//! HTTP stack as nbserve. `bench/load.sh` compares nbserve against it.
//!
//!   cargo run --release --example floor_server -- [PORT]   # default 28181, 127.0.0.1 only

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

const ANSWER: &str = r#"{"prediction_id":"00000000-0000-4000-8000-000000000000","label":"ham","probabilities":{"ham":0.99,"spam":0.01},"model_version":"floor"}"#;

async fn predict(body: Bytes) -> impl IntoResponse {
    // Reading the body keeps the comparison fair: nbserve must read it too.
    let _ = body.len();
    ([(header::CONTENT_TYPE, "application/json")], ANSWER)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(28181);
    let app = Router::new()
        .route("/predict", post(predict))
        .route("/ready", get(|| async { "ready" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
