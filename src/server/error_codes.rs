//! Every error code the server answers with: its status and what it means.
//!
//! The one list of them. [`ApiError::new`](super::error::ApiError::new)
//! checks (in debug builds, so in every test) that the code it is given is
//! listed here with that status, and `nbserve reference errors` prints this
//! table as the book's error reference: a code cannot be added without
//! being documented, and a documented code that is no longer used fails
//! the reference test.

/// Where an error code is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The native routes: `{"error": {"code", "message"}}`.
    Native,
    /// The Open Inference Protocol routes (`/v2/...`): `{"error": message}`;
    /// the code appears in the server's log only.
    V2,
    /// Both.
    Both,
}

/// One error code.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode {
    /// HTTP status; 0 for the fallback that takes any status.
    pub status: u16,
    /// The stable snake_case code.
    pub code: &'static str,
    /// Where it is answered.
    pub api: Api,
    /// When, in words.
    pub meaning: &'static str,
}

const fn code(status: u16, code: &'static str, api: Api, meaning: &'static str) -> ErrorCode {
    ErrorCode {
        status,
        code,
        api,
        meaning,
    }
}

use Api::{Both, Native, V2};

/// Every code, by status.
pub const ERROR_CODES: &[ErrorCode] = &[
    code(400, "invalid_json", Both, "malformed or truncated JSON"),
    code(400, "unreadable_body", Both, "the body could not be read: broken chunked encoding, or the client went away mid-body"),
    code(400, "bad_request", Both, "a request refused as malformed by the HTTP layer before a route saw it"),
    code(400, "invalid_parameter", V2, "a `parameters` entry of the wrong type (`binary_data` not a boolean, `binary_data_size` not a byte count)"),
    code(400, "invalid_header", V2, "`Inference-Header-Content-Length` not a byte count, or longer than the body"),
    code(400, "invalid_inputs", V2, "not exactly one input named `text`"),
    code(400, "wrong_datatype", V2, "the input's datatype is not `BYTES`"),
    code(400, "invalid_shape", V2, "the input's shape is not `[N]`, or does not match its data"),
    code(400, "invalid_data", V2, "the input's `data` is not a list of strings"),
    code(400, "invalid_binary_data", V2, "binary tensor data cut short, or not the size `binary_data_size` declares"),
    code(400, "unknown_output", V2, "an output other than `label` and `probabilities` was asked for"),
    code(400, "duplicate_output", V2, "an output was asked for more than once"),
    code(400, "unsupported_parameters", V2, "a repository load asked for a model configuration or files: models come from the repository"),
    code(401, "unauthorized", Native, "missing or wrong bearer token: `admin.token` on `/admin/*`, `feedback.token` on `/feedback`, `/feedback/batch`, `/examples`, `/learn`, `/forget` and `/challenger/artifact`; judged from the headers, before the body is read"),
    code(403, "admin_disabled", Native, "an admin route while no `admin.token` is configured"),
    code(404, "not_found", Both, "no such route"),
    code(404, "unknown_prediction", Native, "feedback for a prediction id that is unknown or expired (`feedback.max_age_secs`, `feedback.capacity`)"),
    code(404, "examples_disabled", Native, "`POST /examples` while `feedback.accept_examples` is off"),
    code(404, "learning_disabled", Native, "`POST /learn`, `POST /forget` or `/challenger*` while `learning.enabled` is off"),
    code(404, "no_challenger", Native, "`GET /challenger` (or `/models/{name}/challenger`), its artifact or its promotion before anything was learned on that model"),
    code(404, "model_not_found", Both, "no model of that name; the message names (up to ten of) the known ones"),
    code(404, "unknown_version", V2, "the served model has another version"),
    code(405, "method_not_allowed", Both, "wrong method for the route (the answer has an `Allow` header)"),
    code(408, "request_timeout", Both, "the request took longer than `server.request_timeout_ms`"),
    code(409, "duplicate_feedback", Native, "a second feedback for one prediction"),
    code(409, "no_statistics", Native, "`POST /learn` or `/forget` on a served model without statistics (schema < 3: train it with `--statistics`)"),
    code(409, "not_learned", Native, "`POST /forget` of an example that was never learned (or is already forgotten); nothing changed"),
    code(409, "counts_overflow", Native, "a learn whose counts would pass 2^64"),
    code(409, "holdout_required", Native, "the challenger's artifact or promotion while `gate.holdout_path` is not set"),
    code(409, "not_a_file", Native, "a challenger promotion while the model's source pins a registry version (`models:/NAME/VERSION`)"),
    code(409, "model_settings", Native, "a challenger promotion for a model the settings no longer describe (say, its file left `model.repository`): its file, store and gate are unknown"),
    code(409, "regression", Native, "a challenger promotion refused: its holdout F1 macro is below the served model's minus `max_regression`"),
    code(409, "store_busy", Native, "a challenger promotion while a retrain or rollback holds the models directory's lock"),
    code(409, "model_required", V2, "unloading the default model, or a model marked `required`"),
    code(409, "too_many_models", V2, "loading a new artifact of `model.repository` while `models.max_count` models are known"),
    code(413, "payload_too_large", Both, "body over `server.body_limit_bytes` (a larger `Content-Length` is refused before the body is read)"),
    code(415, "unsupported_media_type", Native, "body not sent as `application/json`"),
    code(422, "invalid_request", Native, "missing, unknown or wrong-typed fields"),
    code(422, "empty_text", Both, "a text that is empty or only whitespace"),
    code(422, "text_too_long", Both, "a text over `server.max_text_bytes`"),
    code(422, "empty_batch", Native, "a batch of no texts, items or examples"),
    code(422, "batch_too_large", Both, "more texts, items or examples than `server.max_batch_size`"),
    code(422, "invalid_label", Native, "a feedback, example or learned label that is not a class of the model (learning: unless `learning.allow_new_classes`), or that no served model may have"),
    code(422, "unfittable", Native, "a learn or forget after which the challenger cannot be fitted (pruning keeps no term, fewer than two classes)"),
    code(422, "invalid_model", Native, "reload refused: the artifact is invalid (the old model keeps serving)"),
    code(422, "gate_rejected", Native, "reload or challenger promotion refused: the model is below `gate.min_f1_macro` or over `gate.max_memory_bytes` (the old model keeps serving)"),
    code(422, "invalid_model_path", Native, "reload refused: the path is not a file inside `model.dir`"),
    code(422, "memory_budget_exceeded", Both, "load or reload refused: the model would take the loaded models past `models.max_total_bytes` (the sizes are named; a served version keeps serving)"),
    code(422, "holdout_unavailable", Native, "reload, challenger artifact or promotion refused: `gate.holdout_path` could not be read"),
    code(431, "headers_too_large", Both, "request headers too large"),
    code(500, "internal_error", Both, "a bug: the server failed to answer (reported, never expected)"),
    code(500, "promotion_failed", Native, "a challenger promotion that passed its gates could not be written to `model.path` (the old model keeps serving; see the log)"),
    code(503, "overloaded", Both, "over `server.max_concurrency` requests in progress, or their bodies over `server.max_inflight_body_bytes` (`Retry-After: 1`)"),
    code(503, "not_ready", Both, "readiness during shutdown, or while the default model (or one marked `required`) is not served"),
    code(503, "model_unavailable", Both, "the model named is known but not being served (unloaded, or its load was refused); `GET /models` says why"),
    code(503, "log_unavailable", Native, "`POST /examples` while the feedback log's queue is full or its sync failed (`Retry-After: 1`), or `POST /learn` / `/forget` when `learning.log_path` cannot be written: refused, nothing changed"),
    code(503, "registry_unavailable", Native, "`POST /admin/reload` of a `models:/` source while the MLflow registry does not answer, or a challenger promotion that registers in MLflow while the tracking server fails (nothing promoted)"),
    code(503, "unavailable", Both, "the service is unavailable"),
    code(507, "challenger_full", Native, "a learn past `learning.max_bytes`; nothing changed"),
    code(507, "challenger_over_budget", Native, "a learn that would leave the challenger more bytes than `models.max_total_bytes` leaves beside the served models; nothing changed"),
    code(0, "http_error", Both, "any other error status from the HTTP layer"),
];

/// Whether `code` is listed with `status` (or as the any-status fallback).
pub fn is_documented(status: u16, code: &str) -> bool {
    ERROR_CODES
        .iter()
        .any(|c| c.code == code && (c.status == status || c.status == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_per_status_and_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for c in ERROR_CODES {
            assert!(seen.insert((c.status, c.code)), "{} twice", c.code);
            assert!(
                c.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                c.code
            );
        }
        assert!(is_documented(422, "empty_text"));
        assert!(!is_documented(400, "empty_text"));
        assert!(is_documented(418, "http_error"));
    }
}
