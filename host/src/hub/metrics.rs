//! What the host counts, for `GET /metrics` (Prometheus text format).
//!
//! Counting stays off the fan-out's locks: a publication adds its
//! deliveries and drops once (not once per subscriber), counters are
//! atomics, and whatever is a state rather than an event (open connections,
//! subscriptions, keys, queued bytes, live plugin instances) is read when
//! the host is scraped, not maintained on every change.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// A route name as a label value, shared with the route table.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct Route(pub Arc<str>);

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    ok,
    error,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOutcome {
    pub route: Route,
    pub result: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: Route,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Command {
    subscribe,
    unsubscribe,
    invalid,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandOutcome {
    pub r#type: Command,
    pub result: Outcome,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseCode {
    pub code: u16,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DropReason {
    /// Replaced by a newer update of the same subscription and key.
    conflated,
    /// Its subscriber was disconnected: the queue was full.
    slow_consumer,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Dropped {
    pub reason: DropReason,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum EvictionReason {
    /// The history was over `--history-memory-mib`.
    memory,
    /// Older than its route's history TTL.
    ttl,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Eviction {
    pub reason: EvictionReason,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum PluginEvent {
    loaded,
    upgraded,
    removed,
    rejected,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginEventLabel {
    pub event: PluginEvent,
}

/// Every metric of the host. Cheap to share; each field is an atomic (or a
/// family of them).
pub struct Metrics {
    registry: Registry,
    pub connections_accepted: Counter,
    pub connections_closed: Family<CloseCode, Counter>,
    pub updates_published: Family<RouteOutcome, Counter>,
    pub updates_delivered: Counter,
    pub updates_dropped: Family<Dropped, Counter>,
    pub commands: Family<CommandOutcome, Counter>,
    pub plugin_calls: Family<RouteOutcome, Counter>,
    pub plugin_call_seconds: Family<RouteLabel, Histogram>,
    pub plugin_events: Family<PluginEventLabel, Counter>,
    pub history_evicted: Family<Eviction, Counter>,
    // States, set when scraped.
    connections_open: Gauge,
    subscriptions: Gauge,
    keys: Gauge,
    queue_bytes: Gauge,
    plugin_instances: Family<RouteLabel, Gauge>,
    history_bytes: Gauge,
    history_keys: Gauge,
}

/// A snapshot of the states the metrics report, taken at scrape time.
pub struct State {
    pub connections_open: usize,
    pub subscriptions: usize,
    pub keys: usize,
    /// Bytes queued to each connection.
    pub queue_bytes: Vec<usize>,
    /// Live plugin instances per route.
    pub plugin_instances: Vec<(Arc<str>, usize)>,
    /// The Redis broker's state (none in memory).
    pub broker: Option<super::broker::BrokerState>,
    /// Bytes of updates kept for snapshots and recovery.
    pub history_bytes: usize,
    /// Keys with kept updates.
    pub history_keys: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ws_router");
        let m = Metrics {
            connections_accepted: Counter::default(),
            connections_closed: Family::default(),
            updates_published: Family::default(),
            updates_delivered: Counter::default(),
            updates_dropped: Family::default(),
            commands: Family::default(),
            plugin_calls: Family::default(),
            plugin_call_seconds: Family::new_with_constructor(|| {
                // 50 µs .. ~0.4 s: a topics call takes microseconds, its
                // deadline is tens of milliseconds.
                Histogram::new(exponential_buckets(0.000_05, 2.0, 14))
            }),
            plugin_events: Family::default(),
            connections_open: Gauge::default(),
            subscriptions: Gauge::default(),
            keys: Gauge::default(),
            queue_bytes: Gauge::default(),
            plugin_instances: Family::default(),
            history_evicted: Family::default(),
            history_bytes: Gauge::default(),
            history_keys: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections_open",
            "WebSocket connections open now",
            m.connections_open.clone(),
        );
        r.register(
            "connections_accepted",
            "WebSocket connections accepted",
            m.connections_accepted.clone(),
        );
        r.register(
            "connections_closed",
            "WebSocket connections closed, by close code",
            m.connections_closed.clone(),
        );
        r.register(
            "subscriptions",
            "Subscriptions held now, host-wide",
            m.subscriptions.clone(),
        );
        r.register(
            "keys",
            "Routing keys with at least one subscriber now",
            m.keys.clone(),
        );
        r.register(
            "updates_published",
            "Updates published, by route and result",
            m.updates_published.clone(),
        );
        r.register(
            "updates_delivered",
            "Update frames queued to subscribers",
            m.updates_delivered.clone(),
        );
        r.register(
            "updates_dropped",
            "Update frames not delivered, by reason",
            m.updates_dropped.clone(),
        );
        r.register(
            "outbound_queue_bytes",
            "Bytes queued to all connections now",
            m.queue_bytes.clone(),
        );
        r.register(
            "commands",
            "Client commands, by type and result",
            m.commands.clone(),
        );
        r.register(
            "plugin_calls",
            "Plugin topics calls, by route and result",
            m.plugin_calls.clone(),
        );
        r.register(
            "plugin_call_duration_seconds",
            "Plugin topics call duration, by route",
            m.plugin_call_seconds.clone(),
        );
        r.register(
            "plugin_events",
            "Plugin loads, upgrades, removals and rejections",
            m.plugin_events.clone(),
        );
        r.register(
            "plugin_instances",
            "Live plugin instances, by route",
            m.plugin_instances.clone(),
        );
        r.register(
            "history_bytes",
            "Bytes of updates kept for snapshots and recovery now (at most --history-memory-mib)",
            m.history_bytes.clone(),
        );
        r.register(
            "history_keys",
            "Keys with updates kept for snapshots and recovery now",
            m.history_keys.clone(),
        );
        r.register(
            "history_evicted",
            "Kept updates dropped before their route's history size would drop them, by reason",
            m.history_evicted.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The counters the history store counts its evictions in.
    pub fn history_evictions(&self) -> super::history::Evictions {
        let counter = |reason| {
            self.history_evicted
                .get_or_create(&Eviction { reason })
                .clone()
        };
        super::history::Evictions {
            memory: counter(EvictionReason::memory),
            ttl: counter(EvictionReason::ttl),
        }
    }

    /// Count one plugin `topics` call.
    pub fn plugin_call(&self, route: &Arc<str>, ok: bool, took: Duration) {
        let route = Route(Arc::clone(route));
        self.plugin_calls
            .get_or_create(&RouteOutcome {
                route: route.clone(),
                result: outcome(ok),
            })
            .inc();
        self.plugin_call_seconds
            .get_or_create(&RouteLabel { route })
            .observe(took.as_secs_f64());
    }

    /// Count one command.
    pub fn command(&self, command: Command, ok: bool) {
        self.commands
            .get_or_create(&CommandOutcome {
                r#type: command,
                result: outcome(ok),
            })
            .inc();
    }

    /// A tally of publications, added to these metrics per run of one route
    /// and outcome (when the route or outcome changes, and when dropped): a
    /// feed's batch is mostly one route, and looking up its labels per
    /// update cost a tenth of routing one.
    pub fn tally(&self) -> Tally<'_> {
        Tally {
            metrics: self,
            run: None,
        }
    }

    fn add_published(&self, run: &Run) {
        self.updates_published
            .get_or_create(&RouteOutcome {
                route: Route(Arc::clone(&run.route)),
                result: outcome(run.ok),
            })
            .inc_by(run.count);
        if run.delivered > 0 {
            self.updates_delivered.inc_by(run.delivered);
        }
        if run.dropped > 0 {
            self.dropped(DropReason::slow_consumer, run.dropped);
        }
    }

    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.updates_dropped
            .get_or_create(&Dropped { reason })
            .inc_by(n);
    }

    pub fn plugin_event(&self, event: PluginEvent) {
        self.plugin_events
            .get_or_create(&PluginEventLabel { event })
            .inc();
    }

    pub fn closed(&self, code: u16) {
        self.connections_closed
            .get_or_create(&CloseCode { code })
            .inc();
    }

    /// The Prometheus text exposition of every metric, with the states of
    /// `state`.
    pub fn encode(&self, state: &State) -> String {
        self.connections_open.set(to_i64(state.connections_open));
        self.subscriptions.set(to_i64(state.subscriptions));
        self.keys.set(to_i64(state.keys));
        self.history_bytes.set(to_i64(state.history_bytes));
        self.history_keys.set(to_i64(state.history_keys));
        self.queue_bytes
            .set(to_i64(state.queue_bytes.iter().sum::<usize>()));
        self.plugin_instances.clear();
        for (route, live) in &state.plugin_instances {
            self.plugin_instances
                .get_or_create(&RouteLabel {
                    route: Route(Arc::clone(route)),
                })
                .set(to_i64(*live));
        }
        // The distribution of queue depth over connections now: a histogram
        // made for this scrape (one kept across scrapes would count each
        // connection again every time).
        let depth = Histogram::new(exponential_buckets(64.0, 4.0, 10));
        for bytes in &state.queue_bytes {
            depth.observe(*bytes as f64);
        }
        let mut scrape = Registry::with_prefix("ws_router");
        scrape.register(
            "outbound_queue_depth_bytes",
            "Bytes queued per connection, over the connections open now",
            depth,
        );
        if let Some(broker) = &state.broker {
            let gauge = |n: u64| {
                let g: Gauge = Gauge::default();
                g.set(i64::try_from(n).unwrap_or(i64::MAX));
                g
            };
            let counter = |n: u64| {
                let c: Counter = Counter::default();
                c.inc_by(n);
                c
            };
            scrape.register(
                "broker_up",
                "1 while Redis (the broker between nodes) is reachable, else 0",
                gauge(u64::from(broker.up)),
            );
            scrape.register(
                "broker_channels",
                "Redis channels this node is subscribed to (keys with local subscribers)",
                gauge(broker.channels as u64),
            );
            scrape.register(
                "broker_peers",
                "Other nodes that want some key now",
                gauge(broker.peers as u64),
            );
            scrape.register(
                "broker_sent",
                "Updates handed to Redis for the other nodes",
                counter(broker.sent),
            );
            scrape.register(
                "broker_unsent",
                "Updates that reached no other node: Redis was unreachable",
                counter(broker.unsent),
            );
            scrape.register(
                "broker_received",
                "Updates received from other nodes through Redis",
                counter(broker.received),
            );
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &scrape);
        let _ = prometheus_client::encoding::text::encode_eof(&mut text);
        text
    }
}

fn outcome(ok: bool) -> Outcome {
    if ok { Outcome::ok } else { Outcome::error }
}

/// See [`Metrics::tally`].
pub struct Tally<'a> {
    metrics: &'a Metrics,
    run: Option<Run>,
}

struct Run {
    route: Arc<str>,
    ok: bool,
    count: u64,
    delivered: u64,
    dropped: u64,
}

impl Tally<'_> {
    /// Count one publication of `route` and what it reached.
    pub fn add(&mut self, route: &Arc<str>, ok: bool, delivered: usize, dropped: usize) {
        let same = self
            .run
            .as_ref()
            .is_some_and(|run| run.ok == ok && run.route == *route);
        if !same {
            self.flush();
            self.run = Some(Run {
                route: Arc::clone(route),
                ok,
                count: 0,
                delivered: 0,
                dropped: 0,
            });
        }
        if let Some(run) = &mut self.run {
            run.count += 1;
            run.delivered += delivered as u64;
            run.dropped += dropped as u64;
        }
    }

    fn flush(&mut self) {
        if let Some(run) = self.run.take() {
            self.metrics.add_published(&run);
        }
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl crate::plugin::CallObserver for Metrics {
    fn call(&self, route: &Arc<str>, call: &'static str, ok: bool, took: Duration) {
        if call == "topics" {
            self.plugin_call(route, ok, took);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_each_run_of_a_route_and_outcome() {
        let metrics = Metrics::default();
        let (bars, trades): (Arc<str>, Arc<str>) = (Arc::from("bars"), Arc::from("trades"));
        {
            let mut tally = metrics.tally();
            tally.add(&bars, true, 10, 0);
            tally.add(&Arc::from("bars"), true, 5, 1);
            tally.add(&trades, false, 0, 0);
            tally.add(&bars, true, 1, 0);
        }
        let count = |route: &Arc<str>, ok| {
            metrics
                .updates_published
                .get_or_create(&RouteOutcome {
                    route: Route(Arc::clone(route)),
                    result: outcome(ok),
                })
                .get()
        };
        assert_eq!(count(&bars, true), 3);
        assert_eq!(count(&trades, false), 1);
        assert_eq!(count(&trades, true), 0);
        assert_eq!(metrics.updates_delivered.get(), 16);
        let dropped = metrics.updates_dropped.get_or_create(&Dropped {
            reason: DropReason::slow_consumer,
        });
        assert_eq!(dropped.get(), 1);
    }
}
