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
//! A connection's subscriptions are also indexed by (route, canonical
//! request), so that a client re-subscribing or unsubscribing with the
//! request it subscribed with finds what it holds without asking the
//! plugin, whatever the current version would name it.
//!
//! Each (key, topic) group has a conflation slot: a latest-value update
//! replaces the one queued for the same slot, so a subscription reached by
//! several keys (quotes of AAPL and MSFT) keeps the newest of each.
//!
//! The registry also counts subscriptions and keys host-wide, for the
//! bounds a new subscription must fit in ([`Bounds`]).
//!
//! Both indexes are private: callers see one facade ([`Registry::add`],
//! [`Registry::remove_request`], [`Registry::remove_topic`],
//! [`Registry::remove_conn`], [`Registry::rekey`],
//! [`Registry::remove_route`], [`Registry::publish`]) that keeps them in
//! step. Lock order, everywhere: a connection shard, then key shards, one
//! at a time; a publication takes key shards only.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{
    hashing::{HashMap, RandomState},
    interest::Interest,
    outbox::{Frame, Outbox, PushError},
    scan_map::ScanMap,
};
use crate::{plugin::DeliveryPolicy, protocol};

/// Identifies a connection for its lifetime.
pub type ConnId = u64;

const SHARDS: usize = 64;

type Shard = HashMap<Arc<str>, KeyEntry>;

pub struct Registry {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    /// Connection -> what it holds; sharded by connection id.
    conns: Box<[Mutex<ConnShard>]>,
    /// Subscriptions held, host-wide.
    subscriptions: AtomicUsize,
    /// Keys with at least one subscriber, plus those reserved by
    /// subscriptions being added.
    keys: AtomicUsize,
    /// Told when a key gains its first subscriber or loses its last.
    interest: Option<Arc<Interest>>,
}

type ConnShard = HashMap<ConnId, ConnHeld>;

/// What one connection holds.
#[derive(Default)]
struct ConnHeld {
    /// Topic -> subscription.
    topics: ScanMap<Arc<str>, Held>,
    /// Route -> canonical request -> topic.
    requests: ScanMap<Arc<str>, ScanMap<Arc<str>, Arc<str>>>,
}

impl ConnHeld {
    fn take(&mut self, topic: &str) -> Option<(Arc<str>, Held)> {
        let (topic, held) = self.topics.remove(topic)?;
        if let Some(by_request) = self.requests.get_mut(&held.route) {
            by_request.remove(&held.request);
            if by_request.is_empty() {
                self.requests.remove(&held.route);
            }
        }
        Some((topic, held))
    }
}

/// One subscription of one connection.
struct Held {
    route: Arc<str>,
    /// The canonical request (unknown fields dropped, keys sorted).
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
    /// The canonical request (see [`HeldSubscription::request`]).
    pub request: &'a Arc<str>,
    pub keys: &'a [Arc<str>],
    pub resolved_by: &'a Arc<str>,
}

/// What a new subscription must fit in.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Subscriptions one connection may hold.
    pub per_connection: usize,
    /// Subscriptions held by all connections together.
    pub subscriptions: usize,
    /// Distinct keys with subscribers, host-wide.
    pub keys: usize,
}

/// Why a subscription was not added. The text is the error reply's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitReached {
    #[error("subscription limit reached ({0} per connection)")]
    PerConnection(usize),
    #[error("host-wide subscription limit reached ({0} subscriptions); try again later")]
    Subscriptions(usize),
    #[error("host-wide key limit reached ({0} routing keys); try again later")]
    Keys(usize),
}

struct KeyEntry {
    route: Arc<str>,
    groups: ScanMap<Arc<str>, Group>,
}

/// The subscriptions that share a topic under one key.
struct Group {
    /// The conflation slot of (key, topic); unique for the process lifetime.
    slot: u64,
    /// The topic as a JSON string, encoded once for every frame (and for
    /// the publish reply, when a key is its topic: see [`FanOut::key_json`]).
    topic_json: Arc<str>,
    members: ScanMap<ConnId, Arc<Outbox>>,
}

static NEXT_SLOT: AtomicU64 = AtomicU64::new(1);

impl Group {
    fn new(topic: &str) -> Group {
        Group {
            slot: NEXT_SLOT.fetch_add(1, Ordering::Relaxed),
            topic_json: Arc::from(protocol::json_string(topic)),
            members: ScanMap::default(),
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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanOut {
    /// Frames queued to subscribers.
    pub delivered: usize,
    /// Subscribers disconnected because their queue was full.
    pub dropped: usize,
    /// The key published to, as a JSON string, when subscribers have it as
    /// their topic (encoded when they subscribed): what the publish reply
    /// lists, without escaping the key again per update.
    pub key_json: Option<Arc<str>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            conns: (0..SHARDS).map(|_| Mutex::default()).collect(),
            subscriptions: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
            interest: None,
        }
    }
}

/// Takes `n` from a counter when dropped (a reservation), unless kept.
struct Reserved<'a>(&'a AtomicUsize, usize);

impl Reserved<'_> {
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::AcqRel);
    }
}

/// Add `n` to `counter` unless that would pass `max`.
fn reserve(counter: &AtomicUsize, n: usize, max: usize) -> Option<Reserved<'_>> {
    let before = counter.fetch_add(n, Ordering::AcqRel);
    let reserved = Reserved(counter, n);
    (before.saturating_add(n) <= max).then_some(reserved)
}

impl Registry {
    /// A registry that tells `interest` when a key gains its first
    /// subscriber or loses its last.
    pub fn watched(interest: Arc<Interest>) -> Registry {
        Registry {
            interest: Some(interest),
            ..Registry::default()
        }
    }

    /// Record a connection's subscription and register it under its keys,
    /// if it fits in `bounds`. Returns false (and changes nothing) if the
    /// connection already holds this topic.
    pub fn add(&self, new: NewSubscription<'_>, bounds: &Bounds) -> Result<bool, LimitReached> {
        let mut conns = self.conns_of(new.conn);
        let held = conns.entry(new.conn).or_default();
        if held.topics.contains_key(&**new.topic) {
            return Ok(false);
        }
        if held.topics.len() >= bounds.per_connection {
            return Err(LimitReached::PerConnection(bounds.per_connection));
        }
        let subscription = reserve(&self.subscriptions, 1, bounds.subscriptions)
            .ok_or(LimitReached::Subscriptions(bounds.subscriptions))?;
        // Reserved while attaching, so that concurrent subscribes cannot
        // pass the bound together; `attach` counts the keys it creates.
        let fresh = new.keys.iter().filter(|k| !self.has_subscribers(k)).count();
        let _keys =
            reserve(&self.keys, fresh, bounds.keys).ok_or(LimitReached::Keys(bounds.keys))?;
        subscription.keep();
        self.attach(new.route, new.topic, new.keys, new.conn, new.outbox);
        held.topics.insert_new(
            Arc::clone(new.topic),
            Held {
                route: Arc::clone(new.route),
                request: Arc::clone(new.request),
                keys: new.keys.to_vec(),
                resolved_by: Arc::clone(new.resolved_by),
                outbox: Arc::clone(new.outbox),
            },
        );
        held.requests
            .get_or_insert_with(new.route, ScanMap::default)
            .insert_new(Arc::clone(new.request), Arc::clone(new.topic));
        Ok(true)
    }

    /// The subscription `conn` made to `route` with `request` (canonical):
    /// its topic and current keys.
    pub fn held_by_request(
        &self,
        conn: ConnId,
        route: &str,
        request: &str,
    ) -> Option<(Arc<str>, Vec<Arc<str>>)> {
        let conns = self.conns_of(conn);
        let held = conns.get(&conn)?;
        let topic = held.requests.get(route)?.get(request)?;
        let h = held.topics.get(topic)?;
        Some((Arc::clone(topic), h.keys.clone()))
    }

    /// End the subscription `conn` made to `route` with any of `requests`
    /// (canonical); the topic removed.
    pub fn remove_request(&self, conn: ConnId, route: &str, requests: &[&str]) -> Option<Arc<str>> {
        let mut conns = self.conns_of(conn);
        let held = conns.get_mut(&conn)?;
        let by_request = held.requests.get(route)?;
        let topic = requests.iter().find_map(|r| by_request.get(*r))?;
        let topic = Arc::clone(topic);
        self.end(&mut conns, conn, &topic)
    }

    /// End `conn`'s subscription to `route` named `topic`; the topic removed.
    pub fn remove_topic(&self, conn: ConnId, route: &str, topic: &str) -> Option<Arc<str>> {
        let mut conns = self.conns_of(conn);
        let held = conns.get(&conn)?;
        if held.topics.get(topic).is_none_or(|h| &*h.route != route) {
            return None;
        }
        self.end(&mut conns, conn, topic)
    }

    fn end(&self, conns: &mut ConnShard, conn: ConnId, topic: &str) -> Option<Arc<str>> {
        let held = conns.get_mut(&conn)?;
        let (name, h) = held.take(topic)?;
        self.detach(&name, &h.keys, conn);
        self.subscriptions.fetch_sub(1, Ordering::AcqRel);
        if held.topics.is_empty() {
            conns.remove(&conn);
        }
        Some(name)
    }

    /// Whether `conn` holds a subscription named `topic`.
    pub fn holds(&self, conn: ConnId, topic: &str) -> bool {
        self.conns_of(conn)
            .get(&conn)
            .is_some_and(|held| held.topics.contains_key(topic))
    }

    /// Subscriptions `conn` holds.
    pub fn held_count(&self, conn: ConnId) -> usize {
        self.conns_of(conn)
            .get(&conn)
            .map_or(0, |held| held.topics.len())
    }

    /// Subscriptions held by all connections.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// End every subscription of `conn` (it disconnected).
    pub fn remove_conn(&self, conn: ConnId) {
        let held = self.conns_of(conn).remove(&conn);
        for (topic, h) in held.into_iter().flat_map(|held| held.topics) {
            self.detach(&topic, &h.keys, conn);
            self.subscriptions.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Every subscription to `route`, across connections.
    pub fn held_of_route(&self, route: &str) -> Vec<HeldSubscription> {
        let mut found = Vec::new();
        for shard in self.conns.iter() {
            let shard = shard.lock();
            for (conn, held) in shard.iter() {
                for (topic, h) in held.topics.iter().filter(|(_, h)| &*h.route == route) {
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
            .and_then(|held| held.topics.get_mut(&sub.topic))
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
                    .topics
                    .iter()
                    .filter(|(_, h)| &*h.route == route)
                    .map(|(t, _)| Arc::clone(t))
                    .collect();
                let mut outbox = None;
                for topic in &topics {
                    if let Some((_, h)) = held.take(topic) {
                        self.detach(topic, &h.keys, *conn);
                        self.subscriptions.fetch_sub(1, Ordering::AcqRel);
                        outbox = Some(h.outbox);
                    }
                }
                if let Some(outbox) = outbox {
                    ended.push((outbox, topics));
                }
            }
            shard.retain(|_, held| !held.topics.is_empty());
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
            let entry = shard.entry(Arc::clone(key)).or_insert_with(|| {
                self.keys.fetch_add(1, Ordering::AcqRel);
                if let Some(interest) = &self.interest {
                    interest.local(route, key, true);
                }
                KeyEntry {
                    route: Arc::clone(route),
                    groups: ScanMap::default(),
                }
            });
            let group = entry.groups.get_or_insert_with(topic, || Group::new(topic));
            group.members.insert_new(conn, Arc::clone(outbox));
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
                group.members.remove(&conn);
                if group.members.is_empty() {
                    entry.groups.remove(topic);
                }
            }
            if entry.groups.is_empty() {
                if let Some(interest) = &self.interest {
                    interest.local(&entry.route, key, false);
                }
                shard.remove(&**key);
                self.keys.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Queue `data` (compact JSON) to every subscription reached by `keys`.
    /// A subscription reached by several of the keys receives it once.
    /// `policy` decides what happens to a subscriber whose queue is full.
    pub fn publish<K: AsRef<str>>(&self, keys: &[K], data: &str, policy: DeliveryPolicy) -> FanOut {
        if let [key] = keys {
            return self.publish_key(key.as_ref(), data, policy, None);
        }
        let latest_value = policy == DeliveryPolicy::LatestValue;
        let mut out = FanOut::default();
        // Several keys: encode once per topic, deliver once per subscription.
        let mut frames: HashMap<Arc<str>, Frame> = HashMap::default();
        let mut seen: HashSet<(ConnId, Arc<str>)> = HashSet::new();
        for key in keys {
            let shard = self.read(key.as_ref());
            let Some(entry) = shard.get(key.as_ref()) else {
                continue;
            };
            for (topic, group) in entry.groups.iter() {
                let frame = frames.entry(Arc::clone(topic)).or_insert_with(|| {
                    Frame::from(protocol::update_frame_encoded(
                        &entry.route,
                        &group.topic_json,
                        data,
                    ))
                });
                let latest = latest_value.then_some(group.slot);
                for (conn, outbox) in group.members.iter() {
                    if seen.insert((*conn, Arc::clone(topic))) {
                        deliver(outbox, frame, latest, &mut out);
                    }
                }
            }
        }
        out
    }

    /// Queue `data` (compact JSON) to every subscription reached by `key`;
    /// with `at` (a route with history: the update's offset and epoch), the
    /// frames carry it, and the key when a subscription's topic differs.
    pub fn publish_key(
        &self,
        key: &str,
        data: &str,
        policy: DeliveryPolicy,
        at: Option<(u64, &str)>,
    ) -> FanOut {
        let latest_value = policy == DeliveryPolicy::LatestValue;
        let mut out = FanOut::default();
        let shard = self.read(key);
        if let Some(entry) = shard.get(key) {
            for (topic, group) in entry.groups.iter() {
                if **topic == *key {
                    out.key_json = Some(Arc::clone(&group.topic_json));
                }
                let text = match at {
                    Some((offset, epoch)) => protocol::update_frame_at_encoded(
                        &entry.route,
                        topic,
                        Some(&group.topic_json),
                        key,
                        offset,
                        epoch,
                        data,
                    ),
                    None => protocol::update_frame_encoded(&entry.route, &group.topic_json, data),
                };
                let frame = Frame::from(text);
                let latest = latest_value.then_some(group.slot);
                for outbox in group.members.values() {
                    deliver(outbox, &frame, latest, &mut out);
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

    /// Keys with subscribers as counted for [`Bounds::keys`] (the same as
    /// [`Registry::key_count`] when no subscribe is under way).
    pub fn counted_keys(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
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

fn deliver(outbox: &Outbox, frame: &Frame, latest: Option<u64>, out: &mut FanOut) {
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

    const UNBOUNDED: Bounds = Bounds {
        per_connection: usize::MAX,
        subscriptions: usize::MAX,
        keys: usize::MAX,
    };

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
        let request = arc(r#"{"symbol":"AAPL"}"#);
        assert_eq!(
            reg.add(
                NewSubscription {
                    conn: 1,
                    outbox: &outbox,
                    route: &route,
                    topic: &topic,
                    request: &request,
                    keys: &[arc("bars:old")],
                    resolved_by: &arc("v1"),
                },
                &UNBOUNDED
            ),
            Ok(true)
        );
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

        // The original request finds it under its old topic, with its new keys.
        assert_eq!(
            reg.held_by_request(1, "bars", &request),
            Some((arc("bars:old"), vec![arc("bars:new")]))
        );
        assert_eq!(reg.remove_topic(1, "bars", "bars:v2-name"), None);
        assert_eq!(
            reg.remove_request(1, "bars", &["{}", &request]).as_deref(),
            Some("bars:old")
        );
        assert_eq!(reg.key_count(), 0);
        assert_eq!(reg.counted_keys(), 0);
        assert_eq!(reg.held_count(1), 0);
        assert_eq!(reg.subscription_count(), 0);
    }

    #[test]
    fn removing_a_route_ends_only_its_subscriptions() {
        let reg = Registry::default();
        let outbox = Arc::new(Outbox::new(1 << 16));
        for (route, topic) in [("a", "a:1"), ("a", "a:2"), ("b", "b:1")] {
            let added = reg.add(
                NewSubscription {
                    conn: 7,
                    outbox: &outbox,
                    route: &arc(route),
                    topic: &arc(topic),
                    request: &arc(topic),
                    keys: &[arc(topic)],
                    resolved_by: &arc("x"),
                },
                &UNBOUNDED,
            );
            assert_eq!(added, Ok(true));
        }
        let ended = reg.remove_route("a");
        assert_eq!(ended.len(), 1);
        let mut topics: Vec<&str> = ended[0].1.iter().map(|t| &**t).collect();
        topics.sort();
        assert_eq!(topics, ["a:1", "a:2"]);
        assert_eq!(reg.held_count(7), 1);
        assert!(reg.has_subscribers("b:1") && !reg.has_subscribers("a:1"));
        assert_eq!(reg.subscription_count(), 1);
        assert_eq!(reg.counted_keys(), 1);
        assert_eq!(reg.held_by_request(7, "a", "a:1"), None);
    }

    fn sub<'a>(
        conn: ConnId,
        outbox: &'a Arc<Outbox>,
        route: &'a Arc<str>,
        topic: &'a Arc<str>,
        keys: &'a [Arc<str>],
    ) -> NewSubscription<'a> {
        NewSubscription {
            conn,
            outbox,
            route,
            topic,
            request: topic,
            keys,
            resolved_by: &VERSION,
        }
    }

    static VERSION: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| arc("x"));

    #[tokio::test]
    async fn a_large_group_finds_its_members_through_its_index() {
        // Past ScanMap's scanning size a group indexes its members: joining twice,
        // leaving from the middle (a swap) and publishing stay exact.
        let reg = Registry::default();
        let (route, topic) = (arc("q"), arc("q:hot"));
        let keys = [arc("q:hot")];
        let outboxes: Vec<Arc<Outbox>> = (0..40).map(|_| Arc::new(Outbox::new(1 << 16))).collect();
        for (conn, outbox) in outboxes.iter().enumerate() {
            for _ in 0..2 {
                reg.attach(&route, &topic, &keys, conn as ConnId, outbox);
            }
        }
        assert_eq!(reg.subscriber_count("q:hot"), 40);
        for conn in (0..40).step_by(3) {
            reg.detach(&topic, &keys, conn);
        }
        assert_eq!(reg.subscriber_count("q:hot"), 26);
        assert_eq!(reg.publish(&["q:hot"], "1", QUEUE_ALL).delivered, 26);
        for (conn, outbox) in outboxes.iter().enumerate() {
            let want = usize::from(conn % 3 != 0);
            assert_eq!(drain(outbox).await.len(), want, "conn {conn}");
        }
        for conn in 0..40 {
            reg.detach(&topic, &keys, conn);
        }
        assert_eq!(reg.key_count(), 0);
    }

    #[test]
    fn host_wide_bounds_count_subscriptions_and_distinct_keys() {
        let reg = Registry::default();
        let outbox = Arc::new(Outbox::new(1 << 16));
        let bounds = Bounds {
            per_connection: 2,
            subscriptions: 3,
            keys: 4,
        };
        let route = arc("q");
        let (t1, t2, t3, t4) = (arc("q:1"), arc("q:2"), arc("q:3"), arc("q:4"));
        let abc = [arc("q:a"), arc("q:b"), arc("q:c")];
        let de = [arc("q:d"), arc("q:e")];
        let a = [arc("q:a")];
        assert_eq!(
            reg.add(sub(1, &outbox, &route, &t1, &abc), &bounds),
            Ok(true)
        );
        // Two new keys would make five.
        assert_eq!(
            reg.add(sub(2, &outbox, &route, &t2, &de), &bounds),
            Err(LimitReached::Keys(4))
        );
        // A key already counted is free.
        assert_eq!(reg.add(sub(2, &outbox, &route, &t2, &a), &bounds), Ok(true));
        assert_eq!(reg.add(sub(2, &outbox, &route, &t3, &a), &bounds), Ok(true));
        assert_eq!(
            reg.add(sub(2, &outbox, &route, &t4, &a), &bounds),
            Err(LimitReached::PerConnection(2))
        );
        assert_eq!(
            reg.add(sub(3, &outbox, &route, &t4, &a), &bounds),
            Err(LimitReached::Subscriptions(3))
        );
        // Holding the topic already is not a new subscription.
        assert_eq!(
            reg.add(sub(2, &outbox, &route, &t2, &a), &bounds),
            Ok(false)
        );
        assert_eq!((reg.subscription_count(), reg.counted_keys()), (3, 3));
        assert_eq!(reg.remove_topic(2, "q", "q:2").as_deref(), Some("q:2"));
        assert_eq!(reg.add(sub(3, &outbox, &route, &t4, &a), &bounds), Ok(true));
        reg.remove_conn(1);
        reg.remove_conn(2);
        reg.remove_conn(3);
        assert_eq!((reg.subscription_count(), reg.counted_keys()), (0, 0));
        assert_eq!(reg.key_count(), 0);
    }

    #[tokio::test]
    async fn latest_value_conflates_per_key_of_a_subscription() {
        let reg = Registry::default();
        // Room for one update: the rest are over the limit.
        let outbox = Arc::new(Outbox::new(100));
        let route = arc("q");
        let topic = arc("q:AAPL,MSFT");
        let keys = [arc("q:AAPL"), arc("q:MSFT")];
        reg.add(sub(1, &outbox, &route, &topic, &keys), &UNBOUNDED)
            .unwrap();
        let latest = DeliveryPolicy::LatestValue;
        for data in ["1", "2", "3"] {
            reg.publish(&["q:AAPL"], &format!("{{\"AAPL\":{data}}}"), latest);
            reg.publish(&["q:MSFT"], &format!("{{\"MSFT\":{data}}}"), latest);
        }
        let got = drain(&outbox).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains(r#"{"AAPL":3}"#), "{got:?}");
        assert!(got[1].contains(r#"{"MSFT":3}"#), "{got:?}");
    }
}
