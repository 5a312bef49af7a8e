//! The router: one function used by `serve` and by the tests, and the
//! route lists (the OpenAPI document is in [`super::openapi`], the layers
//! around the routes in [`super::middleware`]).

pub mod admin;
pub mod challenger;
pub mod docs;
pub mod examples;
pub mod feedback;
pub mod health;
pub mod learn;
pub mod metrics;
pub mod model;
pub mod models;
pub mod predict;
pub mod promote;
pub mod v2;

use axum::extract::Request;
use axum::http::Method;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use super::edge::Direct;
use super::error::ApiError;
use super::middleware::{admitted, direct, layered};
use super::openapi::openapi;
pub use super::openapi::ApiDoc;
use super::state::AppState;

async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// The API routes, behind admission control
/// ([`Admission`](super::middleware::Admission)): the one list
/// the router and the OpenAPI document's 503 answers are both made from.
pub(crate) fn admitted_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let native = [
        ("/predict", post(predict::predict)),
        ("/predict/batch", post(predict::predict_batch)),
        ("/feedback", post(feedback::feedback)),
        ("/feedback/batch", post(feedback::feedback_batch)),
        ("/examples", post(examples::examples)),
        ("/model", get(model::model)),
        ("/model/quality", get(model::quality)),
        ("/models", get(models::list)),
        ("/models/{name}", get(model::model_named)),
        ("/models/{name}/quality", get(model::quality_named)),
        ("/models/{name}/predict", post(predict::predict_named)),
        (
            "/models/{name}/predict/batch",
            post(predict::predict_batch_named),
        ),
        ("/admin/reload", post(admin::reload)),
        ("/learn", post(learn::learn)),
        ("/forget", post(learn::forget)),
        ("/challenger", get(challenger::challenger)),
        ("/challenger/artifact", get(challenger::challenger_artifact)),
        (
            "/models/{name}/challenger",
            get(challenger::challenger_named),
        ),
        (
            "/models/{name}/challenger/artifact",
            get(challenger::challenger_artifact_named),
        ),
        ("/admin/challenger/promote", post(promote::promote)),
    ];
    native.into_iter().chain(v2::admitted_routes()).collect()
}

/// The route the server answers without the router, being the hot path:
/// `POST /predict`. Everything else goes through [`router`], which has the
/// same route; the answers are the same (tests/api/direct.rs).
pub(crate) const DIRECT_ROUTE: &str = "/predict";

/// Whether `req` is for [`direct_route`] (the router would match it to the
/// `POST /predict` route: the path exactly, whatever the query).
pub(crate) fn is_direct(req: &Request) -> bool {
    req.method() == Method::POST && req.uri().path() == DIRECT_ROUTE
}

/// `POST /predict` as the router serves it — the same handler inside the
/// same layers and admission control — minus the routing.
pub(crate) fn direct_route(state: &AppState) -> impl Direct {
    direct(predict::predict, DIRECT_ROUTE, state)
}

/// Builds the application router around `state`.
pub fn router(state: AppState) -> Router {
    let api = admitted_routes()
        .into_iter()
        .fold(Router::new(), |api, (path, route)| api.route(path, route));
    let app = Router::new()
        .merge(admitted(api, &state))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi));
    let docs = if state.settings.server.docs_ui {
        docs::routes()
    } else {
        Vec::new()
    };
    let app = v2::health_routes()
        .into_iter()
        .chain(docs)
        .fold(app, |app, (path, route)| app.route(path, route));
    layered(app.fallback(not_found), &state).with_state(state)
}
