//! The load-test floor: the least an axum server can do per `/predict`
//! request — parse the `{"text": ...}` body with serde, answer a constant
//! JSON of the same shape as nbserve's — on the same runtime and HTTP crates
//! as nbserve. `bench/load.sh` compares nbserve's throughput against it and
//! `bench/instructions.sh` its instructions per request.
//!
//!   cargo run --release --example floor_server -- [PORT]   # default 28181, 127.0.0.1 only

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

const ANSWER: &str = r#"{"prediction_id":"00000000-0000-4000-8000-000000000000","label":"ham","probabilities":{"ham":0.99,"spam":0.01},"model_version":"floor"}"#;

/// The request nbserve's `/predict` takes, decoded as nbserve decodes it
/// (the text unescaped into an owned string), so the comparison charges
/// both sides for reading the JSON.
#[derive(Deserialize)]
struct PredictRequest {
    text: String,
}

async fn predict(Json(req): Json<PredictRequest>) -> impl IntoResponse {
    std::hint::black_box(req.text);
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
