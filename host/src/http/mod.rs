//! The HTTP surface: the only part of the host that knows axum.
//!
//! * [`ws`]: the WebSocket endpoint; each connection drives one
//!   [`Session`](crate::hub::session::Session).
//! * [`api`]: publishing and the read-only views (subscribers, routes,
//!   plugins).
//! * [`docs`]: the AsyncAPI document and the documentation page.
//!
//! [`router`] is the whole HTTP API in one chain.

pub mod api;
pub mod docs;
pub mod ws;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    routing::{get, post},
    serve::ListenerExt,
};

use crate::hub::Host;

/// How long shutdown waits for clients to take their close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The whole HTTP API.
pub fn router(host: &Arc<Host>) -> Router {
    Router::new()
        .route("/api/v1/ws", get(ws::upgrade))
        .route("/api/v1/publish", post(api::publish))
        .route("/api/v1/subscribers", get(api::subscribers))
        .route("/api/v1/routes", get(api::routes))
        .route("/api/v1/plugins", get(api::plugins))
        .merge(docs::router())
        .with_state(Arc::clone(host))
}

/// Serve `host` on `listener` until `stop` resolves, then close every
/// client with 1001 and return once they are gone (or [`CLOSE_WAIT`] passed).
pub async fn serve(
    host: Arc<Host>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(&host).into_make_service_with_connect_info::<SocketAddr>();
    // Updates are small frames that must leave at once: without
    // TCP_NODELAY, Nagle's algorithm holds a frame back until the client's
    // delayed ACK (40 ms on Linux), which was the whole p99.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let stopping = Arc::clone(&host);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop.await;
            tracing::info!("shutting down: closing clients");
            stopping.shutdown();
        })
        .await?;
    // Upgraded connections outlive the HTTP server.
    if !host.sessions_closed(CLOSE_WAIT).await {
        tracing::warn!(
            open = host.open_connections(),
            "clients still open after {CLOSE_WAIT:?}; exiting anyway"
        );
    }
    Ok(())
}

/// Listen on `addr` with room for `backlog` connections not yet accepted.
///
/// `TcpListener::bind` queues only 128: a burst of connecting clients
/// overflowed it, and each dropped one waited a SYN retransmission (1 s).
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restarted host can listen again at once, despite TIME_WAIT sockets.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
