//! Which keys somebody wants: the keys with subscribers, and the moments a
//! key gains its first subscriber or loses its last, for publishers that
//! produce only what is wanted ([`crate::hub::Host::interest`],
//! `GET /api/v1/interest`, the demo feed).
//!
//! The registry reports a key's first attach and last detach on this
//! node ([`Interest::local`]); with the Redis broker, the other nodes' wanted
//! keys are added ([`Interest::remote_set`], [`Interest::remote_change`]),
//! so that a key is wanted while any node has a subscriber. Events are
//! cluster-wide transitions: a key wanted on two nodes becomes unwanted only
//! when the second lets go.
//!
//! A stream starts with a snapshot taken under the same lock that orders
//! the events, so it neither misses nor repeats one. Its event queue is
//! bounded (a broadcast channel): a stream that falls behind starts again
//! from a fresh snapshot ([`InterestEvent::Snapshot`] again) rather than
//! holding events without bound.

use std::{
    collections::hash_map::Entry,
    sync::{Arc, OnceLock},
};

use parking_lot::Mutex;

use super::hashing::HashMap;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

/// Events a stream may fall behind by before it starts over.
const QUEUE: usize = 4096;

/// What one node wants: (route, key, subscribers).
pub(crate) type NodeKeys = Vec<(Arc<str>, Arc<str>, usize)>;

/// A key somebody wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wanted {
    pub route: Arc<str>,
    pub key: Arc<str>,
    /// Subscriptions the key reaches: this node's now, plus the other
    /// nodes' as of their last report.
    pub subscribers: usize,
}

/// What an interest stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterestEvent {
    /// Every key wanted now. The first event, and again after the stream
    /// fell behind: it replaces what the reader knew.
    Snapshot(Vec<Wanted>),
    /// A key gained its first subscriber (anywhere in the cluster).
    First { route: Arc<str>, key: Arc<str> },
    /// A key lost its last subscriber (everywhere).
    Last { route: Arc<str>, key: Arc<str> },
}

#[derive(Debug, Clone)]
struct Change {
    route: Arc<str>,
    key: Arc<str>,
    wanted: bool,
}

/// One key's wanters.
struct Want {
    route: Arc<str>,
    local: bool,
    /// Other nodes wanting it -> their subscriber count.
    remote: HashMap<Arc<str>, usize>,
}

impl Want {
    fn wanted(&self) -> bool {
        self.local || !self.remote.is_empty()
    }
}

/// The keys wanted, and the streams following them.
/// Counts a key's local subscribers.
type Counter = Box<dyn Fn(&str) -> usize + Send + Sync>;

pub struct Interest {
    keys: Mutex<HashMap<Arc<str>, Want>>,
    events: broadcast::Sender<Change>,
    /// Local first/last changes for the broker, which (un)subscribes the
    /// node in batches; set only with a broker that needs them.
    changes: OnceLock<mpsc::UnboundedSender<(Arc<str>, Arc<str>)>>,
    /// For the subscriber counts of a snapshot: the registry's count of a
    /// key (a function, so that this module and the registry, which reports
    /// to it, do not depend on each other).
    counter: OnceLock<Counter>,
}

impl Default for Interest {
    fn default() -> Self {
        Interest {
            keys: Mutex::default(),
            events: broadcast::Sender::new(QUEUE),
            changes: OnceLock::new(),
            counter: OnceLock::new(),
        }
    }
}

impl Interest {
    /// Count a key's subscribers with `counter` (set once, by the host).
    pub(crate) fn count_with(&self, counter: impl Fn(&str) -> usize + Send + Sync + 'static) {
        let _ = self.counter.set(Box::new(counter));
    }

    /// Send every local change to `sink` as (route, key) from now on.
    pub(crate) fn forward_local(&self, sink: mpsc::UnboundedSender<(Arc<str>, Arc<str>)>) {
        let _ = self.changes.set(sink);
    }

    /// `key` gained its first (`wanted`) or lost its last local subscriber.
    /// Called by the registry under the key's shard lock, so that one key's
    /// changes arrive in order; takes no registry lock.
    pub(crate) fn local(&self, route: &Arc<str>, key: &Arc<str>, wanted: bool) {
        let mut keys = self.keys.lock();
        if let Some(changes) = self.changes.get() {
            let _ = changes.send((Arc::clone(route), Arc::clone(key)));
        }
        match keys.entry(Arc::clone(key)) {
            Entry::Occupied(mut e) => {
                let was = e.get().wanted();
                e.get_mut().local = wanted;
                let now = e.get().wanted();
                if !now {
                    e.remove();
                }
                self.announce(route, key, was, now);
            }
            Entry::Vacant(e) if wanted => {
                e.insert(Want {
                    route: Arc::clone(route),
                    local: true,
                    remote: HashMap::default(),
                });
                self.announce(route, key, false, true);
            }
            Entry::Vacant(_) => {}
        }
    }

    /// Whether `key` has a subscriber on this node.
    pub fn locally_wanted(&self, key: &str) -> bool {
        self.keys.lock().get(key).is_some_and(|w| w.local)
    }

    /// Subscriptions `key` reaches on this node.
    pub fn local_count(&self, key: &str) -> usize {
        self.counter.get().map_or(0, |count| count(key))
    }

    /// The route of a wanted key.
    pub fn route_of(&self, key: &str) -> Option<Arc<str>> {
        self.keys.lock().get(key).map(|w| Arc::clone(&w.route))
    }

    /// Every key with a subscriber on this node, as (route, key).
    pub fn local_keys(&self) -> Vec<(Arc<str>, Arc<str>)> {
        self.keys
            .lock()
            .iter()
            .filter(|(_, w)| w.local)
            .map(|(k, w)| (Arc::clone(&w.route), Arc::clone(k)))
            .collect()
    }

    /// Node `node` wants `key` (with `subscribers`), or no longer does.
    pub(crate) fn remote_change(
        &self,
        node: &Arc<str>,
        route: &Arc<str>,
        key: &Arc<str>,
        wanted: Option<usize>,
    ) {
        let mut keys = self.keys.lock();
        self.set_remote(&mut keys, node, route, key, wanted);
    }

    /// What `node` wants now, in full (its record, read again): keys it
    /// no longer lists stop counting for it. `None`: the node is gone.
    pub(crate) fn remote_set(&self, node: &Arc<str>, wanted: Option<NodeKeys>) {
        let mut keys = self.keys.lock();
        let listed: HashMap<Arc<str>, (Arc<str>, usize)> = wanted
            .into_iter()
            .flatten()
            .map(|(route, key, n)| (key, (route, n)))
            .collect();
        let dropped: Vec<(Arc<str>, Arc<str>)> = keys
            .iter()
            .filter(|(k, w)| w.remote.contains_key(node) && !listed.contains_key(*k))
            .map(|(k, w)| (Arc::clone(&w.route), Arc::clone(k)))
            .collect();
        for (route, key) in dropped {
            self.set_remote(&mut keys, node, &route, &key, None);
        }
        for (key, (route, n)) in listed {
            self.set_remote(&mut keys, node, &route, &key, Some(n));
        }
    }

    /// The nodes other than this one that want something now.
    pub(crate) fn remote_nodes(&self) -> Vec<Arc<str>> {
        let keys = self.keys.lock();
        let mut nodes: Vec<Arc<str>> = keys
            .values()
            .flat_map(|w| w.remote.keys().cloned())
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    fn set_remote(
        &self,
        keys: &mut HashMap<Arc<str>, Want>,
        node: &Arc<str>,
        route: &Arc<str>,
        key: &Arc<str>,
        wanted: Option<usize>,
    ) {
        let want = keys.entry(Arc::clone(key)).or_insert_with(|| Want {
            route: Arc::clone(route),
            local: false,
            remote: HashMap::default(),
        });
        let was = want.wanted();
        match wanted {
            Some(n) => {
                want.remote.insert(Arc::clone(node), n);
            }
            None => {
                want.remote.remove(node);
            }
        }
        let now = want.wanted();
        let route = Arc::clone(&want.route);
        if !now {
            keys.remove(key);
        }
        self.announce(&route, key, was, now);
    }

    fn announce(&self, route: &Arc<str>, key: &Arc<str>, was: bool, now: bool) {
        // Called with `keys` locked, under which streams start following:
        // with none following, there is nothing to build or send.
        if was != now && self.events.receiver_count() > 0 {
            let _ = self.events.send(Change {
                route: Arc::clone(route),
                key: Arc::clone(key),
                wanted: now,
            });
        }
    }

    /// A stream of what is wanted: a snapshot, then every change.
    pub fn stream(self: &Arc<Self>) -> InterestStream {
        let (snapshot, events) = self.snapshot_and_follow();
        InterestStream {
            interest: Arc::clone(self),
            snapshot: Some(snapshot),
            events,
        }
    }

    fn snapshot_and_follow(&self) -> (Vec<Wanted>, broadcast::Receiver<Change>) {
        let (mut wanted, events) = {
            let keys = self.keys.lock();
            let wanted: Vec<(Wanted, bool)> = keys
                .iter()
                .map(|(k, w)| {
                    let remote: usize = w.remote.values().sum();
                    let wanted = Wanted {
                        route: Arc::clone(&w.route),
                        key: Arc::clone(k),
                        subscribers: remote,
                    };
                    (wanted, w.local)
                })
                .collect();
            (wanted, self.events.subscribe())
        };
        // Counted outside the lock: the registry calls in while holding
        // its shard locks, so this lock is never held while taking one.
        for (w, local) in &mut wanted {
            if *local {
                w.subscribers += self.local_count(&w.key);
            }
        }
        let mut wanted: Vec<Wanted> = wanted.into_iter().map(|(w, _)| w).collect();
        wanted.sort_by(|a, b| (&a.route, &a.key).cmp(&(&b.route, &b.key)));
        (wanted, events)
    }
}

/// What is wanted: [`InterestEvent::Snapshot`] first, then changes.
pub struct InterestStream {
    interest: Arc<Interest>,
    snapshot: Option<Vec<Wanted>>,
    events: broadcast::Receiver<Change>,
}

/// Why [`InterestStream::next_strict`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamEnded {
    #[error("the reader fell more than {QUEUE} changes behind")]
    Behind,
    #[error("the host is gone")]
    Closed,
}

impl InterestStream {
    /// The next event; after falling behind, a fresh snapshot.
    pub async fn next(&mut self) -> Option<InterestEvent> {
        loop {
            match self.next_strict().await {
                Ok(event) => return Some(event),
                Err(StreamEnded::Closed) => return None,
                Err(StreamEnded::Behind) => {
                    let (snapshot, events) = self.interest.snapshot_and_follow();
                    self.events = events;
                    self.snapshot = Some(snapshot);
                }
            }
        }
    }

    /// The next event, or an error once the reader fell behind (for a
    /// remote reader, who is better told to reconnect).
    pub async fn next_strict(&mut self) -> Result<InterestEvent, StreamEnded> {
        if let Some(snapshot) = self.snapshot.take() {
            return Ok(InterestEvent::Snapshot(snapshot));
        }
        match self.events.recv().await {
            Ok(Change { route, key, wanted }) => Ok(if wanted {
                InterestEvent::First { route, key }
            } else {
                InterestEvent::Last { route, key }
            }),
            Err(broadcast::error::RecvError::Lagged(_)) => Err(StreamEnded::Behind),
            Err(broadcast::error::RecvError::Closed) => Err(StreamEnded::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arc(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[tokio::test]
    async fn a_key_is_wanted_while_any_node_wants_it() {
        let interest = Arc::new(Interest::default());
        let (r, k, b) = (arc("q"), arc("q:1"), arc("node-b"));
        interest.local(&r, &k, true);
        let mut s = interest.stream();
        assert_eq!(
            s.next().await,
            Some(InterestEvent::Snapshot(vec![Wanted {
                route: r.clone(),
                key: k.clone(),
                subscribers: 0
            }]))
        );
        interest.remote_change(&b, &r, &k, Some(2));
        interest.local(&r, &k, false);
        interest.remote_set(&b, None);
        interest.remote_set(&b, Some(vec![(r.clone(), k.clone(), 1)]));
        assert_eq!(
            s.next().await,
            Some(InterestEvent::Last {
                route: r.clone(),
                key: k.clone()
            })
        );
        assert_eq!(
            s.next().await,
            Some(InterestEvent::First {
                route: r.clone(),
                key: k.clone()
            })
        );
        assert_eq!(interest.remote_nodes(), [b]);
        assert!(!interest.locally_wanted("q:1"));
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_starts_over_from_a_snapshot() {
        let interest = Arc::new(Interest::default());
        let mut s = interest.stream();
        assert_eq!(s.next().await, Some(InterestEvent::Snapshot(vec![])));
        let r = arc("q");
        for i in 0..QUEUE + 10 {
            let key = arc(&format!("q:{i}"));
            interest.local(&r, &key, true);
            interest.local(&r, &key, false);
        }
        interest.local(&r, &arc("q:kept"), true);
        match s.next().await {
            Some(InterestEvent::Snapshot(keys)) => {
                assert_eq!(keys.len(), 1);
                assert_eq!(&*keys[0].key, "q:kept");
            }
            other => panic!("{other:?}"),
        }
    }
}
