//! Who is subscribed to what, and the fan-out of updates.
//!
//! The registry maps a routing *key* to the subscriptions it reaches. A
//! subscription is `(connection, topic)`: the topic is the name the client
//! knows it by, sent in every update frame it receives, and may differ from
//! the key (a quotes subscription to AAPL and MSFT is reached by the key of
//! each symbol). Under each key, subscriptions are grouped by topic so that
//! an update is encoded once per topic and the same bytes are queued to every
//! member of the group.
//!
//! The map is sharded by key hash behind `RwLock`s: publishes only read, so
//! publishers to different keys, and to the same key, do not contend;
//! subscribe and unsubscribe write one shard.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasher, RandomState},
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use crate::{
    outbox::{Frame, Outbox, PushError},
    protocol,
};

/// Identifies a connection for its lifetime.
pub type ConnId = u64;

const SHARDS: usize = 64;

type Shard = HashMap<Arc<str>, KeyEntry>;

pub struct Registry {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
}

struct KeyEntry {
    route: Arc<str>,
    groups: HashMap<Arc<str>, Group>,
}

/// The subscriptions that share a topic under one key.
#[derive(Default)]
struct Group {
    /// A vector for fast iteration during fan-out; `index` makes removal O(1).
    members: Vec<(ConnId, Arc<Outbox>)>,
    index: HashMap<ConnId, usize>,
}

impl Group {
    fn insert(&mut self, conn: ConnId, outbox: &Arc<Outbox>) {
        if !self.index.contains_key(&conn) {
            self.index.insert(conn, self.members.len());
            self.members.push((conn, Arc::clone(outbox)));
        }
    }

    fn remove(&mut self, conn: ConnId) {
        if let Some(pos) = self.index.remove(&conn) {
            self.members.swap_remove(pos);
            if let Some((moved, _)) = self.members.get(pos) {
                self.index.insert(*moved, pos);
            }
        }
    }
}

/// What one publication reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    /// Frames queued to subscribers.
    pub delivered: usize,
    /// Subscribers disconnected because their queue was full.
    pub dropped: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Registry {
    /// Register `(conn, topic)` under each of `keys`. Idempotent.
    pub fn subscribe(
        &self,
        route: &Arc<str>,
        topic: &Arc<str>,
        keys: &[Arc<str>],
        conn: ConnId,
        outbox: &Arc<Outbox>,
    ) {
        for key in keys {
            let mut shard = self.write(key);
            let entry = shard.entry(Arc::clone(key)).or_insert_with(|| KeyEntry {
                route: Arc::clone(route),
                groups: HashMap::new(),
            });
            entry
                .groups
                .entry(Arc::clone(topic))
                .or_default()
                .insert(conn, outbox);
        }
    }

    /// Remove `(conn, topic)` from each of `keys`. Removing what is not
    /// there is a no-op.
    pub fn unsubscribe(&self, topic: &str, keys: &[Arc<str>], conn: ConnId) {
        for key in keys {
            let mut shard = self.write(key);
            let Some(entry) = shard.get_mut(&**key) else {
                continue;
            };
            if let Some(group) = entry.groups.get_mut(topic) {
                group.remove(conn);
                if group.members.is_empty() {
                    entry.groups.remove(topic);
                }
            }
            if entry.groups.is_empty() {
                shard.remove(&**key);
            }
        }
    }

    /// Queue `data` (compact JSON) to every subscription reached by `keys`.
    /// A subscription reached by several of the keys receives it once.
    pub fn publish<K: AsRef<str>>(&self, keys: &[K], data: &str) -> FanOut {
        self.publish_with(keys, data, false)
    }

    /// [`Registry::publish`]; with `latest_value`, a slow subscriber's queued
    /// update of the same topic is replaced instead of the subscriber being
    /// disconnected (the route's delivery policy).
    pub fn publish_with<K: AsRef<str>>(
        &self,
        keys: &[K],
        data: &str,
        latest_value: bool,
    ) -> FanOut {
        let mut out = FanOut::default();
        if let [key] = keys {
            let shard = self.read(key.as_ref());
            if let Some(entry) = shard.get(key.as_ref()) {
                for (topic, group) in &entry.groups {
                    let frame = Frame::from(protocol::update_frame(&entry.route, topic, data));
                    let latest = latest_value.then_some(topic);
                    for (_, outbox) in &group.members {
                        deliver(outbox, &frame, latest, &mut out);
                    }
                }
            }
            return out;
        }
        // Several keys: encode once per topic, deliver once per subscription.
        let mut frames: HashMap<Arc<str>, Frame> = HashMap::new();
        let mut seen: HashSet<(ConnId, Arc<str>)> = HashSet::new();
        for key in keys {
            let shard = self.read(key.as_ref());
            let Some(entry) = shard.get(key.as_ref()) else {
                continue;
            };
            for (topic, group) in &entry.groups {
                let frame = frames.entry(Arc::clone(topic)).or_insert_with(|| {
                    Frame::from(protocol::update_frame(&entry.route, topic, data))
                });
                let latest = latest_value.then_some(topic);
                for (conn, outbox) in &group.members {
                    if seen.insert((*conn, Arc::clone(topic))) {
                        deliver(outbox, frame, latest, &mut out);
                    }
                }
            }
        }
        out
    }

    /// How many subscriptions `key` reaches.
    pub fn subscriber_count(&self, key: &str) -> usize {
        let shard = self.read(key);
        shard
            .get(key)
            .map_or(0, |e| e.groups.values().map(|g| g.members.len()).sum())
    }

    /// Whether publishing to `key` would reach anyone (the seed's
    /// `has_subscribers`).
    pub fn has_subscribers(&self, key: &str) -> bool {
        self.read(key).contains_key(key)
    }

    /// Every `(connection, topic)` subscribed to a key of `route`.
    pub fn subscriptions_of_route(&self, route: &str) -> Vec<(ConnId, Arc<Outbox>, Arc<str>)> {
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            for entry in shard.values().filter(|e| &*e.route == route) {
                for (topic, group) in &entry.groups {
                    for (conn, outbox) in &group.members {
                        if seen.insert((*conn, Arc::clone(topic))) {
                            found.push((*conn, Arc::clone(outbox), Arc::clone(topic)));
                        }
                    }
                }
            }
        }
        found
    }

    /// Total number of keys with at least one subscriber.
    pub fn key_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    fn shard_of(&self, key: &str) -> &RwLock<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    fn read(&self, key: &str) -> RwLockReadGuard<'_, Shard> {
        // The maps stay consistent even if a holder panicked: recover.
        self.shard_of(key).read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, key: &str) -> RwLockWriteGuard<'_, Shard> {
        self.shard_of(key)
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn deliver(outbox: &Outbox, frame: &Frame, latest: Option<&Arc<str>>, out: &mut FanOut) {
    match outbox.push_update(frame.clone(), latest) {
        Ok(()) => out.delivered += 1,
        Err(PushError::Overflow) => out.dropped += 1,
        Err(PushError::Closed) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn arc(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    async fn drain(outbox: &Outbox) -> Vec<String> {
        let mut batch = VecDeque::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(10),
            outbox.next_batch(&mut batch),
        )
        .await;
        batch.iter().map(|f| f.to_string()).collect()
    }

    #[tokio::test]
    async fn fans_out_once_per_subscription_under_its_topic() {
        let reg = Registry::default();
        let (a, b) = (
            Arc::new(Outbox::new(1 << 16)),
            Arc::new(Outbox::new(1 << 16)),
        );
        let route = arc("q");
        // a: one subscription reached by keys k1 and k2; b: reached by k1 only.
        reg.subscribe(&route, &arc("q:ab"), &[arc("q:a"), arc("q:b")], 1, &a);
        reg.subscribe(&route, &arc("q:a"), &[arc("q:a")], 2, &b);
        assert_eq!(reg.publish(&["q:a"], "1").delivered, 2);
        assert_eq!(reg.publish(&["q:a", "q:b"], "2").delivered, 2);
        let got_a = drain(&a).await;
        assert_eq!(got_a.len(), 2);
        assert!(got_a.iter().all(|f| f.contains(r#""topic":"q:ab""#)));
        assert_eq!(drain(&b).await.len(), 2);

        reg.unsubscribe("q:ab", &[arc("q:a"), arc("q:b")], 1);
        assert!(!reg.has_subscribers("q:b"));
        assert_eq!(reg.subscriber_count("q:a"), 1);
        reg.unsubscribe("q:a", &[arc("q:a")], 2);
        assert_eq!(reg.key_count(), 0);
        assert_eq!(reg.publish(&["q:a"], "3"), FanOut::default());
    }
}
