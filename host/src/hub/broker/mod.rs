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

pub mod gate;
pub mod redis;
mod report;
pub mod streams;

use std::sync::Arc;

pub use report::{BrokerState, Cluster, Ticket};

/// The broker engine.
pub enum Broker {
    /// One node.
    Memory,
    /// Several nodes, through Redis.
    Redis(Arc<redis::RedisBroker>),
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
