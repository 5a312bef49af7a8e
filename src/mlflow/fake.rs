//! A registry for tests in this crate: version 3 of `spam`, whose model
//! file is the bytes given, on a local port; the alias moves it is asked
//! for are recorded.

use std::sync::{Arc, Mutex};

use axum::routing::{get, post};

use super::MlflowClient;

/// The running registry.
pub(crate) struct FakeRegistry {
    /// A client for it.
    pub client: MlflowClient,
    /// The bodies of the alias moves asked for, in order.
    pub moved: Arc<Mutex<Vec<String>>>,
}

/// Serves the registry on the current runtime.
pub(crate) async fn serve(artifact: Vec<u8>) -> FakeRegistry {
    let moved = Arc::new(Mutex::new(Vec::new()));
    let record = moved.clone();
    let version = serde_json::json!({"model_version": {
        "name": "spam", "version": "3", "run_id": "abc",
        "source": "mlflow-artifacts:/1/abc/artifacts/model"}});
    let app = axum::Router::new()
        .route(
            "/api/2.0/mlflow/model-versions/get",
            get(move || async move { axum::Json(version) }),
        )
        .route(
            "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.json",
            get(move || async move { artifact }),
        )
        .route(
            "/api/2.0/mlflow/registered-models/alias",
            post(move |body: String| async move {
                record.lock().unwrap().push(body);
                axum::Json(serde_json::json!({}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeRegistry {
        client: MlflowClient::new(&url).unwrap(),
        moved,
    }
}
