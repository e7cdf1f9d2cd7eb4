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
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{
    asyncapi,
    hub::{Host, routes},
};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// Only this host's own assets, and WebSockets back to it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'";

/// `/api/v1/ws/asyncapi.json`, the page at `/api/v1/ws/asyncapi` and its
/// assets, and `/api/v1/<tag>/ws/asyncapi.json` per module.
pub fn router() -> Router<Arc<Host>> {
    Router::new()
        .route("/api/v1/ws/asyncapi.json", get(document))
        .route("/api/v1/{tag}/ws/asyncapi.json", get(module_document))
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
async fn document(State(host): State<Arc<Host>>, headers: HeaderMap) -> Response {
    let server_host = server_host(&host, &headers);
    Json(asyncapi::document(host.routes().values(), &server_host).await).into_response()
}

/// `GET /api/v1/<tag>/ws/asyncapi.json`: the document of the routes tagged
/// `tag`, on their channel `/api/v1/<tag>/ws`.
async fn module_document(
    State(host): State<Arc<Host>>,
    Path(tag): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !module_exists(&host, &tag) {
        return unknown_module(&host, &tag);
    }
    let server_host = server_host(&host, &headers);
    let table = host.routes();
    let channel = asyncapi::Channel::module(&tag);
    Json(asyncapi::document_on(routes::tagged(&table, &tag), &server_host, &channel).await)
        .into_response()
}

/// The address the client reached us by: behind a proxy or with `--listen
/// 0.0.0.0:...` the listen address is useless.
fn server_host(host: &Host, headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .map_or_else(|| host.config().listen.to_string(), str::to_owned)
}

/// Whether a route served now lists `tag` (a module with an endpoint).
pub fn module_exists(host: &Host, tag: &str) -> bool {
    routes::tagged(&host.routes(), tag).next().is_some()
}

/// The 404 for a module no route is tagged with, naming those that exist.
pub fn unknown_module(host: &Host, tag: &str) -> Response {
    let table = host.routes();
    let mut tags: Vec<&str> = table
        .values()
        .flat_map(|p| p.info.tags.iter().map(String::as_str))
        .collect();
    tags.sort_unstable();
    tags.dedup();
    let shown = crate::plugin::schema::truncate(tag, 64);
    let message = format!("no route is tagged {shown:?}; modules: {}", tags.join(", "));
    let body = serde_json::json!({ "status": "error", "message": message });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
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
