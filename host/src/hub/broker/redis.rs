//! The Redis engine: publications and interest shared between nodes.
//!
//! What lives in Redis (names under `ws-router:`):
//!
//! * `ws-router:u:<key>`: a pub/sub channel per routing key. A publishing
//!   node PUBLISHes every update to the channel of each of its keys, as
//!   `{"n":node,"s":seq,"r":route,"k":[keys],"d":data}`; a node SUBSCRIBEs
//!   only to the channels of keys with local subscribers. A node ignores
//!   its own messages (it delivered those directly), and a message it
//!   receives on several channels (an update to several keys) once: seq
//!   grows per node, and Redis delivers one node's PUBLISHes in order.
//! * `ws-router:interest`: a channel of interest changes
//!   (`{"n":node,"add":[[route,key,subscribers]...],"del":[[route,key]...]}`).
//! * `ws-router:node:<node>`: a hash per node, key -> `subscribers\troute`,
//!   of every key it wants, rewritten on each heartbeat and expiring after
//!   [`RECORD_TTL`]: a node that dies without a word stops counting then.
//! * `ws-router:nodes`: a set of the nodes that wrote a record.
//!
//! Two tasks talk to Redis, each over its own connections: the publisher
//! (one multiplexed connection; updates queued by [`RedisBroker::publish`]
//! go out in pipelines, one round trip per batch), and the subscriber (a
//! pub/sub connection for the channels, a multiplexed one for the records),
//! which (un)subscribes in batches: the registry's first-subscriber and
//! last-subscriber changes are drained and coalesced, then sent as one
//! SUBSCRIBE and one UNSUBSCRIBE, never one command per client.
//!
//! When Redis goes away, both tasks say so once, answer publications
//! "unavailable" at once, and reconnect with exponential backoff and
//! jitter; the subscriber then subscribes again to every key that still has
//! local subscribers and rewrites its record. Local delivery never waits
//! for Redis.
//!
//! Routes with retention (issue 16) keep their history in Redis too: an
//! update to such a key is one script ([`APPEND`], EVALSHA in the same
//! pipelines) that takes the key's next offset from its meta hash
//! (`ws-router:m:<key>`: offset, epoch, Redis' run id), appends to its
//! stream (`ws-router:h:<key>`, id `<offset>-0`, `MAXLEN ~` the route's
//! history size), renews both expiries and PUBLISHes the update with its
//! position, as `{"n":..,"r":..,"k":[key],"o":offset,"e":epoch,"d":data}`.
//! Those messages are delivered on every node, the publishing one included,
//! through [`Streams`] (see [`super::streams`] and [`super::gate`]), so each key's updates reach
//! a node's subscribers in offset order from one place. The epoch is set
//! once per meta hash: when the hash expires, is lost with Redis, or comes
//! back from another Redis run (a restored dump), offsets start again in a
//! new epoch. A key a node had to publish without Redis (its update went to
//! the node's in-memory history) has its meta hash deleted once Redis is
//! back, so nobody recovers across the hole.

use std::{
    collections::{HashMap, HashSet},
    fmt::Display,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use parking_lot::Mutex;
use rand::Rng;
use redis::{
    Client,
    aio::{MultiplexedConnection, PubSubSink, PubSubStream},
};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
    time::{Instant, timeout},
};

use super::{
    gate::{DeliverAt, Streams},
    report::{BrokerState, Cluster, Ticket},
};
use crate::hub::interest::Interest;
use crate::plugin::route::Retention;

/// How often a node rewrites its record and reads the others'.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a node's record outlives its last heartbeat.
const RECORD_TTL: Duration = Duration::from_secs(7);
/// The longest one Redis command (or connecting) may take before the link
/// counts as down.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect delays: doubling from the first to the last, jittered.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_LAST: Duration = Duration::from_secs(5);
/// Publications waiting for the publisher task; past this they are
/// answered "unavailable" rather than queued.
const QUEUE: usize = 65_536;
/// Most publications in one pipeline.
const BATCH: usize = 1024;
/// Most channels in one SUBSCRIBE or UNSUBSCRIBE.
const CHUNK: usize = 1000;
/// Most interest changes coalesced into one batch.
const CHANGES: usize = 16_384;

const PREFIX: &str = "ws-router";

/// Why the broker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid Redis URL: {0}")]
    Url(#[source] redis::RedisError),
}

/// Delivers an update received from another node to this node's
/// subscribers: (route, keys, data).
pub type Deliver = Arc<dyn Fn(&str, &[String], &str) + Send + Sync>;

struct Outgoing {
    route: Arc<str>,
    keys: Vec<Arc<str>>,
    data: Box<str>,
    ack: oneshot::Sender<Cluster>,
}

/// An update of a route with retention, to append to its key's stream.
struct Appended {
    route: Arc<str>,
    key: Arc<str>,
    data: Box<str>,
    maxlen: u64,
    expire_ms: u64,
    ack: oneshot::Sender<Option<Position>>,
}

/// Where an appended update landed in its key's stream.
#[derive(Debug, Clone)]
pub struct Position {
    pub offset: u64,
    pub epoch: Arc<str>,
}

enum Item {
    Plain(Outgoing),
    Appended(Appended),
}

/// Takes the key's next offset, appends, publishes it with its position.
/// KEYS: meta, stream. ARGV: data, maxlen, expire ms, a fresh epoch, the
/// message's head, the channel, Redis' run id.
const APPEND: &str = r#"
local run = redis.call('HGET', KEYS[1], 'r')
if run and run ~= ARGV[7] then redis.call('DEL', KEYS[1], KEYS[2]) end
if redis.call('HSETNX', KEYS[1], 'e', ARGV[4]) == 1 then redis.call('DEL', KEYS[2]) end
redis.call('HSETNX', KEYS[1], 'r', ARGV[7])
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local epoch = redis.call('HGET', KEYS[1], 'e')
local t = redis.call('TIME')
local ms = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], offset .. '-0', 'd', ARGV[1], 't', ms)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[6], ARGV[5] .. offset .. ',"e":"' .. epoch .. '","d":' .. ARGV[1] .. '}')
return {offset, epoch}
"#;

/// How long a key's stream and meta hash outlive its last update when the
/// route keeps a snapshot or has no TTL: the snapshot stays that long.
const KEEP_SNAPSHOT: Duration = Duration::from_secs(24 * 3600);

/// What [`RedisBroker::read_streams`] found of one key.
pub struct KeyRead {
    pub epoch: String,
    /// The key's last offset in this epoch (0: none).
    pub offset: u64,
    /// (offset, time in ms, data), oldest first, from the asked offset on.
    pub entries: Vec<(u64, u64, String)>,
    /// The stream's last entry.
    pub last: Option<(u64, u64, String)>,
}

pub struct RedisBroker {
    node: Arc<str>,
    client: Client,
    interest: Arc<Interest>,
    outgoing: mpsc::Sender<Item>,
    /// Per key, where this node's delivery of retained routes stands.
    streams: Streams,
    /// Keys whose channel Redis confirmed, and a tick on each change.
    confirmed: Mutex<HashSet<Arc<str>>>,
    confirm: watch::Sender<u64>,
    /// For reading streams; connected on first use, dropped on failure.
    reads: Mutex<Option<MultiplexedConnection>>,
    /// Redis' run id, as of the publisher's last connect.
    run_id: Mutex<Option<Arc<str>>>,
    /// Keys published without Redis since its outage: their epoch in Redis
    /// is void once it is back.
    dirty: Mutex<HashSet<Arc<str>>>,
    /// Taken by `start`.
    pending: Mutex<Option<Pending>>,
    publish_up: AtomicBool,
    subscribe_up: AtomicBool,
    /// Set when the subscription link fails: the publisher's connection
    /// (and its loaded script) is likely dead too, and is replaced before
    /// its next use rather than failing one batch to find out.
    stale: AtomicBool,
    /// Set while an outage has been logged and not yet its end.
    reported_down: AtomicBool,
    channels: AtomicUsize,
    sent: AtomicU64,
    unsent: AtomicU64,
    received: AtomicU64,
}

struct Pending {
    outgoing: mpsc::Receiver<Item>,
    local: mpsc::UnboundedReceiver<(Arc<str>, Arc<str>)>,
}

#[derive(Clone, Copy)]
enum Link {
    Publish,
    Subscribe,
}

impl RedisBroker {
    /// A broker for `url`; nothing is connected before [`RedisBroker::start`].
    pub fn new(url: &str, interest: Arc<Interest>) -> Result<Arc<RedisBroker>, BrokerError> {
        let client = Client::open(url).map_err(BrokerError::Url)?;
        let (outgoing, outgoing_rx) = mpsc::channel(QUEUE);
        let (local_tx, local_rx) = mpsc::unbounded_channel();
        interest.forward_local(local_tx);
        let node: Arc<str> = Arc::from(format!("{:016x}", rand::rng().random::<u64>()));
        Ok(Arc::new(RedisBroker {
            node,
            client,
            interest,
            outgoing,
            streams: Streams::default(),
            confirmed: Mutex::new(HashSet::new()),
            confirm: watch::Sender::new(0),
            reads: Mutex::new(None),
            run_id: Mutex::new(None),
            dirty: Mutex::new(HashSet::new()),
            pending: Mutex::new(Some(Pending {
                outgoing: outgoing_rx,
                local: local_rx,
            })),
            publish_up: AtomicBool::new(false),
            subscribe_up: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            reported_down: AtomicBool::new(false),
            channels: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }))
    }

    /// Connect, and keep connected until `shutdown`; updates from other
    /// nodes go to `deliver`.
    pub fn start(
        self: &Arc<Self>,
        deliver: Deliver,
        deliver_at: DeliverAt,
        shutdown: watch::Receiver<bool>,
    ) {
        let Some(pending) = self.pending.lock().take() else {
            return;
        };
        self.streams.set_delivery(deliver_at);
        tracing::info!(node = %self.node, "joining the cluster through Redis");
        tokio::spawn(Arc::clone(self).publisher(pending.outgoing, shutdown.clone()));
        tokio::spawn(Arc::clone(self).subscriber(pending.local, deliver, shutdown));
    }

    /// Queue an update for the other nodes.
    pub fn publish(&self, route: &Arc<str>, keys: &[Arc<str>], data: &str) -> Ticket {
        if !self.publish_up.load(Ordering::Acquire) {
            self.unsent.fetch_add(1, Ordering::Relaxed);
            return Ticket::Known(Cluster::Unavailable);
        }
        let (ack, outcome) = oneshot::channel();
        let item = Outgoing {
            route: Arc::clone(route),
            keys: keys.to_vec(),
            data: Box::from(data),
            ack,
        };
        match self.outgoing.try_send(Item::Plain(item)) {
            Ok(()) => Ticket::Pending(outcome),
            Err(_) => {
                self.unsent.fetch_add(1, Ordering::Relaxed);
                Ticket::Known(Cluster::Unavailable)
            }
        }
    }

    /// Append an update of a route with retention to `key`'s stream. It is
    /// queued now, so that updates keep the order they are queued in, and
    /// answered with its position once Redis took it (`None`: Redis is
    /// unreachable and nothing was delivered anywhere, see
    /// [`RedisBroker::mark_dirty`]); a batch queues all of its updates
    /// before waiting for any, so they share pipelines. The update reaches
    /// this node's subscribers from the key's channel. Not queued (`None`)
    /// when Redis is down or the queue is full.
    pub fn queue_append(
        &self,
        route: &Arc<str>,
        key: &Arc<str>,
        data: &str,
        retention: &Retention,
    ) -> Option<oneshot::Receiver<Option<Position>>> {
        if !self.up() {
            self.unsent.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let (ack, answer) = oneshot::channel();
        let item = Appended {
            route: Arc::clone(route),
            key: Arc::clone(key),
            data: Box::from(data),
            maxlen: u64::from(retention.history_size.max(u32::from(retention.snapshot))),
            expire_ms: expiry(retention),
            ack,
        };
        if self.outgoing.try_send(Item::Appended(item)).is_err() {
            self.unsent.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(answer)
    }

    /// `key` was published on this node without Redis: once Redis is back
    /// its epoch there ends, so that nobody recovers across the hole.
    pub fn mark_dirty(&self, key: &Arc<str>) {
        let mut dirty = self.dirty.lock();
        if dirty.len() < QUEUE {
            dirty.insert(Arc::clone(key));
        }
    }

    /// Whether both links to Redis are up: shared history is served then.
    pub fn is_up(&self) -> bool {
        self.up()
    }

    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Wait (bounded) until Redis confirms this node's subscription to
    /// `key`'s channel; false if it does not in time.
    pub async fn channel_ready(&self, key: &str) -> bool {
        let mut ticks = self.confirm.subscribe();
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if self.confirmed.lock().contains(key) {
                return true;
            }
            match tokio::time::timeout_at(deadline, ticks.changed()).await {
                Ok(Ok(())) => continue,
                _ => return false,
            }
        }
    }

    fn set_confirmed(&self, keys: impl FnOnce(&mut HashSet<Arc<str>>)) {
        keys(&mut self.confirmed.lock());
        self.confirm.send_modify(|n| *n += 1);
    }

    /// Read, in one atomic step, each key's epoch and offset (giving the key
    /// an epoch if it has none yet, so a client can start tracking it),
    /// its stream after the offset asked (at most `count` entries) and its
    /// last entry; with Redis' time in ms.
    pub async fn read_streams(
        &self,
        keys: &[(Arc<str>, Option<u64>)],
        count: u64,
        retention: &Retention,
    ) -> redis::RedisResult<(u64, Vec<KeyRead>)> {
        let conn = self.reads.lock().clone();
        let mut conn = match conn {
            Some(c) => c,
            None => {
                let c = within(self.client.get_multiplexed_async_connection()).await?;
                *self.reads.lock() = Some(c.clone());
                c
            }
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("TIME");
        for (key, from) in keys {
            let meta = meta_name(key);
            pipe.cmd("HSETNX")
                .arg(&meta)
                .arg("e")
                .arg(&*new_epoch())
                .ignore();
            pipe.cmd("PEXPIRE")
                .arg(&meta)
                .arg(expiry(retention))
                .ignore();
            pipe.cmd("HMGET").arg(&meta).arg("e").arg("o");
            match from {
                Some(from) => pipe
                    .cmd("XRANGE")
                    .arg(stream_name(key))
                    .arg(format!("{}-0", from.saturating_add(1)))
                    .arg("+")
                    .arg("COUNT")
                    .arg(count),
                // Nothing to read: an empty range.
                None => pipe
                    .cmd("XRANGE")
                    .arg(stream_name(key))
                    .arg("1-0")
                    .arg("0-0"),
            };
            pipe.cmd("XREVRANGE")
                .arg(stream_name(key))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
        }
        let answer: redis::RedisResult<Vec<redis::Value>> =
            within(pipe.query_async(&mut conn)).await;
        let values = match answer {
            Ok(values) => values,
            Err(e) => {
                *self.reads.lock() = None;
                return Err(e);
            }
        };
        let mut values = values.into_iter();
        let bad = || lost("unexpected answer from Redis");
        let (secs, micros): (u64, u64) = redis::from_redis_value(values.next().ok_or_else(bad)?)?;
        let now_ms = secs * 1000 + micros / 1000;
        let mut out = Vec::with_capacity(keys.len());
        for _ in keys {
            let (epoch, offset): (Option<String>, Option<u64>) =
                redis::from_redis_value(values.next().ok_or_else(bad)?)?;
            let entries = entries(values.next().ok_or_else(bad)?)?;
            let last = entries_last(values.next().ok_or_else(bad)?)?;
            out.push(KeyRead {
                epoch: epoch.ok_or_else(bad)?,
                offset: offset.unwrap_or(0),
                entries,
                last,
            });
        }
        Ok((now_ms, out))
    }

    pub fn state(&self) -> BrokerState {
        BrokerState {
            engine: "redis",
            up: self.up(),
            node: Some(Arc::clone(&self.node)),
            channels: self.channels.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            unsent: self.unsent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            peers: self.interest.remote_nodes().len(),
        }
    }

    fn up(&self) -> bool {
        self.publish_up.load(Ordering::Acquire) && self.subscribe_up.load(Ordering::Acquire)
    }

    /// Record a link's state; say once that Redis is gone, and once that it
    /// is back.
    fn link(&self, link: Link, up: bool, error: Option<&dyn Display>) {
        let flag = match link {
            Link::Publish => &self.publish_up,
            Link::Subscribe => &self.subscribe_up,
        };
        flag.store(up, Ordering::Release);
        if !up && matches!(link, Link::Subscribe) {
            self.stale.store(true, Ordering::Release);
            *self.reads.lock() = None;
        }
        if !up && !self.reported_down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                error = %error.map(ToString::to_string).unwrap_or_default(),
                "Redis unreachable: publications reach this node's subscribers only until it is back; reconnecting"
            );
        } else if self.up() && self.reported_down.swap(false, Ordering::AcqRel) {
            tracing::info!(node = %self.node, "Redis reachable: cross-node delivery resumed");
        }
    }

    // ------------------------------------------------------------ publisher

    async fn publisher(
        self: Arc<Self>,
        mut queue: mpsc::Receiver<Item>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::default();
        let mut conn: Option<MultiplexedConnection> = None;
        // The script's SHA1 and Redis' run id, as of this connection.
        let mut script = (String::new(), Arc::<str>::from(""));
        let mut seq = 0u64;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if conn.is_none() {
                match timeout(
                    COMMAND_TIMEOUT,
                    self.client.get_multiplexed_async_connection(),
                )
                .await
                {
                    Ok(Ok(mut c)) => match self.prepare(&mut c).await {
                        Ok(prepared) => {
                            script = prepared;
                            conn = Some(c);
                            backoff = Backoff::default();
                            self.link(Link::Publish, true, None);
                        }
                        Err(e) => {
                            self.link(Link::Publish, false, Some(&e));
                            tokio::time::sleep(backoff.next()).await;
                        }
                    },
                    failed => {
                        self.link(Link::Publish, false, Some(&failure(failed)));
                        // Waiting: whatever was queued meanwhile is told at
                        // once that it reached no other node.
                        let until = Instant::now() + backoff.next();
                        loop {
                            tokio::select! {
                                () = tokio::time::sleep_until(until) => break,
                                item = queue.recv() => match item {
                                    Some(item) => self.refuse(item),
                                    None => return,
                                },
                                _ = shutdown.changed() => return,
                            }
                        }
                    }
                }
                continue;
            }
            tokio::select! {
                item = queue.recv() => match item {
                    Some(item) => batch.push(item),
                    None => return,
                },
                _ = shutdown.changed() => return,
            }
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            if self.stale.swap(false, Ordering::AcqRel) {
                let fresh = match within(self.client.get_multiplexed_async_connection()).await {
                    Ok(mut c) => self.prepare(&mut c).await.map(|p| (c, p)),
                    Err(e) => Err(e),
                };
                match fresh {
                    Ok((c, prepared)) => {
                        conn = Some(c);
                        script = prepared;
                    }
                    Err(e) => {
                        conn = None;
                        self.link(Link::Publish, false, Some(&e));
                        for item in batch.drain(..) {
                            self.refuse(item);
                        }
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let mut pipe = redis::pipe();
            for item in &batch {
                match item {
                    Item::Plain(item) => {
                        seq += 1;
                        let payload = envelope(&self.node, seq, item);
                        for key in &item.keys {
                            pipe.cmd("PUBLISH").arg(channel(key)).arg(&payload).ignore();
                        }
                    }
                    Item::Appended(item) => {
                        let head = head(&self.node, &item.route, &item.key);
                        pipe.cmd("EVALSHA")
                            .arg(&script.0)
                            .arg(2)
                            .arg(meta_name(&item.key))
                            .arg(stream_name(&item.key))
                            .arg(&*item.data)
                            .arg(item.maxlen.max(1))
                            .arg(item.expire_ms)
                            .arg(&*new_epoch())
                            .arg(head)
                            .arg(channel(&item.key))
                            .arg(&*script.1);
                    }
                }
            }
            let answer = timeout(COMMAND_TIMEOUT, pipe.query_async::<Vec<(u64, String)>>(c)).await;
            match answer {
                Ok(Ok(positions)) => {
                    self.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    let mut positions = positions.into_iter();
                    for item in batch.drain(..) {
                        match item {
                            Item::Plain(item) => {
                                let _ = item.ack.send(Cluster::Ok);
                            }
                            Item::Appended(item) => {
                                let at = positions.next().map(|(offset, epoch)| Position {
                                    offset,
                                    epoch: Arc::from(epoch),
                                });
                                let _ = item.ack.send(at);
                            }
                        }
                    }
                }
                failed => {
                    conn = None;
                    self.link(Link::Publish, false, Some(&failure(failed)));
                    for item in batch.drain(..) {
                        self.refuse(item);
                    }
                }
            }
        }
    }

    fn refuse(&self, item: Item) {
        self.unsent.fetch_add(1, Ordering::Relaxed);
        match item {
            Item::Plain(item) => {
                let _ = item.ack.send(Cluster::Unavailable);
            }
            Item::Appended(item) => {
                let _ = item.ack.send(None);
            }
        }
    }

    /// On a fresh connection: load the script, learn Redis' run id, and end
    /// the epochs of the keys published here while Redis was away.
    async fn prepare(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<(String, Arc<str>)> {
        let sha: String = within(
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(APPEND)
                .query_async(conn),
        )
        .await?;
        let info: String = within(redis::cmd("INFO").arg("server").query_async(conn)).await?;
        let run_id = info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(str::trim)
            .unwrap_or_default();
        *self.run_id.lock() = Some(Arc::from(run_id));
        let dirty: Vec<Arc<str>> = self.dirty.lock().iter().cloned().collect();
        for chunk in dirty.chunks(CHUNK) {
            let names: Vec<String> = chunk.iter().map(|k| meta_name(k)).collect();
            let _: () = within(redis::cmd("DEL").arg(names).query_async(conn)).await?;
        }
        let mut left = self.dirty.lock();
        for key in &dirty {
            left.remove(key);
        }
        Ok((sha, Arc::from(run_id)))
    }

    // ----------------------------------------------------------- subscriber

    async fn subscriber(
        self: Arc<Self>,
        mut local: mpsc::UnboundedReceiver<(Arc<str>, Arc<str>)>,
        deliver: Deliver,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::default();
        loop {
            let failed = match self.connect(&mut local, &deliver).await {
                Ok(mut session) => {
                    backoff = Backoff::default();
                    self.link(Link::Subscribe, true, None);
                    let ended = self.follow(&mut session, &mut local, &mut shutdown).await;
                    session.reader.abort();
                    match ended {
                        Ok(()) => {
                            self.goodbye(&mut session).await;
                            return;
                        }
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            self.channels.store(0, Ordering::Relaxed);
            self.set_confirmed(HashSet::clear);
            self.link(Link::Subscribe, false, Some(&failed));
            let until = Instant::now() + backoff.next();
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    // While away, changes pile up nowhere: on reconnecting,
                    // the node subscribes to what it wants then.
                    change = local.recv() => if change.is_none() { return },
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// Subscribe to every key wanted here and to the interest channel,
    /// write this node's record and read the others'.
    async fn connect(
        self: &Arc<Self>,
        local: &mut mpsc::UnboundedReceiver<(Arc<str>, Arc<str>)>,
        deliver: &Deliver,
    ) -> Result<Session, redis::RedisError> {
        let pubsub = within(self.client.get_async_pubsub()).await?;
        let commands = within(self.client.get_multiplexed_async_connection()).await?;
        let (mut sink, stream) = pubsub.split();
        // What is wanted now is read after the changes queued so far are
        // dropped: none of them is missed.
        while local.try_recv().is_ok() {}
        let wanted = self.interest.local_keys();
        within(sink.subscribe(interest_channel())).await?;
        for chunk in wanted.chunks(CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|(_, key)| channel(key)).collect();
            within(sink.subscribe(channels)).await?;
        }
        let subscribed: HashSet<Arc<str>> = wanted.into_iter().map(|(_, key)| key).collect();
        self.channels.store(subscribed.len(), Ordering::Relaxed);
        self.set_confirmed(|c| c.clone_from(&subscribed));
        let reader = tokio::spawn(Arc::clone(self).read(stream, Arc::clone(deliver)));
        let mut session = Session {
            sink,
            commands,
            subscribed,
            reader,
        };
        // Tell the others at once, rather than at their next heartbeat.
        let adds: Vec<(Arc<str>, Arc<str>)> = self.interest.local_keys();
        self.announce(&mut session, &adds, &[]).await?;
        self.heartbeat(&mut session).await?;
        Ok(session)
    }

    /// Apply interest changes, beat, and watch the subscription connection,
    /// until shutdown (`Ok`) or a Redis failure.
    async fn follow(
        &self,
        session: &mut Session,
        local: &mut mpsc::UnboundedReceiver<(Arc<str>, Arc<str>)>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), redis::RedisError> {
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.reset();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                _ = &mut session.reader => {
                    return Err(lost("the subscription connection closed"));
                }
                change = local.recv() => {
                    let Some((route, key)) = change else { return Ok(()) };
                    let mut changed: HashMap<Arc<str>, Arc<str>> = HashMap::new();
                    changed.insert(key, route);
                    while changed.len() < CHANGES {
                        match local.try_recv() {
                            Ok((route, key)) => { changed.insert(key, route); }
                            Err(_) => break,
                        }
                    }
                    self.apply(session, changed).await?;
                }
                _ = beat.tick() => self.heartbeat(session).await?,
            }
        }
    }

    /// (Un)subscribe the keys whose local interest changed, as it stands
    /// now (a key gained and lost in one batch is left alone).
    async fn apply(
        &self,
        session: &mut Session,
        changed: HashMap<Arc<str>, Arc<str>>,
    ) -> Result<(), redis::RedisError> {
        let (mut adds, mut dels) = (Vec::new(), Vec::new());
        for (key, route) in changed {
            let wanted = self.interest.locally_wanted(&key);
            if wanted && session.subscribed.insert(Arc::clone(&key)) {
                adds.push((route, key));
            } else if !wanted && session.subscribed.remove(&key) {
                dels.push((route, key));
            }
        }
        for chunk in adds.chunks(CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|(_, key)| channel(key)).collect();
            within(session.sink.subscribe(channels)).await?;
        }
        for chunk in dels.chunks(CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|(_, key)| channel(key)).collect();
            within(session.sink.unsubscribe(channels)).await?;
        }
        if !adds.is_empty() || !dels.is_empty() {
            self.set_confirmed(|c| {
                c.extend(adds.iter().map(|(_, key)| Arc::clone(key)));
                for (_, key) in &dels {
                    c.remove(key);
                }
            });
        }
        self.channels
            .store(session.subscribed.len(), Ordering::Relaxed);
        self.announce(session, &adds, &dels).await
    }

    /// Write interest changes to this node's record and tell the others.
    async fn announce(
        &self,
        session: &mut Session,
        adds: &[(Arc<str>, Arc<str>)],
        dels: &[(Arc<str>, Arc<str>)],
    ) -> Result<(), redis::RedisError> {
        if adds.is_empty() && dels.is_empty() {
            return Ok(());
        }
        let record = record_name(&self.node);
        let counted: Vec<(Arc<str>, Arc<str>, usize)> = adds
            .iter()
            .map(|(route, key)| {
                let n = self.interest.local_count(key).max(1);
                (Arc::clone(route), Arc::clone(key), n)
            })
            .collect();
        let mut pipe = redis::pipe();
        for chunk in counted.chunks(CHUNK) {
            let fields: Vec<(&str, String)> = chunk
                .iter()
                .map(|(route, key, n)| (&**key, format!("{n}\t{route}")))
                .collect();
            pipe.cmd("HSET").arg(&record).arg(fields).ignore();
        }
        for chunk in dels.chunks(CHUNK) {
            let fields: Vec<&str> = chunk.iter().map(|(_, key)| &**key).collect();
            pipe.cmd("HDEL").arg(&record).arg(fields).ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&record)
            .arg(RECORD_TTL.as_millis() as u64)
            .ignore();
        pipe.cmd("SADD").arg(nodes_name()).arg(&*self.node).ignore();
        let message = serde_json::json!({
            "n": &*self.node,
            "add": counted.iter().map(|(r, k, n)| (&**r, &**k, n)).collect::<Vec<_>>(),
            "del": dels.iter().map(|(r, k)| (&**r, &**k)).collect::<Vec<_>>(),
        });
        pipe.cmd("PUBLISH")
            .arg(interest_channel())
            .arg(message.to_string())
            .ignore();
        within(pipe.query_async::<()>(&mut session.commands)).await
    }

    /// Rewrite this node's record (counts as of now, expiry renewed) and
    /// read every other node's.
    async fn heartbeat(&self, session: &mut Session) -> Result<(), redis::RedisError> {
        let record = record_name(&self.node);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("DEL").arg(&record).ignore();
        let wanted: Vec<(&str, String)> = session
            .subscribed
            .iter()
            .filter_map(|key| {
                let n = self.interest.local_count(key);
                let route = self.interest.route_of(key)?;
                Some((&**key, format!("{}\t{route}", n.max(1))))
            })
            .collect();
        for chunk in wanted.chunks(CHUNK) {
            pipe.cmd("HSET").arg(&record).arg(chunk).ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&record)
            .arg(RECORD_TTL.as_millis() as u64)
            .ignore();
        pipe.cmd("SADD").arg(nodes_name()).arg(&*self.node).ignore();
        pipe.cmd("SMEMBERS").arg(nodes_name());
        let (nodes,): (Vec<String>,) = within(pipe.query_async(&mut session.commands)).await?;
        let mut alive = HashSet::new();
        for node in nodes.into_iter().filter(|n| **n != *self.node) {
            let entries: HashMap<String, String> = within(
                redis::cmd("HGETALL")
                    .arg(record_name(&node))
                    .query_async(&mut session.commands),
            )
            .await?;
            let node: Arc<str> = Arc::from(node);
            if entries.is_empty() {
                // Expired or never written: gone, or wanting nothing.
                let _: () = within(
                    redis::cmd("SREM")
                        .arg(nodes_name())
                        .arg(&*node)
                        .query_async(&mut session.commands),
                )
                .await?;
                self.interest.remote_set(&node, None);
                continue;
            }
            let listed = entries
                .into_iter()
                .filter_map(|(key, value)| {
                    let (n, route) = value.split_once('\t')?;
                    Some((Arc::from(route), Arc::from(key), n.parse().unwrap_or(1)))
                })
                .collect();
            self.interest.remote_set(&node, Some(listed));
            alive.insert(node);
        }
        for node in self.interest.remote_nodes() {
            if !alive.contains(&node) {
                self.interest.remote_set(&node, None);
            }
        }
        Ok(())
    }

    /// On shutdown: take this node's interest out of the cluster at once.
    async fn goodbye(&self, session: &mut Session) {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(record_name(&self.node)).ignore();
        pipe.cmd("SREM").arg(nodes_name()).arg(&*self.node).ignore();
        let message = serde_json::json!({ "n": &*self.node, "gone": true });
        pipe.cmd("PUBLISH")
            .arg(interest_channel())
            .arg(message.to_string())
            .ignore();
        let _ = within(pipe.query_async::<()>(&mut session.commands)).await;
    }

    /// Receive updates and interest changes from the other nodes until the
    /// connection closes.
    async fn read(self: Arc<Self>, mut stream: PubSubStream, deliver: Deliver) {
        let interest = interest_channel();
        // Per node, the last seq delivered: an update to several keys
        // arrives once per subscribed key's channel.
        let mut last: HashMap<String, u64> = HashMap::new();
        while let Some(message) = stream.next().await {
            let payload = message.get_payload_bytes();
            if message.get_channel_name() == interest {
                self.on_interest(payload);
                continue;
            }
            let update: Envelope<'_> = match serde_json::from_slice(payload) {
                Ok(update) => update,
                Err(e) => {
                    tracing::debug!(error = %e, "ignored a malformed message from Redis");
                    continue;
                }
            };
            if let (Some(offset), Some(epoch), [key]) = (update.o, update.e, &update.k[..]) {
                // Retained routes: every node's updates, this one's too,
                // come from here, in offset order.
                if update.n != &*self.node {
                    self.received.fetch_add(1, Ordering::Relaxed);
                }
                self.streams
                    .arrive(update.r, key, offset, epoch, update.d.get());
                continue;
            }
            if update.n == &*self.node {
                continue;
            }
            match last.get_mut(update.n) {
                Some(seq) if update.s <= *seq => continue,
                Some(seq) => *seq = update.s,
                None => {
                    last.insert(update.n.to_owned(), update.s);
                }
            }
            self.received.fetch_add(1, Ordering::Relaxed);
            deliver(update.r, &update.k, update.d.get());
        }
    }

    fn on_interest(&self, payload: &[u8]) {
        let Ok(change) = serde_json::from_slice::<InterestMessage>(payload) else {
            tracing::debug!("ignored a malformed interest message from Redis");
            return;
        };
        if *change.n == *self.node {
            return;
        }
        let node: Arc<str> = Arc::from(change.n);
        if change.gone {
            self.interest.remote_set(&node, None);
            return;
        }
        for (route, key, n) in change.add {
            self.interest
                .remote_change(&node, &Arc::from(route), &Arc::from(key), Some(n));
        }
        for (route, key) in change.del {
            self.interest
                .remote_change(&node, &Arc::from(route), &Arc::from(key), None);
        }
    }
}

/// One connected subscriber.
struct Session {
    sink: PubSubSink,
    commands: MultiplexedConnection,
    /// Keys whose channel this node is subscribed to.
    subscribed: HashSet<Arc<str>>,
    reader: JoinHandle<()>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    n: &'a str,
    #[serde(default)]
    s: u64,
    #[serde(borrow)]
    r: &'a str,
    k: Vec<String>,
    /// A retained route's update: its offset and epoch.
    #[serde(default)]
    o: Option<u64>,
    #[serde(default, borrow)]
    e: Option<&'a str>,
    #[serde(borrow)]
    d: &'a RawValue,
}

#[derive(Deserialize)]
struct InterestMessage {
    n: String,
    #[serde(default)]
    gone: bool,
    #[serde(default)]
    add: Vec<(String, String, usize)>,
    #[serde(default)]
    del: Vec<(String, String)>,
}

/// An update as the other nodes receive it; `data` is compact JSON.
fn envelope(node: &str, seq: u64, item: &Outgoing) -> String {
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = String::with_capacity(64 + item.data.len() + item.keys.len() * 24);
    out.push_str("{\"n\":");
    out.push_str(&json(node));
    out.push_str(",\"s\":");
    out.push_str(&seq.to_string());
    out.push_str(",\"r\":");
    out.push_str(&json(&item.route));
    out.push_str(",\"k\":[");
    for (i, key) in item.keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json(key));
    }
    out.push_str("],\"d\":");
    out.push_str(&item.data);
    out.push('}');
    out
}

/// The start of a retained update's message; the script adds the offset,
/// the epoch and the data.
fn head(node: &str, route: &str, key: &str) -> String {
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        "{{\"n\":{},\"r\":{},\"k\":[{}],\"o\":",
        json(node),
        json(route),
        json(key)
    )
}

fn meta_name(key: &str) -> String {
    format!("{PREFIX}:m:{key}")
}

fn stream_name(key: &str) -> String {
    format!("{PREFIX}:h:{key}")
}

fn new_epoch() -> Arc<str> {
    Arc::from(format!("{:012x}", rand::rng().random::<u64>() >> 16))
}

/// How long a key's stream and meta hash outlive its last update.
fn expiry(retention: &Retention) -> u64 {
    let ttl = retention.history_ttl;
    let keep = if retention.snapshot || ttl.is_zero() {
        ttl.max(KEEP_SNAPSHOT)
    } else {
        ttl
    };
    u64::try_from(keep.as_millis()).unwrap_or(u64::MAX)
}

type Entry = (u64, u64, String);

/// Stream entries (`<offset>-0`, fields `d` and `t`), oldest first.
fn entries(value: redis::Value) -> redis::RedisResult<Vec<Entry>> {
    let raw: Vec<(String, HashMap<String, String>)> = redis::from_redis_value(value)?;
    Ok(raw
        .into_iter()
        .filter_map(|(id, mut fields)| {
            let offset = id.split_once('-')?.0.parse().ok()?;
            let time = fields.get("t")?.parse().ok()?;
            Some((offset, time, fields.remove("d")?))
        })
        .collect())
}

fn entries_last(value: redis::Value) -> redis::RedisResult<Option<Entry>> {
    Ok(entries(value)?.into_iter().next())
}

fn channel(key: &str) -> String {
    format!("{PREFIX}:u:{key}")
}

fn interest_channel() -> String {
    format!("{PREFIX}:interest")
}

fn record_name(node: &str) -> String {
    format!("{PREFIX}:node:{node}")
}

fn nodes_name() -> String {
    format!("{PREFIX}:nodes")
}

fn lost(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, what))
}

/// A Redis call, bounded by [`COMMAND_TIMEOUT`].
async fn within<T>(call: impl Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
    timeout(COMMAND_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(lost("Redis did not answer in time")))
}

fn failure<T>(outcome: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>) -> String {
    match outcome {
        Ok(Ok(_)) => String::new(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "Redis did not answer in time".to_owned(),
    }
}

/// Exponential reconnect delays with jitter: each in [d/2, d], d doubling
/// up to [`BACKOFF_LAST`], so that many nodes do not reconnect in step.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(BACKOFF_FIRST)
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (d * 2).min(BACKOFF_LAST);
        d.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_reads_back() {
        let (ack, _) = oneshot::channel();
        let item = Outgoing {
            route: Arc::from("q"),
            keys: vec![Arc::from("q:\"a\""), Arc::from("q:b")],
            data: Box::from(r#"{"x":1}"#),
            ack,
        };
        let text = envelope("n1", 7, &item);
        let e: Envelope<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!((e.n, e.s, e.r), ("n1", 7, "q"));
        assert_eq!(e.k, ["q:\"a\"", "q:b"]);
        assert_eq!(e.d.get(), r#"{"x":1}"#);
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let mut b = Backoff::default();
        let delays: Vec<Duration> = (0..10).map(|_| b.next()).collect();
        assert!(delays[0] >= BACKOFF_FIRST / 2 && delays[0] <= BACKOFF_FIRST);
        assert!(delays.iter().all(|d| *d <= BACKOFF_LAST));
        assert!(delays[9] >= BACKOFF_LAST / 2);
    }
}
