//! Publishing updates ([`publish`], which `Host::publish` calls);
//! `POST /api/v1/publish` is a thin JSON wrapper around it (in
//! [`crate::http`]).
//!
//! An update names its route and either the subscription request it is for
//! (the route's plugin turns it into keys, so publishers never build key
//! strings) or a key directly. Its data is checked against the route's data
//! schema. One bad update in a batch is reported and delivers nothing; the
//! others are delivered.
//!
//! Data is checked on every update, except a trusted publisher's (the HTTP
//! layer decides who is trusted): those are checked on a sample
//! ([`DataCheck::Sampled`]), which saves the schema check on a hot feed and
//! still catches a publisher gone wrong.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use serde::Serialize;
use serde_json::{Value, value::RawValue};
use tokio::sync::oneshot;

use super::{
    broker::{
        Cluster,
        redis::{Position, RedisBroker},
    },
    history::History,
    registry::Registry,
    routes::{RouteTable, UnknownRoute},
};
use crate::{
    plugin::{CallError, Lease, Plugin, Problem},
    protocol,
};

/// One update to publish.
#[derive(Debug, Clone)]
pub struct Update {
    pub route: String,
    pub address: Address,
    /// The route's data, as JSON text.
    pub data: Box<RawValue>,
}

/// Where an update goes.
#[derive(Debug, Clone)]
pub enum Address {
    /// The subscription request the update is for; the plugin resolves it.
    Request(Value),
    /// A routing key, e.g. `trades:AAPL`.
    Key(String),
}

impl Update {
    /// An update addressed by subscription request.
    pub fn for_request(
        route: &str,
        request: impl Serialize,
        data: impl Serialize,
    ) -> Result<Update, serde_json::Error> {
        Ok(Update {
            route: route.to_owned(),
            address: Address::Request(serde_json::to_value(request)?),
            data: serde_json::value::to_raw_value(&data)?,
        })
    }

    /// An update addressed by routing key.
    pub fn for_key(
        route: &str,
        key: &str,
        data: impl Serialize,
    ) -> Result<Update, serde_json::Error> {
        Ok(Update {
            route: route.to_owned(),
            address: Address::Key(key.to_owned()),
            data: serde_json::value::to_raw_value(&data)?,
        })
    }
}

/// Where an update went.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub route: Arc<str>,
    /// The keys it was published to.
    pub keys: Vec<Arc<str>>,
    /// Subscriptions it was queued to.
    pub delivered: usize,
    /// Subscribers disconnected because their queue was full.
    pub dropped: usize,
    /// Whether the other nodes got it (`None`: one node, no broker).
    pub cluster: Option<Cluster>,
    /// The only key, as a JSON string, when the registry had it encoded
    /// (see [`FanOut::key_json`](super::registry::FanOut::key_json)).
    pub key_json: Option<Arc<str>>,
}

/// Why an update was not published. The text is for the publisher.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("malformed update: {0}")]
    Malformed(String),
    #[error(transparent)]
    UnknownRoute(#[from] UnknownRoute),
    #[error("request does not match the {route} request schema")]
    InvalidRequest {
        route: String,
        problems: Vec<Problem>,
    },
    #[error("data does not match the {route} data schema")]
    InvalidData {
        route: String,
        problems: Vec<Problem>,
    },
    #[error("key {key:?} does not belong to route {route:?} (it must start with \"{route}:\")")]
    ForeignKey { route: String, key: String },
    #[error("{0}")]
    Topics(#[from] CallError),
}

impl PublishError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            PublishError::InvalidRequest { problems, .. }
            | PublishError::InvalidData { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// How much of a publisher's data is checked against the data schema.
#[derive(Clone, Copy)]
pub enum DataCheck<'a> {
    /// Every update (any publisher not known to be trusted).
    Every,
    /// The updates the sampler picks (a trusted publisher).
    Sampled(&'a Sampler),
}

/// Picks one update in `every` for checking, and counts the picked ones
/// that failed.
#[derive(Debug)]
pub struct Sampler {
    every: u64,
    seen: AtomicU64,
    failures: AtomicU64,
}

impl Sampler {
    /// Check one update in `every` (1: all of them).
    pub fn new(every: u64) -> Sampler {
        Sampler {
            every: every.max(1),
            seen: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Whether this update is checked: the `every`-th, `2 * every`-th ...
    fn due(&self) -> bool {
        (self.seen.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(self.every)
    }

    /// Sampled updates that failed their check so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Publish one update to the subscribers of its keys. With Redis, an
/// update of a route with retention is queued to Redis here, and its
/// receipt waits for Redis ([`Published::receipt`]): a batch queues all of
/// its updates, in order, before waiting for any.
pub async fn publish(
    routes: &RouteTable,
    registry: &Registry,
    history: &History,
    shared: Option<&RedisBroker>,
    update: &Update,
    check: DataCheck<'_>,
) -> Result<Published, PublishError> {
    let plugin = routes.lease_or_unknown(&update.route)?;
    let route = || plugin.info.name.clone();
    let keys: Vec<Arc<str>> = match &update.address {
        Address::Key(key) => {
            if !plugin.owns_key(key) {
                return Err(PublishError::ForeignKey {
                    route: route(),
                    key: key.clone(),
                });
            }
            vec![Arc::from(key.as_str())]
        }
        Address::Request(request) => {
            plugin.request_schema.check(request).map_err(|problems| {
                PublishError::InvalidRequest {
                    route: route(),
                    problems,
                }
            })?;
            plugin.topics(&request.to_string()).await?.keys
        }
    };
    match check {
        DataCheck::Every => check_data(&plugin, &update.data, None)?,
        DataCheck::Sampled(sampler) if sampler.due() => {
            check_data(&plugin, &update.data, Some(sampler))?;
        }
        // Trusted and not picked: the data is JSON (it parsed as a raw
        // value); its shape is the publisher's word.
        DataCheck::Sampled(_) => {}
    }
    Ok(deliver(registry, history, shared, plugin, keys, update))
}

/// Check `data` against the route's data schema; a failure of a trusted
/// publisher's (`sampler`) is counted and logged too.
fn check_data(
    plugin: &Plugin,
    data: &RawValue,
    sampler: Option<&Sampler>,
) -> Result<(), PublishError> {
    // Most routes' data schemas are checked while scanning the text; the
    // rest, and whatever the scan is not sure of, by the full validator.
    if plugin.data_schema.admits(data.get()) {
        return Ok(());
    }
    let data: Value = serde_json::from_str(data.get())
        .map_err(|e| PublishError::Malformed(format!("data is not JSON: {e}")))?;
    let Err(problems) = plugin.data_schema.check(&data) else {
        return Ok(());
    };
    if let Some(sampler) = sampler {
        let failures = sampler.failures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            route = %plugin.route,
            failures,
            "a trusted publisher's update does not match the data schema (sampled check)"
        );
    }
    Err(PublishError::InvalidData {
        route: plugin.info.name.clone(),
        problems,
    })
}

/// A publication: delivered, or waiting for Redis to give its keys their
/// offsets.
pub enum Published {
    Done(Receipt),
    Shared(SharedPublication),
}

impl Published {
    /// Where it went, once known (`redis`: the broker it was queued to).
    pub async fn receipt(
        self,
        registry: &Registry,
        history: &History,
        redis: Option<&RedisBroker>,
    ) -> Receipt {
        match self {
            Published::Done(receipt) => receipt,
            Published::Shared(shared) => shared.receipt(registry, history, redis).await,
        }
    }
}

/// Queue `update` to the subscribers of `keys`. The one place offsets
/// are assigned: a route with retention stores each key's publication in
/// the history, which orders its fan-out; any other route's goes straight
/// to the registry. With Redis (`shared`), a route with retention keeps
/// its history there instead: see [`SharedPublication`].
fn deliver(
    registry: &Registry,
    history: &History,
    shared: Option<&RedisBroker>,
    plugin: Lease,
    keys: Vec<Arc<str>>,
    update: &Update,
) -> Published {
    let data = protocol::compact_json(update.data.get());
    if let Some(redis) = shared
        && history.keeps(&plugin.retention)
    {
        // Queued together, so that they share pipelines.
        let answers = keys
            .iter()
            .map(|key| redis.queue_append(&plugin.route, key, &data, &plugin.retention))
            .collect();
        return Published::Shared(SharedPublication {
            data: Box::from(&*data),
            plugin,
            keys,
            answers,
        });
    }
    let fan_out = if history.keeps(&plugin.retention) {
        history.publish(
            registry,
            &plugin.route,
            &plugin.retention,
            plugin.delivery,
            &keys,
            &data,
        )
    } else {
        registry.publish(&keys, &data, plugin.delivery)
    };
    Published::Done(Receipt {
        route: Arc::clone(&plugin.route),
        keys,
        delivered: fan_out.delivered,
        dropped: fan_out.dropped,
        cluster: None,
        key_json: fan_out.key_json,
    })
}

/// A route with retention, with Redis: each key's update is appended to its
/// stream in Redis, which gives it its offset, and reaches this node's
/// subscribers (and every other node's) from the key's channel. A key
/// Redis does not take goes to the in-memory history (this node's own
/// epoch, so no client recovers across it) and is marked for its Redis
/// epoch to end.
pub struct SharedPublication {
    plugin: Lease,
    keys: Vec<Arc<str>>,
    data: Box<str>,
    /// Per key: Redis' answer to come (`None`: not queued).
    answers: Vec<Option<oneshot::Receiver<Option<Position>>>>,
}

impl SharedPublication {
    async fn receipt(
        self,
        registry: &Registry,
        history: &History,
        redis: Option<&RedisBroker>,
    ) -> Receipt {
        let SharedPublication {
            plugin,
            keys,
            data,
            answers,
        } = self;
        let mut receipt = Receipt {
            route: Arc::clone(&plugin.route),
            keys: Vec::new(),
            delivered: 0,
            dropped: 0,
            cluster: Some(Cluster::Ok),
            key_json: None,
        };
        for (key, answer) in keys.iter().zip(answers) {
            let position = match answer {
                Some(answer) => answer.await.ok().flatten(),
                None => None,
            };
            match position {
                Some(_) => receipt.delivered += registry.subscriber_count(key),
                None => {
                    if let Some(redis) = redis {
                        redis.mark_dirty(key);
                    }
                    let fan_out = history.publish(
                        registry,
                        &plugin.route,
                        &plugin.retention,
                        plugin.delivery,
                        std::slice::from_ref(key),
                        &data,
                    );
                    receipt.delivered += fan_out.delivered;
                    receipt.dropped += fan_out.dropped;
                    receipt.cluster = Some(Cluster::Unavailable);
                }
            }
        }
        receipt.keys = keys;
        receipt
    }
}
