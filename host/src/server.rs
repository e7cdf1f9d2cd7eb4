//! The host's shared state and HTTP surface.
//!
//! [`Host`] is the application state: one field per concern, shared by every
//! handler. [`Host::router`] is the whole HTTP API in one chain.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::{Query, State},
    routing::{get, post},
    serve::ListenerExt,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    config::Config,
    connections::Connections,
    plugin::{PluginEngine, cache::ArtifactCache, manager::PluginManager},
    publish,
    registry::{ConnId, Registry},
    routes::RouteTable,
    session,
};

pub struct Host {
    /// Flags and limits, fixed for the process lifetime.
    pub config: Config,
    /// Compiles and runs plugins.
    pub engine: PluginEngine,
    /// Route name -> serving plugin.
    pub routes: RouteTable,
    /// Key -> subscribers, and the fan-out.
    pub registry: Registry,
    /// Plugin files -> routes: loading, upgrades, removals.
    pub plugins: PluginManager,
    /// Every connected client, for frames sent to all.
    pub connections: Connections,
    /// Set once, when the host starts shutting down.
    shutdown: watch::Sender<bool>,
    next_conn: AtomicU64,
    /// WebSocket connections admitted and not yet closed (the limit's count).
    open_connections: AtomicUsize,
}

impl Host {
    pub fn new(config: Config) -> anyhow::Result<Arc<Host>> {
        let engine = PluginEngine::new(&config.limits)?;
        let cache = match config.cache_dir() {
            Some(dir) => match ArtifactCache::new(&dir, engine.engine()) {
                Ok(cache) => Some(cache),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "compiled-plugin cache disabled: {e}");
                    None
                }
            },
            None => None,
        };
        Ok(Arc::new(Host {
            config,
            engine,
            routes: RouteTable::default(),
            registry: Registry::default(),
            plugins: PluginManager::new(cache),
            connections: Connections::default(),
            shutdown: watch::Sender::new(false),
            next_conn: AtomicU64::new(1),
            open_connections: AtomicUsize::new(0),
        }))
    }

    /// Load every `*.wasm` directly inside `dir`, in file-name order, so
    /// that when two files declare one route the same one always wins.
    /// A file that fails is logged and skipped; the others still load.
    /// Returns the number of routes served.
    pub async fn load_plugin_dir(&self, dir: &Path) -> anyhow::Result<usize> {
        self.plugins.load_dir(self, dir).await
    }

    /// Follow the plugins directory (see [`crate::watcher`]).
    pub fn watch_plugins(self: &Arc<Self>) {
        if self.config.watch_enabled() {
            crate::watcher::spawn(Arc::clone(self), self.config.plugins.clone());
        }
    }

    /// Tell connected clients whenever the routes change from now on. Call
    /// it after the initial load: the routes a client finds on connecting
    /// are not news, and a late announcement of them would arrive in the
    /// middle of its first exchange.
    pub fn announce_route_changes(self: &Arc<Self>) {
        let changes = self.routes.subscribe_changes();
        tokio::spawn(crate::plugin::manager::announce_changes(
            Arc::clone(self),
            changes,
        ));
    }

    /// The whole HTTP API.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/v1/ws", get(session::upgrade))
            .route("/api/v1/publish", post(publish::http_publish))
            .route("/api/v1/subscribers", get(subscribers))
            .route("/api/v1/routes", get(routes))
            .route("/api/v1/plugins", get(plugins))
            .merge(crate::docs::router())
            .with_state(Arc::clone(self))
    }

    /// Serve on `listener` until `stop` resolves, then close every client
    /// with 1001 and return once they are gone.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let host = Arc::clone(&self);
        // Updates are small frames that must leave at once: without
        // TCP_NODELAY, Nagle's algorithm holds a frame back until the
        // client's delayed ACK (40 ms on Linux), which was the whole p99.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                stop.await;
                tracing::info!("shutting down: closing clients");
                host.shutdown.send_replace(true);
            })
            .await?;
        // Upgraded connections outlive the HTTP server: wait until every
        // client got its 1001 and is gone (bounded, in case one hangs).
        let started = std::time::Instant::now();
        while self.open_connections() > 0 && started.elapsed() < std::time::Duration::from_secs(5) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// WebSocket connections open now.
    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Count a new connection, unless the limit is reached.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.config.limits.max_connections;
        let before = self.open_connections.fetch_add(1, Ordering::AcqRel);
        let slot = ConnectionSlot(Arc::clone(self));
        (before < max).then_some(slot)
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Whether publishing to `topic` would reach anyone.
    pub fn has_subscribers(&self, topic: &str) -> bool {
        self.registry.has_subscribers(topic)
    }
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

/// One counted connection; uncounted when dropped.
pub(crate) struct ConnectionSlot(Arc<Host>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Deserialize)]
struct TopicQuery {
    topic: String,
}

#[derive(Serialize)]
struct SubscriberCount {
    topic: String,
    has_subscribers: bool,
    subscribers: usize,
}

/// `GET /api/v1/subscribers?topic=<key>`.
async fn subscribers(
    State(host): State<Arc<Host>>,
    Query(q): Query<TopicQuery>,
) -> Json<SubscriberCount> {
    let subscribers = host.registry.subscriber_count(&q.topic);
    Json(SubscriberCount {
        topic: q.topic,
        has_subscribers: subscribers > 0,
        subscribers,
    })
}

#[derive(Serialize)]
struct RouteView<'a> {
    #[serde(flatten)]
    info: &'a crate::plugin::RouteInfo,
    delivery: crate::plugin::DeliveryPolicy,
    /// Plugin calls that trapped, timed out or returned invalid output.
    failures: u64,
    request_schema: &'a serde_json::Value,
    data_schema: &'a serde_json::Value,
}

/// `GET /api/v1/routes`: every route with its schemas.
async fn routes(State(host): State<Arc<Host>>) -> Json<serde_json::Value> {
    let table = host.routes.snapshot();
    let views: Vec<RouteView<'_>> = table
        .values()
        .map(|p| RouteView {
            info: &p.info,
            delivery: p.delivery,
            failures: p.failures(),
            request_schema: &p.request_schema,
            data_schema: &p.data_schema,
        })
        .collect();
    Json(serde_json::to_value(views).unwrap_or_default())
}

/// `GET /api/v1/plugins`: every plugin file, serving or rejected.
async fn plugins(
    State(host): State<Arc<Host>>,
) -> Json<Vec<crate::plugin::manager::PluginFileView>> {
    Json(host.plugins.views())
}
