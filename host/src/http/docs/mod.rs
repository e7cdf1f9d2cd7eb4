//! The AsyncAPI document and the human documentation page of the WebSocket
//! API, with a live console.
//!
//! The page is static: its script fetches `asyncapi.json` (the document
//! [`crate::asyncapi`] builds for the routes loaded now) and renders it, so
//! a reload shows the current route set. Every asset is compiled into the
//! binary; the page loads nothing from anywhere else, which the
//! Content-Security-Policy header enforces.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::Value;

use crate::{asyncapi, hub::Host};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// Only this host's own assets, and WebSockets back to it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'";

/// `/api/v1/ws/asyncapi.json`, the page at `/api/v1/ws/asyncapi` and its assets.
pub fn router() -> Router<Arc<Host>> {
    Router::new()
        .route("/api/v1/ws/asyncapi.json", get(document))
        .route(
            "/api/v1/ws/asyncapi",
            get(|| asset(PAGE, "text/html; charset=utf-8")),
        )
        .route(
            "/api/v1/ws/asyncapi/page.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/api/v1/ws/asyncapi/page.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
}

/// `GET /api/v1/ws/asyncapi.json`.
async fn document(State(host): State<Arc<Host>>, headers: HeaderMap) -> Json<Value> {
    // The document names the address the client reached us by; behind a
    // proxy or with `--listen 0.0.0.0:...` the listen address is useless.
    let listen = host.config().listen.to_string();
    let server_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or(&listen);
    Json(asyncapi::document(host.routes().values(), server_host).await)
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            // The assets change with the binary; the route set is fetched fresh.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
