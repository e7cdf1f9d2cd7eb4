//! For operators and load balancers: `GET /metrics` (Prometheus text
//! format), `GET /healthz` and `GET /readyz`. Cheap, and open: they carry
//! counts, never data.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::hub::Host;

/// `GET /metrics`.
pub async fn metrics(State(host): State<Arc<Host>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        host.metrics_text(),
    )
        .into_response()
}

/// `GET /healthz`: 200 while the process serves HTTP.
pub async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`: 200 once the startup plugins are loaded, else 503 saying
/// what is missing. It reports the broker too, but Redis being away does
/// not make a node unready: it still serves its own clients, and taking
/// every node out of the load balancer would turn a partial outage into a
/// full one.
pub async fn readyz(State(host): State<Arc<Host>>) -> Response {
    match host.readiness() {
        Ok(()) => {
            Json(serde_json::json!({ "status": "ready", "broker": host.broker() })).into_response()
        }
        Err(not_ready) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not ready", "missing": not_ready.missing })),
        )
            .into_response(),
    }
}
