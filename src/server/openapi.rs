//! The OpenAPI document: generated from the handlers and types, plus what
//! the layers around every route add (their error answers) and the bearer
//! scheme. Served at `/openapi.json`.

use axum::response::IntoResponse;
use axum::Json;
use utoipa::OpenApi;

use super::routes::{
    admin, admitted_routes, challenger, examples, feedback, health, learn, metrics, model, models,
    predict, promote, v2,
};

/// An answer described by `description` whose JSON body is the registered
/// schema `schema`, for the answer lists written by hand.
pub(crate) fn json_answer(description: &str, schema: &str) -> utoipa::openapi::response::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build(),
        )
        .build()
}

/// The OpenAPI description, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(title = "nbserve", description = "Bernoulli naive Bayes text classification server"),
    paths(
        predict::predict, predict::predict_batch, feedback::feedback, feedback::feedback_batch,
        examples::examples, learn::learn, learn::forget, challenger::challenger,
        challenger::challenger_artifact, challenger::challenger_named, challenger::challenger_artifact_named,
        promote::promote,
        health::health, health::ready, model::model, model::quality, metrics::metrics, admin::reload,
        models::list, model::model_named, model::quality_named, predict::predict_named,
        predict::predict_batch_named,
        v2::handlers::server_metadata, v2::handlers::live, v2::handlers::ready,
        v2::handlers::model_metadata, v2::handlers::version_metadata, v2::handlers::model_ready,
        v2::handlers::version_ready, v2::handlers::infer, v2::handlers::version_infer,
        v2::repository::index, v2::repository::load, v2::repository::unload
    ),
    // Named by hand in v2::handlers::InferAnswers, so not collected from the paths.
    components(schemas(v2::V2InferResponse, v2::V2OutputTensor, v2::V2ErrorBody, predict::PredictResponse, predict::BatchResponse, challenger::ChallengerResponse, crate::server::error::ErrorBody)),
    tags((name = "v2", description = "Open Inference Protocol (KServe V2) REST, with the binary tensor data extension")),
    modifiers(&BearerAuth, &CommonErrors)
)]
pub struct ApiDoc;

/// Documents the error answers every route can give because of the layers
/// around it, not its handler: 408 (request timeout) everywhere; 400, 413
/// and 415 wherever a JSON body is read; 503 `overloaded` on the
/// admission-controlled routes. (Found missing by `scripts/api-fuzz.sh`.)
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error = |path: &str, description: &str| {
            // The Open Inference Protocol routes answer in its own error shape.
            let schema = if v2::is_v2_path(path) {
                "V2ErrorBody"
            } else {
                "ErrorBody"
            };
            json_answer(description, schema)
        };
        let shed: Vec<&str> = admitted_routes().iter().map(|(path, _)| *path).collect();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [item.get.as_mut(), item.post.as_mut()];
            for op in ops.into_iter().flatten() {
                let mut add = |code: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| error(path, description).into());
                };
                add(
                    "408",
                    "The request took longer than server.request_timeout_ms",
                );
                // Their optional bodies are read by hand: any content type.
                let any_type = path == "/admin/reload" || path.starts_with("/v2/repository/");
                if op.request_body.is_some() || any_type {
                    add("400", "Malformed JSON or an unreadable body");
                    add("413", "Body over server.body_limit_bytes");
                    if !any_type {
                        add("415", "Body not sent as application/json");
                    }
                }
                if shed.contains(&path.as_str()) {
                    add("503", "Overloaded: over server.max_concurrency requests in progress (Retry-After)");
                }
            }
        }
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`.
pub(crate) async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
