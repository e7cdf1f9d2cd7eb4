//! How publications travel between nodes: the broker engine.
//!
//! * In memory (the default): one node. A publication is delivered to this
//!   node's subscribers and goes nowhere else; the engine adds nothing to
//!   the publish path (a match on [`Broker::Memory`]).
//! * Redis (`--redis-url`, [`redis`]): the publishing node delivers to its
//!   own subscribers directly, as in memory, and publishes the update to
//!   Redis, where the other nodes that have subscribers for its keys
//!   receive it and deliver it to theirs. Each subscriber gets it once.
//!
//! Plugins, reloads and the AsyncAPI document stay per node: the broker
//! carries keys and data, already resolved and checked by the publishing
//! node's plugin.

pub mod redis;

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::oneshot;

/// Whether the other nodes were given an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cluster {
    /// Redis took it: every node with subscribers for its keys gets it.
    Ok,
    /// Redis is unreachable: only this node's subscribers got it.
    Unavailable,
}

/// The broker engine.
pub enum Broker {
    /// One node.
    Memory,
    /// Several nodes, through Redis.
    Redis(Arc<redis::RedisBroker>),
}

/// A publication handed to the broker, whose fate may be known later.
pub enum Ticket {
    /// One node: nobody else to tell.
    Local,
    Known(Cluster),
    Pending(oneshot::Receiver<Cluster>),
}

impl Ticket {
    /// What became of it (`None`: one node).
    pub async fn outcome(self) -> Option<Cluster> {
        match self {
            Ticket::Local => None,
            Ticket::Known(cluster) => Some(cluster),
            // The sender always answers; dropped means the broker stopped.
            Ticket::Pending(rx) => Some(rx.await.unwrap_or(Cluster::Unavailable)),
        }
    }
}

/// The broker's state, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerState {
    /// `memory` or `redis`.
    pub engine: &'static str,
    /// Whether the other nodes can be reached now (always true in memory).
    pub up: bool,
    /// This node's id in the cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    /// Redis channels this node is subscribed to (one per wanted key).
    pub channels: usize,
    /// Updates handed to Redis, refused while it was unreachable, and
    /// received from other nodes.
    pub sent: u64,
    pub unsent: u64,
    pub received: u64,
    /// Other nodes that want some key now.
    pub peers: usize,
}

impl Broker {
    /// Hand an update, delivered here already, to the other nodes.
    #[inline]
    pub fn publish(&self, route: &Arc<str>, keys: &[Arc<str>], data: &str) -> Ticket {
        match self {
            Broker::Memory => Ticket::Local,
            Broker::Redis(redis) => redis.publish(route, keys, data),
        }
    }

    pub fn state(&self) -> BrokerState {
        match self {
            Broker::Memory => BrokerState {
                engine: "memory",
                up: true,
                node: None,
                channels: 0,
                sent: 0,
                unsent: 0,
                received: 0,
                peers: 0,
            },
            Broker::Redis(redis) => redis.state(),
        }
    }
}
