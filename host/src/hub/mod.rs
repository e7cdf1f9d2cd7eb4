//! The host core: routes, subscriptions, sessions, publishing and plugin
//! reloads. It knows nothing of HTTP; [`crate::http`] serves it.
//!
//! * [`registry`]: who is subscribed to which key; the fan-out of an update,
//!   encoded once per subscription topic, to every subscriber's outbox.
//! * [`routes`]: the live route table (route name -> loaded plugin).
//! * [`session`]: one client: its commands in, replies and updates out.
//! * [`outbox`]: each session's bounded outbound queue.
//! * [`ratelimit`]: a client's command rate.
//! * [`publish`]: publishing updates.
//! * [`reload`]: plugin files in, route table and registry changes out.
//! * [`watcher`]: file events in the plugins directory in, "reload this
//!   path" out.
//! * [`connections`]: every connected client, for frames sent to all.
//! * [`metrics`]: what the host counts, for `GET /metrics`.
//! * [`interest`]: which keys somebody wants, for publishers.
//! * [`broker`]: publications shared with other nodes (Redis), or not.
//! * [`history`]: what routes with retention keep: snapshots, offsets and
//!   epochs, recent updates for recovery.
//!
//! [`Host`] ties them together behind a small API: [`Host::start`],
//! [`Host::open_session`], [`Host::publish`], [`Host::routes`],
//! [`Host::plugins`], [`Host::shutdown`].

pub mod broker;
pub mod connections;
mod hashing;
pub mod history;
pub mod interest;
pub mod metrics;
pub mod outbox;
pub mod publish;
pub mod ratelimit;
pub mod registry;
pub mod reload;
pub mod routes;
mod scan_map;
pub mod session;
pub mod watcher;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::{
    config::Config,
    plugin::{PluginEngine, cache::ArtifactCache},
    protocol,
};
use broker::{Broker, BrokerState};
use connections::{Connections, TooManyConnections};
use history::History;
use interest::{Interest, InterestStream};
use metrics::Metrics;
use outbox::{Frame, Outbox};
use publish::{PublishError, Published, Receipt, Update};
use registry::Registry;
use reload::{PluginFileView, Reloader};
use routes::{RouteTable, Table};
use session::Session;

pub struct Host {
    /// Flags and limits, fixed for the process lifetime.
    config: Config,
    /// Route name -> serving plugin.
    routes: Arc<RouteTable>,
    /// Key -> subscribers, and the fan-out.
    registry: Arc<Registry>,
    /// Plugin files -> routes: loading, upgrades, removals.
    reloader: Arc<Reloader>,
    /// Every connected client: the count, and frames sent to all.
    connections: Connections,
    /// Set once, when the host starts shutting down.
    shutdown: watch::Sender<bool>,
    /// Open sessions, so that shutdown can wait for them to close.
    sessions: TaskTracker,
    /// What the host counts.
    metrics: Arc<Metrics>,
    /// Set once the startup plugins are loaded.
    ready: AtomicBool,
    /// Which keys somebody wants.
    interest: Arc<Interest>,
    /// Where publications go beyond this node.
    broker: Broker,
    /// Snapshots and recent updates of routes with retention.
    history: Arc<History>,
}

/// Why the host is not ready to serve (`GET /readyz`).
#[derive(Debug, serde::Serialize)]
pub struct NotReady {
    /// What is missing, for people.
    pub missing: Vec<String>,
}

impl Host {
    pub fn new(config: Config) -> anyhow::Result<Arc<Host>> {
        let metrics = Arc::new(Metrics::default());
        let observer: Arc<dyn crate::plugin::CallObserver> = metrics.clone();
        let engine = PluginEngine::observed(config.limits.plugin(), Some(observer))?;
        let cache = config.cache_dir().and_then(|dir| {
            ArtifactCache::new(&dir, engine.engine())
                .inspect_err(|e| {
                    tracing::warn!(dir = %dir.display(), "compiled-plugin cache disabled: {e}");
                })
                .ok()
        });
        let routes = Arc::new(RouteTable::default());
        let history = Arc::new(History::new(
            config.limits.history_memory_mib.saturating_mul(1 << 20),
            // Half a connection's queue: a replay leaves room for the live
            // updates queued behind it.
            config.limits.outbox_bytes / 2,
            metrics.history_evictions(),
        ));
        let interest = Arc::new(Interest::default());
        let registry = Arc::new(Registry::watched(Arc::clone(&interest)));
        let counted = Arc::downgrade(&registry);
        interest.count_with(move |key| {
            counted
                .upgrade()
                .map_or(0, |registry| registry.subscriber_count(key))
        });
        let broker = match &config.redis_url {
            Some(url) => {
                Broker::Redis(broker::redis::RedisBroker::new(url, Arc::clone(&interest))?)
            }
            None => Broker::Memory,
        };
        let reloader = Arc::new(Reloader::new(
            engine,
            cache,
            Arc::clone(&routes),
            Arc::clone(&registry),
            Arc::clone(&metrics),
        ));
        Ok(Arc::new(Host {
            config,
            routes,
            registry,
            reloader,
            connections: Connections::default(),
            shutdown: watch::Sender::new(false),
            sessions: TaskTracker::new(),
            metrics,
            ready: AtomicBool::new(false),
            interest,
            broker,
            history,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Load the plugins directory and, unless watching is off, follow it
    /// from now on; then tell connected clients whenever the routes change.
    /// Returns the number of routes served.
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<usize> {
        // Watch first, then load: nothing changed in between goes unseen.
        if self.config.watch_enabled() {
            watcher::spawn(
                Arc::clone(&self.reloader),
                self.config.plugins.clone(),
                self.shutdown.subscribe(),
            );
        }
        if let Broker::Redis(redis) = &self.broker {
            redis.start(
                self.remote_delivery(),
                self.retained_delivery(),
                self.shutdown.subscribe(),
            );
        }
        let loaded = self.load_plugin_dir().await?;
        self.ready.store(true, Ordering::Release);
        // After the initial load: the routes a client finds on connecting
        // are not news, and a late announcement of them would arrive in the
        // middle of its first exchange.
        tokio::spawn(sweep_history(Arc::clone(self)));
        tokio::spawn(announce_changes(
            Arc::clone(self),
            self.routes.subscribe_changes(),
        ));
        Ok(loaded)
    }

    /// Load every `*.wasm` directly inside the plugins directory, in
    /// file-name order, so that when two files declare one route the same
    /// one always wins. A file that fails is logged and skipped; the others
    /// still load. Returns the number of routes served.
    pub async fn load_plugin_dir(&self) -> anyhow::Result<usize> {
        self.reloader.load_dir(&self.config.plugins).await
    }

    /// A session for one client, unless the host serves as many as allowed.
    pub fn open_session(&self) -> Result<Session, TooManyConnections> {
        let limits = &self.config.limits;
        let admitted = self.connections.admit(limits.max_connections)?;
        self.metrics.connections_accepted.inc();
        let conflated = self
            .metrics
            .updates_dropped
            .get_or_create(&metrics::Dropped {
                reason: metrics::DropReason::conflated,
            })
            .clone();
        let outbox = Arc::new(Outbox::counting(limits.outbox_bytes, conflated));
        Ok(Session::new(session::Parts {
            routes: Arc::clone(&self.routes),
            registry: Arc::clone(&self.registry),
            history: Arc::clone(&self.history),
            shared: match &self.broker {
                Broker::Redis(redis) => Some(Arc::clone(redis)),
                Broker::Memory => None,
            },
            replay_budget: limits.outbox_bytes / 2,
            listed: self.connections.list(admitted.id, &outbox),
            outbox,
            max_subscriptions: limits.max_subscriptions,
            max_total_subscriptions: limits.max_total_subscriptions,
            max_total_keys: limits.max_total_keys,
            admitted,
            open: self.sessions.token(),
            metrics: Arc::clone(&self.metrics),
        }))
    }

    /// Publish one update to the subscribers of its keys.
    pub async fn publish(&self, update: &Update) -> Result<Receipt, PublishError> {
        self.publish_checked(update, publish::DataCheck::Every)
            .await
    }

    /// [`Host::publish`], with the data checked as `check` says (a trusted
    /// publisher's on a sample).
    pub async fn publish_checked(
        &self,
        update: &Update,
        check: publish::DataCheck<'_>,
    ) -> Result<Receipt, PublishError> {
        let published = self.publish_here(update, check).await;
        let mut result = self
            .received(update, published, &mut self.metrics.tally())
            .await;
        if let Ok(receipt) = &mut result
            && let Some(ticket) = self.share(update, receipt)
        {
            receipt.cluster = ticket.outcome().await;
        }
        result
    }

    /// Hand `update`, delivered here, to the other nodes; `None` when there
    /// are none, or when its history in Redis carried it there already.
    fn share(&self, update: &Update, receipt: &Receipt) -> Option<broker::Ticket> {
        if matches!(self.broker, Broker::Memory) || receipt.cluster.is_some() {
            return None;
        }
        let data = protocol::compact_json(update.data.get());
        Some(self.broker.publish(&receipt.route, &receipt.keys, &data))
    }

    /// Publish several updates in order, each checked as `check` says; each
    /// succeeds or fails alone. With Redis, the batch is queued to Redis
    /// whole before any answer is awaited.
    pub async fn publish_many_checked(
        &self,
        items: Vec<Result<Update, PublishError>>,
        check: publish::DataCheck<'_>,
    ) -> Vec<Result<Receipt, PublishError>> {
        // Every item queued first (in order), then every answer awaited.
        let mut published = Vec::with_capacity(items.len());
        for item in items {
            published.push(match item {
                Ok(update) => {
                    let result = self.publish_here(&update, check).await;
                    Ok((update, result))
                }
                Err(e) => Err(e),
            });
        }
        let mut results = Vec::with_capacity(published.len());
        let mut tickets = Vec::new();
        let mut tally = self.metrics.tally();
        for item in published {
            let result = match item {
                Ok((update, result)) => {
                    let result = self.received(&update, result, &mut tally).await;
                    if let Ok(receipt) = &result
                        && let Some(ticket) = self.share(&update, receipt)
                    {
                        tickets.push((results.len(), ticket));
                    }
                    result
                }
                Err(e) => Err(e),
            };
            results.push(result);
        }
        for (i, ticket) in tickets {
            let cluster = ticket.outcome().await;
            if let Some(Ok(receipt)) = results.get_mut(i) {
                receipt.cluster = cluster;
            }
        }
        results
    }

    /// Delivers updates from other nodes to this node's subscribers.
    fn remote_delivery(self: &Arc<Self>) -> broker::redis::Deliver {
        let host = Arc::downgrade(self);
        Arc::new(move |route, keys, data| {
            let Some(host) = host.upgrade() else { return };
            // A route not served here (a plugin not rolled out to this node
            // yet) has no subscribers here.
            let Some(plugin) = host.routes.lease(route) else {
                return;
            };
            let fan_out = host.registry.publish(keys, data, plugin.delivery);
            host.metrics
                .updates_delivered
                .inc_by(fan_out.delivered as u64);
            if fan_out.dropped > 0 {
                host.metrics
                    .dropped(metrics::DropReason::slow_consumer, fan_out.dropped as u64);
            }
        })
    }

    /// Delivers updates of routes with retention, with their positions in
    /// Redis, to this node's subscribers (from any node, this one too).
    fn retained_delivery(self: &Arc<Self>) -> broker::gate::DeliverAt {
        let host = Arc::downgrade(self);
        Arc::new(move |route, key, offset, epoch, data| {
            let Some(host) = host.upgrade() else { return };
            let Some(plugin) = host.routes.lease(route) else {
                return;
            };
            let at = plugin.retention.has_history().then_some((offset, epoch));
            let fan_out = host.registry.publish_key(key, data, plugin.delivery, at);
            if fan_out.dropped > 0 {
                host.metrics
                    .dropped(metrics::DropReason::slow_consumer, fan_out.dropped as u64);
            }
        })
    }

    /// The Redis broker, when it serves histories now.
    fn shared_history(&self) -> Option<&broker::redis::RedisBroker> {
        match &self.broker {
            Broker::Redis(redis) => Some(redis),
            Broker::Memory => None,
        }
    }

    /// Publish on this node: check, resolve, deliver, count.
    async fn publish_here(
        &self,
        update: &Update,
        check: publish::DataCheck<'_>,
    ) -> Result<Published, PublishError> {
        publish::publish(
            &self.routes,
            &self.registry,
            &self.history,
            self.shared_history(),
            update,
            check,
        )
        .await
    }

    /// The receipt of `update`'s publication, once known, counted in `tally`.
    async fn received(
        &self,
        update: &Update,
        published: Result<Published, PublishError>,
        tally: &mut metrics::Tally<'_>,
    ) -> Result<Receipt, PublishError> {
        let result = match published {
            Ok(published) => Ok(published
                .receipt(&self.registry, &self.history, self.shared_history())
                .await),
            Err(e) => Err(e),
        };
        match &result {
            Ok(receipt) => tally.add(&receipt.route, true, receipt.delivered, receipt.dropped),
            // A route nobody serves is not a label: publishers could make
            // the label set grow without bound.
            Err(PublishError::UnknownRoute(_)) => {}
            Err(_) => {
                if let Some(route) = self.routes.lease(&update.route) {
                    tally.add(&route.route, false, 0, 0);
                }
            }
        }
        result
    }

    /// What the host counts, with its states as of now, in the Prometheus
    /// text format.
    pub fn metrics_text(&self) -> String {
        let routes = self.routes.snapshot();
        let state = metrics::State {
            connections_open: self.connections.open(),
            subscriptions: self.registry.subscription_count(),
            keys: self.registry.key_count(),
            broker: matches!(self.broker, Broker::Redis(_)).then(|| self.broker.state()),
            history_bytes: self.history.bytes(),
            history_keys: self.history.key_count(),
            queue_bytes: self.connections.queued_bytes(),
            plugin_instances: routes
                .values()
                .map(|p| (Arc::clone(&p.route), p.instances().0))
                .collect(),
        };
        self.metrics.encode(&state)
    }

    /// The host's metrics, to count what the transport sees (commands,
    /// closes).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether the host is ready to serve: the startup plugins are loaded.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(NotReady {
                missing: vec!["the startup plugins are still loading".to_owned()],
            })
        }
    }

    /// Whether the startup plugins are loaded: before that, a client would
    /// find no routes (and a reconnecting one would lose its
    /// subscriptions), so the WebSocket endpoints turn clients away.
    pub fn started(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Publish several updates in order; each succeeds or fails alone.
    pub async fn publish_all(&self, updates: &[Update]) -> Vec<Result<Receipt, PublishError>> {
        let items = updates.iter().cloned().map(Ok).collect();
        self.publish_many_checked(items, publish::DataCheck::Every)
            .await
    }

    /// The broker: its engine and whether the other nodes are reachable.
    pub fn broker(&self) -> BrokerState {
        self.broker.state()
    }

    /// Every route served now, by name.
    pub fn routes(&self) -> Arc<Table> {
        self.routes.snapshot()
    }

    /// Route names, sorted.
    pub fn route_names(&self) -> Vec<String> {
        self.routes.names()
    }

    /// Every plugin file, serving or rejected.
    pub fn plugins(&self) -> Vec<PluginFileView> {
        self.reloader.views()
    }

    /// How many subscriptions publishing to `key` would reach.
    pub fn subscriber_count(&self, key: &str) -> usize {
        self.registry.subscriber_count(key)
    }

    /// Whether publishing to `key` would reach anyone.
    pub fn has_subscribers(&self, key: &str) -> bool {
        self.registry.has_subscribers(key)
    }

    /// What is wanted: a snapshot of every key with subscribers, then each
    /// key that gains its first subscriber or loses its last (with the Redis
    /// broker, on any node).
    pub fn interest(&self) -> InterestStream {
        self.interest.stream()
    }

    /// Sessions open now.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }

    /// Start shutting down: every session closes (1001) and background
    /// tasks stop.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Becomes true once the host starts shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Wait until every session has closed, at most `timeout`; whether they
    /// all did.
    pub async fn sessions_closed(&self, timeout: Duration) -> bool {
        self.sessions.close();
        tokio::time::timeout(timeout, self.sessions.wait())
            .await
            .is_ok()
    }
}

/// Send `routes.changed` to every client whenever the route table changes.
async fn announce_changes(host: Arc<Host>, mut changes: watch::Receiver<u64>) {
    let mut shutdown = host.shutdown_signal();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let table = host.routes.snapshot();
        let routes: Vec<(&str, &str)> = table
            .values()
            .map(|p| (p.info.name.as_str(), p.info.version.as_str()))
            .collect();
        let frame = Frame::from(protocol::routes_changed_frame(&routes));
        let clients = host.connections.broadcast(&frame);
        tracing::debug!(clients, routes = routes.len(), "announced routes.changed");
    }
}

/// Drop kept updates past their route's TTL, and those of routes removed
/// (or upgraded to a version without retention), every second; a route
/// upgraded to a version with retention keeps its keys' history.
async fn sweep_history(host: Arc<Host>) {
    let mut shutdown = host.shutdown_signal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let table = host.routes.snapshot();
        host.history.sweep(
            |route| table.get(route).map(|plugin| plugin.retention),
            |key| host.registry.has_subscribers(key),
        );
        if let Broker::Redis(redis) = &host.broker {
            redis
                .streams()
                .prune(|key| host.registry.has_subscribers(key));
        }
    }
}
