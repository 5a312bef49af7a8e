//! `GET /docs`: an interactive page for the API (Swagger UI) rendering
//! `/openapi.json`.
//!
//! Its assets are compiled in from `assets/swagger-ui/` (vendored from the npm
//! registry, pinned and checksummed by `scripts/vendor-swagger-ui.sh`), so the
//! page works air-gapped and never loads anything from a CDN. Every URL in it
//! is relative, so it keeps working behind a path prefix. `server.docs_ui =
//! false` leaves the routes out.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};

use crate::server::state::AppState;

const BUNDLE: &[u8] = include_bytes!("../../../assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &[u8] = include_bytes!("../../../assets/swagger-ui/swagger-ui.css");

/// The page: the assets, then a start-up script served as a file of its own,
/// so the Content-Security-Policy can forbid inline scripts. The empty data:
/// icon spares the browser a `/favicon.ico` request (a 404 in its console).
const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nbserve API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"##;

const INIT: &str = r##"window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayRequestDuration: true,
  });
});
"##;

/// Scripts and styles only from this server; Swagger UI sets inline styles.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The assets change only with the binary.
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// The page and its assets, for the router.
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/docs", get(page)),
        (
            "/docs/swagger-ui-bundle.js",
            get(|| async { asset("text/javascript; charset=utf-8", BUNDLE) }),
        ),
        (
            "/docs/swagger-ui.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        ),
        (
            "/docs/init.js",
            get(|| async { asset("text/javascript; charset=utf-8", INIT.as_bytes()) }),
        ),
    ]
}
