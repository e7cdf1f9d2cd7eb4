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
//!
//! Beside it, an index by connection records what each connection holds:
//! topic, route, the request it was made with and its current keys. It is
//! the one record of a connection's subscriptions, so that when a route's
//! plugin is replaced the host can re-resolve every subscription with the
//! new plugin (its keys may change, its topic does not), and when a route is
//! removed it can end them, without asking each connection.
//!
//! Both indexes are private: callers see one facade ([`Registry::add`],
//! [`Registry::remove`], [`Registry::remove_conn`], [`Registry::rekey`],
//! [`Registry::remove_route`], [`Registry::publish`]) that keeps them in
//! step. Lock order, everywhere: a connection shard, then key shards, one
//! at a time; a publication takes key shards only.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasher, RandomState},
    sync::Arc,
};

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::outbox::{Frame, Outbox, PushError};
use crate::{plugin::DeliveryPolicy, protocol};

/// Identifies a connection for its lifetime.
pub type ConnId = u64;

const SHARDS: usize = 64;

type Shard = HashMap<Arc<str>, KeyEntry>;

pub struct Registry {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    /// Connection -> topic -> what it holds; sharded by connection id.
    conns: Box<[Mutex<ConnShard>]>,
}

type ConnShard = HashMap<ConnId, HashMap<Arc<str>, Held>>;

/// One subscription of one connection.
struct Held {
    route: Arc<str>,
    /// The request as canonical JSON (object keys sorted).
    request: Arc<str>,
    keys: Vec<Arc<str>>,
    /// SHA-256 of the plugin version that resolved `keys`.
    resolved_by: Arc<str>,
    outbox: Arc<Outbox>,
}

/// A subscription as the host-wide operations (upgrade, removal) see it.
#[derive(Clone)]
pub struct HeldSubscription {
    pub conn: ConnId,
    pub topic: Arc<str>,
    pub request: Arc<str>,
    pub resolved_by: Arc<str>,
}

/// A new subscription of a connection.
pub struct NewSubscription<'a> {
    pub conn: ConnId,
    pub outbox: &'a Arc<Outbox>,
    pub route: &'a Arc<str>,
    pub topic: &'a Arc<str>,
    pub request: &'a serde_json::Value,
    pub keys: &'a [Arc<str>],
    pub resolved_by: &'a str,
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

/// The two steps of [`Registry::rekey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rekey {
    Add,
    Retire,
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
            conns: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Registry {
    /// Record a connection's subscription and register it under its keys.
    /// Returns false (and changes nothing) if the connection already holds
    /// this topic.
    pub fn add(&self, new: NewSubscription<'_>) -> bool {
        let mut conns = self.conns_of(new.conn);
        let held = conns.entry(new.conn).or_default();
        if held.contains_key(new.topic) {
            return false;
        }
        self.attach(new.route, new.topic, new.keys, new.conn, new.outbox);
        held.insert(
            Arc::clone(new.topic),
            Held {
                route: Arc::clone(new.route),
                request: Arc::from(new.request.to_string()),
                keys: new.keys.to_vec(),
                resolved_by: Arc::from(new.resolved_by),
                outbox: Arc::clone(new.outbox),
            },
        );
        true
    }

    /// End a connection's subscription: the one named `topic`, else the one
    /// to `route` made with the same `request` (a plugin upgraded since the
    /// client subscribed may name the same request differently). Returns
    /// the topic removed.
    pub fn remove(
        &self,
        conn: ConnId,
        route: &str,
        topic: &str,
        request: &serde_json::Value,
    ) -> Option<Arc<str>> {
        let mut conns = self.conns_of(conn);
        let held = conns.get_mut(&conn)?;
        let name = match held.get_key_value(topic) {
            Some((name, _)) => Arc::clone(name),
            None => {
                let request = request.to_string();
                let (name, _) = held
                    .iter()
                    .find(|(_, h)| &*h.route == route && *h.request == *request)?;
                Arc::clone(name)
            }
        };
        let h = held.remove(&name)?;
        self.detach(&name, &h.keys, conn);
        if held.is_empty() {
            conns.remove(&conn);
        }
        Some(name)
    }

    /// Whether `conn` holds a subscription named `topic`.
    pub fn holds(&self, conn: ConnId, topic: &str) -> bool {
        self.conns_of(conn)
            .get(&conn)
            .is_some_and(|held| held.contains_key(topic))
    }

    /// Subscriptions `conn` holds.
    pub fn held_count(&self, conn: ConnId) -> usize {
        self.conns_of(conn).get(&conn).map_or(0, HashMap::len)
    }

    /// End every subscription of `conn` (it disconnected).
    pub fn remove_conn(&self, conn: ConnId) {
        let held = self.conns_of(conn).remove(&conn);
        for (topic, h) in held.into_iter().flatten() {
            self.detach(&topic, &h.keys, conn);
        }
    }

    /// Every subscription to `route`, across connections.
    pub fn held_of_route(&self, route: &str) -> Vec<HeldSubscription> {
        let mut found = Vec::new();
        for shard in self.conns.iter() {
            let shard = shard.lock();
            for (conn, held) in shard.iter() {
                for (topic, h) in held.iter().filter(|(_, h)| &*h.route == route) {
                    found.push(HeldSubscription {
                        conn: *conn,
                        topic: Arc::clone(topic),
                        request: Arc::clone(&h.request),
                        resolved_by: Arc::clone(&h.resolved_by),
                    });
                }
            }
        }
        found
    }

    /// Move a subscription to the keys a new plugin version resolved.
    ///
    /// Done in two steps around the route table swap, so that no update is
    /// lost or delivered twice: `Rekey::Add` (before the swap) registers the
    /// subscription under `keys` as well as its old keys, so a publication
    /// resolved by either version reaches it exactly once;
    /// `Rekey::Retire` (after publications resolved by the old version have
    /// finished) drops the old keys not in `keys`.
    pub fn rekey(&self, sub: &HeldSubscription, keys: &[Arc<str>], resolved_by: &str, step: Rekey) {
        let mut conns = self.conns_of(sub.conn);
        let Some(h) = conns
            .get_mut(&sub.conn)
            .and_then(|held| held.get_mut(&sub.topic))
        else {
            return;
        };
        match step {
            Rekey::Add => {
                let added: Vec<Arc<str>> = keys
                    .iter()
                    .filter(|k| !h.keys.contains(k))
                    .cloned()
                    .collect();
                self.attach(&h.route, &sub.topic, &added, sub.conn, &h.outbox);
                h.keys.extend(added);
            }
            Rekey::Retire => {
                let (keep, retired): (Vec<_>, Vec<_>) =
                    h.keys.drain(..).partition(|k| keys.contains(k));
                self.detach(&sub.topic, &retired, sub.conn);
                h.keys = keep;
                h.resolved_by = Arc::from(resolved_by);
            }
        }
    }

    /// End every subscription to `route` (it was removed). Returns each
    /// affected connection's outbox with the topics it lost.
    pub fn remove_route(&self, route: &str) -> Vec<(Arc<Outbox>, Vec<Arc<str>>)> {
        let mut ended = Vec::new();
        for shard in self.conns.iter() {
            let mut shard = shard.lock();
            for (conn, held) in shard.iter_mut() {
                let topics: Vec<Arc<str>> = held
                    .iter()
                    .filter(|(_, h)| &*h.route == route)
                    .map(|(t, _)| Arc::clone(t))
                    .collect();
                let mut outbox = None;
                for topic in &topics {
                    if let Some(h) = held.remove(topic) {
                        self.detach(topic, &h.keys, *conn);
                        outbox = Some(h.outbox);
                    }
                }
                if let Some(outbox) = outbox {
                    ended.push((outbox, topics));
                }
            }
            shard.retain(|_, held| !held.is_empty());
        }
        ended
    }

    /// Register `(conn, topic)` under each of `keys`. Idempotent.
    fn attach(
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
    fn detach(&self, topic: &str, keys: &[Arc<str>], conn: ConnId) {
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
    /// `policy` decides what happens to a subscriber whose queue is full.
    pub fn publish<K: AsRef<str>>(&self, keys: &[K], data: &str, policy: DeliveryPolicy) -> FanOut {
        let latest_value = policy == DeliveryPolicy::LatestValue;
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

    /// Total number of keys with at least one subscriber.
    pub fn key_count(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    fn conns_of(&self, conn: ConnId) -> MutexGuard<'_, ConnShard> {
        self.conns[(conn as usize) % SHARDS].lock()
    }

    fn shard_of(&self, key: &str) -> &RwLock<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    fn read(&self, key: &str) -> RwLockReadGuard<'_, Shard> {
        self.shard_of(key).read()
    }

    fn write(&self, key: &str) -> RwLockWriteGuard<'_, Shard> {
        self.shard_of(key).write()
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

    const QUEUE_ALL: DeliveryPolicy = DeliveryPolicy::QueueAll;

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
        reg.attach(&route, &arc("q:ab"), &[arc("q:a"), arc("q:b")], 1, &a);
        reg.attach(&route, &arc("q:a"), &[arc("q:a")], 2, &b);
        assert_eq!(reg.publish(&["q:a"], "1", QUEUE_ALL).delivered, 2);
        assert_eq!(reg.publish(&["q:a", "q:b"], "2", QUEUE_ALL).delivered, 2);
        let got_a = drain(&a).await;
        assert_eq!(got_a.len(), 2);
        assert!(got_a.iter().all(|f| f.contains(r#""topic":"q:ab""#)));
        assert_eq!(drain(&b).await.len(), 2);

        reg.detach("q:ab", &[arc("q:a"), arc("q:b")], 1);
        assert!(!reg.has_subscribers("q:b"));
        assert_eq!(reg.subscriber_count("q:a"), 1);
        reg.detach("q:a", &[arc("q:a")], 2);
        assert_eq!(reg.key_count(), 0);
        assert_eq!(reg.publish(&["q:a"], "3", QUEUE_ALL), FanOut::default());
    }

    #[tokio::test]
    async fn rekeying_reaches_each_subscription_once_at_every_step() {
        let reg = Registry::default();
        let outbox = Arc::new(Outbox::new(1 << 16));
        let (route, topic) = (arc("bars"), arc("bars:old"));
        let request = serde_json::json!({"symbol": "AAPL"});
        assert!(reg.add(NewSubscription {
            conn: 1,
            outbox: &outbox,
            route: &route,
            topic: &topic,
            request: &request,
            keys: &[arc("bars:old")],
            resolved_by: "v1",
        }));
        assert!(reg.holds(1, "bars:old"));
        let held = reg.held_of_route("bars");
        assert_eq!(held.len(), 1);
        assert_eq!(&*held[0].request, r#"{"symbol":"AAPL"}"#);

        // Between the steps, a publication resolved by either version
        // arrives once, under the topic the client knows.
        reg.rekey(&held[0], &[arc("bars:new")], "v2", Rekey::Add);
        assert_eq!(reg.publish(&["bars:old"], "1", QUEUE_ALL).delivered, 1);
        assert_eq!(reg.publish(&["bars:new"], "2", QUEUE_ALL).delivered, 1);
        reg.rekey(&held[0], &[arc("bars:new")], "v2", Rekey::Retire);
        assert_eq!(reg.publish(&["bars:old"], "3", QUEUE_ALL).delivered, 0);
        assert_eq!(reg.publish(&["bars:new"], "4", QUEUE_ALL).delivered, 1);
        let got = drain(&outbox).await;
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|f| f.contains(r#""topic":"bars:old""#)));
        assert_eq!(&*reg.held_of_route("bars")[0].resolved_by, "v2");

        // Unsubscribing by the original request finds it under its old topic.
        assert_eq!(
            reg.remove(1, "bars", "bars:v2-name", &request).as_deref(),
            Some("bars:old")
        );
        assert_eq!(reg.key_count(), 0);
        assert_eq!(reg.held_count(1), 0);
    }

    #[test]
    fn removing_a_route_ends_only_its_subscriptions() {
        let reg = Registry::default();
        let outbox = Arc::new(Outbox::new(1 << 16));
        let request = serde_json::json!({});
        for (route, topic) in [("a", "a:1"), ("a", "a:2"), ("b", "b:1")] {
            reg.add(NewSubscription {
                conn: 7,
                outbox: &outbox,
                route: &arc(route),
                topic: &arc(topic),
                request: &request,
                keys: &[arc(topic)],
                resolved_by: "x",
            });
        }
        let ended = reg.remove_route("a");
        assert_eq!(ended.len(), 1);
        let mut topics: Vec<&str> = ended[0].1.iter().map(|t| &**t).collect();
        topics.sort();
        assert_eq!(topics, ["a:1", "a:2"]);
        assert_eq!(reg.held_count(7), 1);
        assert!(reg.has_subscribers("b:1") && !reg.has_subscribers("a:1"));
    }
}
