//! What the broker reports: the fate of a publication ([`Cluster`],
//! [`Ticket`]) and its own state ([`BrokerState`]). Apart from the engines
//! so that they and the engine switch in `broker` all depend on it, not on
//! each other.

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
