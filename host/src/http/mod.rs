//! The HTTP surface: the only part of the host that knows axum.
//!
//! * [`ws`]: the WebSocket endpoints; each connection drives one
//!   [`Session`](crate::hub::session::Session).
//! * [`api`]: publishing and the read-only views (subscribers, routes,
//!   plugins).
//! * [`docs`]: the AsyncAPI documents and the documentation page.
//! * [`conn`]: an accepted TCP connection: counted, closed gracefully.
//! * [`auth`]: client tokens, browser origins and publisher keys.
//! * [`interest`]: the keys somebody wants, as Server-Sent Events.
//!
//! [`router`] is the whole HTTP API in one chain; [`serve`] accepts
//! connections and serves it on each with hyper's HTTP/1 server (header
//! timeout, WebSocket upgrades).

pub mod api;
pub mod auth;
mod conn;
pub mod docs;
pub mod interest;
pub mod ops;
pub mod ws;

use std::{
    convert::Infallible, future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration,
};

use axum::{
    Json, Router,
    http::{Request, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::hub::Host;
pub use auth::Security;
use conn::{Conn, Counter, OverLimit};

/// How long shutdown waits for clients to take their close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Connections over `--max-connections` that are being told so at once (a
/// 503, or a 1013 close for a WebSocket); more are closed without a word.
const MAX_REFUSING: usize = 64;

/// The longest a connection over the limit may take to send its request.
const REFUSING_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The whole HTTP API, guarded by `security`.
pub fn router(host: &Arc<Host>, security: Arc<Security>) -> Router {
    Router::new()
        .route("/api/v1/ws", get(ws::upgrade))
        .route("/api/v1/{tag}/ws", get(ws::upgrade_module))
        .route("/api/v1/publish", post(api::publish))
        .route("/api/v1/subscribers", get(api::subscribers))
        .route("/api/v1/routes", get(api::routes))
        .route("/api/v1/plugins", get(api::plugins))
        .route("/api/v1/interest", get(interest::stream))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .merge(docs::router())
        .layer(axum::Extension(security))
        .layer(axum::Extension(interest::Streams::new(
            host.config().limits.max_interest_streams,
        )))
        .with_state(Arc::clone(host))
}

/// Serve `host` on `listener` until `stop` resolves, then close every
/// client with 1001 and return once they are gone (or [`CLOSE_WAIT`] passed).
///
/// Every accepted TCP connection counts against `--max-connections` until
/// it is closed. Request headers must arrive within
/// `--http-header-timeout-ms` (also the longest an idle keep-alive
/// connection stays open).
pub async fn serve(
    host: Arc<Host>,
    security: Security,
    listener: tokio::net::TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(&host, Arc::new(security));
    let limits = &host.config().limits;
    let max = limits.max_connections;
    let header_timeout = Duration::from_millis(limits.http_header_timeout_ms.max(1));
    let (open, refusing) = (Counter::default(), Counter::default());
    let lingering = TaskTracker::new();
    // HTTP connections (not yet upgraded), and the signal to finish them.
    let serving = TaskTracker::new();
    let stopping = CancellationToken::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: let it pass
                    // rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Updates are small frames that must leave at once: without
        // TCP_NODELAY, Nagle's algorithm holds a frame back until the
        // client's delayed ACK (40 ms on Linux), which was the whole p99.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let (counted, over) = match open.admit(max) {
            Some(counted) => (counted, false),
            None => match refusing.admit(MAX_REFUSING) {
                Some(counted) => {
                    tracing::debug!(max, "connection over the limit: refusing it");
                    (counted, true)
                }
                None => continue,
            },
        };
        let io = TokioIo::new(Conn::new(tcp, counted, lingering.clone()));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(if over {
                header_timeout.min(REFUSING_HEADER_TIMEOUT)
            } else {
                header_timeout
            });
        let service = if over {
            ConnService::Refusing(TowerToHyperService::new(app.clone()))
        } else {
            ConnService::Serving(TowerToHyperService::new(app.clone()))
        };
        let stopping = stopping.clone();
        serving.spawn(async move {
            let mut connection =
                std::pin::pin!(builder.serve_connection(io, service).with_upgrades());
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stopping.cancelled() => {
                    // The request in flight finishes; then the connection
                    // closes (an upgraded one is a session by now).
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: closing clients");
    host.shutdown();
    // Requests in flight finish; idle connections close at once. Upgraded
    // connections are the sessions, waited for below.
    stopping.cancel();
    serving.close();
    if tokio::time::timeout(CLOSE_WAIT, serving.wait())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still running after {CLOSE_WAIT:?}");
    }
    if !host.sessions_closed(CLOSE_WAIT).await {
        tracing::warn!(
            open = host.open_connections(),
            "clients still open after {CLOSE_WAIT:?}; exiting anyway"
        );
    }
    // Let the last connections see their close frame through.
    lingering.close();
    let _ = tokio::time::timeout(conn::LINGER, lingering.wait()).await;
    tracing::debug!(open = open.open(), "stopped serving");
    Ok(())
}

/// The service of one connection: the API, or (over the connection limit)
/// a refusal.
#[derive(Clone)]
enum ConnService {
    Serving(TowerToHyperService<Router>),
    Refusing(TowerToHyperService<Router>),
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, mut request: Request<Incoming>) -> ServiceFuture {
        match self {
            ConnService::Serving(app) => Box::pin(app.call(request)),
            ConnService::Refusing(app) if request.headers().contains_key(header::UPGRADE) => {
                request.extensions_mut().insert(OverLimit);
                Box::pin(app.call(request))
            }
            ConnService::Refusing(_) => Box::pin(async { Ok(too_many_connections()) }),
        }
    }
}

fn too_many_connections() -> Response {
    let body = serde_json::json!({
        "status": "error",
        "message": "too many connections: try again later",
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    // One answer per connection over the limit.
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
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
