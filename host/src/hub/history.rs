//! What the host keeps of the updates of routes that ask for it (the
//! plugin's [`Retention`]): each key's last update (the snapshot a new
//! subscription receives at once) and its recent updates with their offsets
//! (what a reconnecting client recovers).
//!
//! Every publication to a key of such a route takes the key's next
//! *offset* (1, 2, ...) within the key's *epoch*, a short random string
//! that names one unbroken run of offsets: when a key's history is lost
//! (the process restarts, its last update is evicted or expires, its route
//! is removed) the next publication starts a new epoch at offset 1, so a
//! client can never mistake a new run's offsets for the old one's.
//!
//! A key's updates are bounded by the route's `history-size` and TTL (a
//! route with a snapshot keeps the last update past the TTL: a chart that
//! opens an hour later still sees the last bar), and all keys together by
//! the host-wide byte budget (`--history-memory-mib`): past it, the oldest
//! updates across keys are evicted first.
//!
//! # Order without gaps or duplicates
//!
//! Each key has a lock, which a publication holds while it takes an
//! offset, stores the update and fans it out ([`History::append`]); a new
//! subscription holds the locks of its keys while it registers and reads
//! what to replay ([`History::join`]). So every update is either stored
//! before the subscription exists (and replayed to it) or fanned out after
//! (and delivered live), never both, and updates of one key reach
//! subscribers in offset order. Routes without retention never touch this
//! module: their publications take no lock and allocate nothing here.
//!
//! # Memory
//!
//! A key's data is copied into a few large chunks (a sixteenth of its full
//! history each, at most [`MAX_CHUNK`]), not one allocation per update: a
//! store that holds its whole budget of small allocations, freed in another
//! order than allocated, fragments the allocator's heap and slows every
//! allocation of the process (measured: `malloc` took a tenth of the host's
//! CPU in the many-topics benchmark). A chunk is freed when its last update
//! is dropped. The byte count is what is allocated (chunks, entry slots,
//! keys), kept per key and added to the host-wide count only when it
//! changes (a new chunk, a freed one), so most publications touch no shared
//! counter; past the budget, one pass evicts the oldest updates until the
//! store is at nine tenths of it.
//!
//! # Shape of the store
//!
//! Three operations: append (returns the update's position), replay since a
//! position (the updates after it, or "gap" when some are gone), last. A
//! Redis stream provides the same (`XADD` returns the id, `XRANGE` from an
//! id, `XREVRANGE COUNT 1`), so the in-memory store can be replaced by one
//! shared between nodes while the per-key lock stays local: it then orders
//! the node's fan-out, and a replay reads up to the offset the node last
//! delivered.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use parking_lot::{Mutex, MutexGuard, RwLock};
use prometheus_client::metrics::counter::Counter;
use smallvec::SmallVec;

use super::{
    hashing::{HashMap, RandomState},
    outbox::{Frame, Outbox},
    registry::{FanOut, Registry},
};
use crate::{
    plugin::{DeliveryPolicy, route::Retention},
    protocol::{self, KeyPosition, Positions, Recover, Retained},
};

const SHARDS: usize = 64;
/// Bytes counted per chunk beyond its capacity: the allocation's header and
/// the chunk's slot.
const CHUNK_OVERHEAD: usize = 48;
/// Bytes counted per key beyond its name, chunks and entry slots: the map
/// entry, the lock, the state.
const KEY_OVERHEAD: usize = 200;
/// The largest chunk a key's updates are copied into (an update larger than
/// that gets a chunk of its own size).
const MAX_CHUNK: usize = 16 * 1024;

/// Where a key's stream stands, borrowed from the store while its lock is
/// held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At<'a> {
    /// The offset of the key's last update (0: none yet in this epoch).
    pub offset: u64,
    pub epoch: &'a str,
}

/// Counters the store keeps for the host's metrics.
#[derive(Clone, Default)]
pub struct Evictions {
    /// Updates evicted to stay within the byte budget.
    pub memory: Counter,
    /// Updates dropped because they outlived the route's TTL.
    pub ttl: Counter,
}

pub struct History {
    /// Most bytes of update frames one subscribe may replay (a share of a
    /// connection's outbox): a longer replay is refused, `recovered:
    /// false`, rather than overflowing the queue and closing the
    /// connection.
    replay_budget: usize,
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    /// Bytes held now: the sum of the keys' counts ([`KeyState::held`]),
    /// changed only when one of them changes.
    bytes: AtomicUsize,
    budget: usize,
    evictions: Evictions,
    /// One eviction pass at a time; others skip it.
    evicting: Mutex<()>,
}

type Shard = HashMap<Arc<str>, Arc<KeyLog>>;

struct KeyLog {
    key: Arc<str>,
    route: Arc<str>,
    state: Mutex<KeyState>,
}

struct KeyState {
    epoch: Arc<str>,
    /// Offset of the last update appended (0: none yet).
    last: u64,
    /// Oldest first: the updates at offsets `last - len + 1 ..= last`.
    entries: VecDeque<Entry>,
    /// The entries' data, oldest first: each chunk is filled up to its
    /// capacity (never grown, so the data already in it stays put), then
    /// the next one is started.
    chunks: VecDeque<String>,
    /// The sequence number of `chunks[0]`.
    first_chunk: u64,
    /// Bytes counted for this key now (see [`KeyState::footprint`]), as
    /// added to the store's count.
    held: usize,
    /// Set when the key was taken out of the map: appenders look it up
    /// again.
    forgotten: bool,
}

/// One update: when it came, where its data is in the key's chunks (its
/// offset is its place in the ring).
struct Entry {
    at: Instant,
    /// The sequence number of its chunk.
    chunk: u64,
    start: u32,
    len: u32,
}

impl KeyState {
    fn new(key: &str) -> KeyState {
        let mut state = KeyState {
            epoch: new_epoch(),
            last: 0,
            entries: VecDeque::new(),
            chunks: VecDeque::new(),
            first_chunk: 0,
            held: 0,
            forgotten: false,
        };
        state.held = state.footprint(key);
        state
    }

    /// Bytes the key holds: its name and overhead, its entry slots, its
    /// chunks (their capacity, filled or not).
    fn footprint(&self, key: &str) -> usize {
        let chunks: usize = self
            .chunks
            .iter()
            .map(|c| c.capacity() + CHUNK_OVERHEAD)
            .sum();
        KEY_OVERHEAD + key.len() + self.entries.capacity() * size_of::<Entry>() + chunks
    }

    /// The data of `entry`, one of this key's.
    fn data(&self, entry: &Entry) -> &str {
        let (start, len) = (entry.start as usize, entry.len as usize);
        usize::try_from(entry.chunk - self.first_chunk)
            .ok()
            .and_then(|i| self.chunks.get(i))
            .and_then(|chunk| chunk.get(start..start + len))
            .unwrap_or_default()
    }

    /// The updates from the `i`-th kept on, with their offsets.
    fn updates_from(&self, i: usize) -> impl Iterator<Item = (u64, &str)> {
        let first = self.last + 1 - self.entries.len() as u64;
        self.entries
            .range(i..)
            .zip(first + i as u64..)
            .map(|(e, offset)| (offset, self.data(e)))
    }

    /// Store `data` as the next update (`last` is its offset already),
    /// copied into the newest chunk when it fits there, else into a new
    /// one sized for `retention`.
    fn push(&mut self, at: Instant, data: &str, retention: &Retention) {
        let Ok(len) = u32::try_from(data.len()) else {
            // Over 4 GiB (no publisher gets here): not kept, and nothing
            // older either, so no replay can skip it.
            self.clear();
            return;
        };
        let fits = self
            .chunks
            .back()
            .is_some_and(|c| c.capacity() - c.len() >= data.len());
        if !fits {
            let history = retained_count(retention).saturating_mul(data.len());
            let size = (history / 16).clamp(data.len(), MAX_CHUNK.max(data.len()));
            self.chunks.push_back(String::with_capacity(size));
        }
        let chunk_seq = self.first_chunk + self.chunks.len() as u64 - 1;
        let Some(chunk) = self.chunks.back_mut() else {
            return;
        };
        // Below MAX_CHUNK, or 0 in a chunk of its own.
        let start = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        chunk.push_str(data);
        self.entries.push_back(Entry {
            at,
            chunk: chunk_seq,
            start,
            len,
        });
    }

    /// Drop the oldest update, and the chunks no update uses any more.
    fn pop(&mut self) -> bool {
        if self.entries.pop_front().is_none() {
            return false;
        }
        let in_use = match self.entries.front() {
            Some(oldest) => oldest.chunk,
            None => self.first_chunk + self.chunks.len() as u64,
        };
        while self.first_chunk < in_use && self.chunks.pop_front().is_some() {
            self.first_chunk += 1;
        }
        true
    }

    /// Drop every update.
    fn clear(&mut self) {
        self.first_chunk += self.chunks.len() as u64;
        self.entries = VecDeque::new();
        self.chunks = VecDeque::new();
    }

    /// Recount the key's bytes after a change; the difference, to apply to
    /// the store's count.
    fn recount(&mut self, key: &str) -> Delta {
        // A ring emptied by evictions gives back most of its slots.
        let cap = self.entries.capacity();
        if cap > 64 && self.entries.len() < cap / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
        }
        let now = self.footprint(key);
        let delta = Delta {
            added: now.saturating_sub(self.held),
            freed: self.held.saturating_sub(now),
        };
        self.held = now;
        delta
    }

    /// Drop what `retention` no longer keeps.
    fn trim(&mut self, retention: &Retention, now: Instant, evictions: &Evictions) {
        let keep = retained_count(retention);
        while self.entries.len() > keep {
            self.pop();
        }
        if !retention.history_ttl.is_zero() {
            // The snapshot outlives the TTL; recovery does not use it then.
            let floor = usize::from(retention.snapshot);
            while self.entries.len() > floor
                && self
                    .entries
                    .front()
                    .is_some_and(|e| now.duration_since(e.at) > retention.history_ttl)
            {
                self.pop();
                evictions.ttl.inc();
            }
        }
    }
}

/// A change of a key's byte count.
#[derive(Debug, Default, Clone, Copy)]
struct Delta {
    added: usize,
    freed: usize,
}

/// Updates a key of `retention` keeps: its history, or the last one for a
/// snapshot.
fn retained_count(retention: &Retention) -> usize {
    let size = usize::try_from(retention.history_size).unwrap_or(usize::MAX);
    size.max(usize::from(retention.snapshot))
}

/// Whether a route's updates are kept at all.
pub fn retains(retention: &Retention) -> bool {
    retained_count(retention) > 0
}

fn new_epoch() -> Arc<str> {
    // 48 random bits: a restarted node never reuses an epoch in practice.
    Arc::from(format!("{:012x}", rand::random::<u64>() >> 16))
}

/// Why a replay cannot be served: an update after the client's position
/// is gone (or the position is of another epoch, or ahead of the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap;

/// The keys of one subscription, locked: publications to them wait until
/// this is dropped (see [`History::join`]).
pub struct Joined<'a> {
    logs: SmallVec<[(&'a str, MutexGuard<'a, KeyState>); 4]>,
}

impl Joined<'_> {
    fn state(&self, key: &str) -> Option<&KeyState> {
        self.logs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, state)| &**state)
    }

    /// Where `key` stands now.
    pub fn position(&self, key: &str) -> Option<At<'_>> {
        self.state(key).map(|s| At {
            offset: s.last,
            epoch: &s.epoch,
        })
    }

    /// The key's last update, for a snapshot.
    pub fn last(&self, key: &str) -> Option<(u64, &str)> {
        let state = self.state(key)?;
        let e = state.entries.back()?;
        Some((state.last, state.data(e)))
    }

    /// The updates of `key` after `offset` in `epoch`, oldest first, when
    /// the store still holds every one of them (within the route's size
    /// and TTL); otherwise [`Gap`].
    pub fn since(
        &self,
        key: &str,
        offset: u64,
        epoch: &str,
        retention: &Retention,
        now: Instant,
    ) -> Result<impl Iterator<Item = (u64, &str)>, Gap> {
        let state = self.state(key).ok_or(Gap)?;
        if *state.epoch != *epoch || offset > state.last {
            return Err(Gap);
        }
        let missed = usize::try_from(state.last - offset).map_err(|_| Gap)?;
        let size = usize::try_from(retention.history_size).unwrap_or(usize::MAX);
        if missed > size.min(state.entries.len()) {
            return Err(Gap);
        }
        let start = state.entries.len() - missed;
        let fresh = |e: &Entry| {
            retention.history_ttl.is_zero() || now.duration_since(e.at) <= retention.history_ttl
        };
        if state.entries.get(start).is_some_and(|e| !fresh(e)) {
            return Err(Gap);
        }
        Ok(state.updates_from(start))
    }
}

impl History {
    /// A store holding at most about `budget` bytes, counting its
    /// evictions in `evictions`.
    pub fn new(budget: usize, replay_budget: usize, evictions: Evictions) -> History {
        History {
            replay_budget,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            bytes: AtomicUsize::new(0),
            budget,
            evictions,
            evicting: Mutex::new(()),
        }
    }

    /// Whether this store keeps `retention`'s updates: the route asks for
    /// some, and the host's budget is not zero (`--history-memory-mib 0`
    /// turns snapshots and history off host-wide).
    pub fn keeps(&self, retention: &Retention) -> bool {
        self.budget > 0 && retains(retention)
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Keys with a stream now.
    pub fn key_count(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Store `data` (compact JSON) as the next update of `key` and call
    /// `deliver` with its position, the key's lock held: deliveries of one
    /// key happen in offset order, and never race a subscription joining.
    pub fn append<R>(
        &self,
        route: &Arc<str>,
        key: &Arc<str>,
        retention: &Retention,
        data: &str,
        deliver: impl FnOnce(At<'_>) -> R,
    ) -> R {
        let now = Instant::now();
        let (delivered, grew) = loop {
            let log = self.log(route, key);
            let mut state = log.state.lock();
            if state.forgotten {
                continue;
            }
            state.last += 1;
            let offset = state.last;
            state.push(now, data, retention);
            state.trim(retention, now, &self.evictions);
            let delta = state.recount(&log.key);
            self.apply(delta);
            break (
                deliver(At {
                    offset,
                    epoch: &state.epoch,
                }),
                delta.added > 0,
            );
        };
        if grew && self.bytes() > self.budget {
            self.evict();
        }
        delivered
    }

    /// Publish `data` (compact JSON) to each of `keys` of a route that
    /// keeps its updates: each key's publication takes its own offset and
    /// reaches the subscriptions of that key (a subscription reached by two
    /// of the keys receives it twice, once per key and offset).
    pub fn publish(
        &self,
        registry: &Registry,
        route: &Arc<str>,
        retention: &Retention,
        policy: DeliveryPolicy,
        keys: &[Arc<str>],
        data: &str,
    ) -> FanOut {
        let mut out = FanOut::default();
        let positioned = retention.has_history();
        for key in keys {
            let reached = self.append(route, key, retention, data, |at| {
                registry.publish_key(
                    key,
                    data,
                    policy,
                    positioned.then_some((at.offset, at.epoch)),
                )
            });
            out.delivered += reached.delivered;
            out.dropped += reached.dropped;
            if let [_] = keys {
                out.key_json = reached.key_json;
            }
        }
        out
    }

    /// Subscribe to a route that keeps its updates: with the keys locked,
    /// `register` the subscription (false: it was held already), then queue
    /// to `outbox`, behind the reply the session sends next, each key's
    /// missed updates (when `recover` names it and they are all still
    /// here) or else its snapshot (when the route has one). What the
    /// reply adds: positions, and whether `recover` succeeded.
    pub fn subscribe<E>(
        &self,
        joining: Joining<'_>,
        register: impl FnOnce() -> Result<bool, E>,
    ) -> Result<Retained, E> {
        let Joining {
            route,
            topic,
            keys,
            retention,
            recover,
            outbox,
        } = joining;
        let asked = (!recover.is_empty()).then_some(true);
        if !self.keeps(retention) {
            register()?;
            return Ok(Retained {
                positions: None,
                recovered: asked.map(|_| false),
            });
        }
        self.join(route, keys, |joined| {
            let added = register()?;
            let history = retention.has_history();
            let now = Instant::now();
            let mut budget = self.replay_budget;
            let mut positions = Positions::new();
            let mut all = true;
            for key in keys {
                let epoch = joined.position(key).map_or("", |at| at.epoch);
                let from = recover.get(key);
                let mut recovered = None;
                if added {
                    let mut replayed = false;
                    if let (true, Some(from)) = (history, from) {
                        replayed = joined
                            .since(key, from.offset, &from.epoch, retention, now)
                            .ok()
                            .and_then(|updates| {
                                let encode = |(offset, data)| {
                                    Frame::from(protocol::update_frame_at(
                                        route, topic, key, offset, epoch, data,
                                    ))
                                };
                                frames_within(updates.map(encode), &mut budget)
                            })
                            .is_some_and(|frames| queue(outbox, frames));
                        recovered = Some(replayed);
                    }
                    if !replayed
                        && retention.snapshot
                        && let Some((offset, data)) = joined.last(key)
                    {
                        let frame = match history {
                            true => {
                                protocol::update_frame_at(route, topic, key, offset, epoch, data)
                            }
                            false => protocol::update_frame(route, topic, data),
                        };
                        queue(outbox, vec![Frame::from(frame)]);
                    }
                } else if from.is_some() {
                    // Held already: its updates have been arriving live.
                    recovered = Some(false);
                }
                all &= recovered != Some(false);
                if history && let Some(at) = joined.position(key) {
                    positions.insert(
                        Arc::clone(key),
                        KeyPosition {
                            offset: at.offset,
                            epoch: Arc::from(at.epoch),
                            recovered,
                        },
                    );
                }
            }
            Ok(Retained {
                positions: history.then_some(positions),
                recovered: asked.map(|_| all),
            })
        })
    }

    /// Lock the streams of `keys` (sorted, as a subscription's keys are),
    /// creating those not seen yet, and run `f`: publications to them wait,
    /// so `f` can register a subscription and read what to send it without
    /// an update slipping between the two.
    pub fn join<R>(
        &self,
        route: &Arc<str>,
        keys: &[Arc<str>],
        f: impl FnOnce(&Joined<'_>) -> R,
    ) -> R {
        let mut f = Some(f);
        loop {
            // One lock order for every joiner (keys sorted, deduplicated):
            // two subscriptions sharing keys cannot deadlock.
            let mut sorted: SmallVec<[&Arc<str>; 4]> = keys.iter().collect();
            sorted.sort_unstable();
            sorted.dedup();
            let logs: SmallVec<[Arc<KeyLog>; 4]> =
                sorted.iter().map(|k| self.log(route, k)).collect();
            let joined = Joined {
                logs: logs.iter().map(|l| (&*l.key, l.state.lock())).collect(),
            };
            if joined.logs.iter().any(|(_, s)| s.forgotten) {
                continue;
            }
            if let Some(f) = f.take() {
                return f(&joined);
            }
        }
    }

    /// Drop what each route's retention no longer keeps: expired updates,
    /// keys left empty that nobody is subscribed to (`wanted` says), and
    /// every key of a route `retention_of` does not know (removed, or
    /// upgraded to a version without retention). A key left empty but
    /// subscribed to keeps its epoch and offsets: its next update follows
    /// on.
    pub fn sweep(
        &self,
        retention_of: impl Fn(&str) -> Option<Retention>,
        wanted: impl Fn(&str) -> bool,
    ) {
        let now = Instant::now();
        for log in self.logs() {
            let mut state = log.state.lock();
            if state.forgotten {
                continue;
            }
            match retention_of(&log.route).filter(retains) {
                Some(retention) => {
                    state.trim(&retention, now, &self.evictions);
                    let delta = state.recount(&log.key);
                    self.apply(delta);
                    if state.entries.is_empty() && !wanted(&log.key) {
                        self.forget(&log, state);
                    }
                }
                None => self.forget(&log, state),
            }
        }
    }

    /// Evict the oldest updates across keys until the store holds a tenth
    /// less than its budget, so that one pass serves many appends (one pass
    /// at a time: an append finding one under way goes on).
    fn evict(&self) {
        let Some(_one) = self.evicting.try_lock() else {
            return;
        };
        let target = self.budget - self.budget / 10;
        let logs = self.logs();
        let mut oldest: BinaryHeap<Reverse<(Instant, usize)>> = logs
            .iter()
            .enumerate()
            .filter_map(|(i, log)| Some(Reverse((log.state.lock().entries.front()?.at, i))))
            .collect();
        while self.bytes() > target {
            let Some(Reverse((_, i))) = oldest.pop() else {
                break;
            };
            let log = &logs[i];
            let mut state = log.state.lock();
            if state.forgotten {
                continue;
            }
            // This key's updates older than every other key's oldest go in
            // one go, under one lock.
            let others = oldest.peek().map(|Reverse((at, _))| *at);
            let mut evicted = 0;
            let mut freed = 0;
            while state.pop() {
                evicted += 1;
                freed += state.recount(&log.key).freed;
                let next = state.entries.front().map(|e| e.at);
                if self.bytes().saturating_sub(freed) <= target
                    || next.is_none_or(|at| others.is_some_and(|o| at > o))
                {
                    break;
                }
            }
            self.apply(Delta { added: 0, freed });
            self.evictions.memory.inc_by(evicted);
            match state.entries.front() {
                Some(next) => oldest.push(Reverse((next.at, i))),
                None => self.forget(log, state),
            }
        }
    }

    /// Apply a key's change to the store's count.
    fn apply(&self, delta: Delta) {
        if delta.added > 0 {
            self.bytes.fetch_add(delta.added, Ordering::Relaxed);
        }
        if delta.freed > 0 {
            self.bytes.fetch_sub(delta.freed, Ordering::Relaxed);
        }
    }

    /// Take `log`'s key out of the store: its next publication starts a
    /// new epoch.
    fn forget(&self, log: &Arc<KeyLog>, mut state: MutexGuard<'_, KeyState>) {
        state.forgotten = true;
        state.clear();
        let held = std::mem::take(&mut state.held);
        self.bytes.fetch_sub(held, Ordering::Relaxed);
        drop(state);
        let mut shard = self.shard(&log.key).write();
        if shard.get(&log.key).is_some_and(|l| Arc::ptr_eq(l, log)) {
            shard.remove(&log.key);
        }
    }

    /// The stream of `key`, created (in a new epoch) if there is none.
    fn log(&self, route: &Arc<str>, key: &Arc<str>) -> Arc<KeyLog> {
        let shard = self.shard(key);
        if let Some(log) = shard.read().get(key) {
            return Arc::clone(log);
        }
        let mut shard = shard.write();
        let log = shard.entry(Arc::clone(key)).or_insert_with(|| {
            let state = KeyState::new(key);
            self.bytes.fetch_add(state.held, Ordering::Relaxed);
            Arc::new(KeyLog {
                key: Arc::clone(key),
                route: Arc::clone(route),
                state: Mutex::new(state),
            })
        });
        Arc::clone(log)
    }

    fn logs(&self) -> Vec<Arc<KeyLog>> {
        self.shards
            .iter()
            .flat_map(|s| s.read().values().cloned().collect::<Vec<_>>())
            .collect()
    }

    fn shard(&self, key: &str) -> &RwLock<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }
}

/// A subscription joining the streams of its keys (see
/// [`History::subscribe`]).
pub struct Joining<'a> {
    pub route: &'a Arc<str>,
    pub topic: &'a str,
    /// The subscription's keys, sorted.
    pub keys: &'a [Arc<str>],
    pub retention: &'a Retention,
    pub recover: &'a Recover,
    /// Held by the session: frames queued here follow the reply.
    pub outbox: &'a Outbox,
}

/// The first key `recover` names that is not one of `keys`.
pub fn foreign_key<'a>(recover: &'a Recover, keys: &[Arc<str>]) -> Option<&'a str> {
    recover
        .0
        .iter()
        .map(|r| r.key.as_str())
        .find(|k| !keys.iter().any(|key| &**key == *k))
}

/// All of `frames` if they fit in `budget` (which they then use up).
pub(crate) fn frames_within(
    frames: impl Iterator<Item = Frame>,
    budget: &mut usize,
) -> Option<Vec<Frame>> {
    let mut left = *budget;
    let mut out = Vec::new();
    for frame in frames {
        left = left.checked_sub(frame.len())?;
        out.push(frame);
    }
    *budget = left;
    Some(out)
}

/// Queue `frames` as updates; whether all were queued (a full outbox is
/// closing the connection anyway).
pub(crate) fn queue(outbox: &Outbox, frames: Vec<Frame>) -> bool {
    frames
        .into_iter()
        .all(|f| outbox.push_update(f, None).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn arc(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn history(size: u32, ttl_ms: u64, snapshot: bool) -> Retention {
        Retention {
            snapshot,
            history_size: size,
            history_ttl: Duration::from_millis(ttl_ms),
        }
    }

    fn append(h: &History, key: &str, r: &Retention, data: &str) -> (u64, String) {
        h.append(&arc("r"), &arc(key), r, data, |at| {
            (at.offset, at.epoch.to_owned())
        })
    }

    fn since(
        h: &History,
        key: &str,
        offset: u64,
        epoch: &str,
        r: &Retention,
    ) -> Result<Vec<u64>, Gap> {
        h.join(&arc("r"), &[arc(key)], |j| {
            j.since(key, offset, epoch, r, Instant::now())
                .map(|it| it.map(|(o, _)| o).collect())
        })
    }

    #[test]
    fn offsets_count_from_one_per_key_and_replay_what_is_held() {
        let h = History::new(1 << 20, 1 << 20, Evictions::default());
        let r = history(3, 60_000, false);
        let (one, epoch) = append(&h, "a", &r, "1");
        assert_eq!(one, 1);
        assert_eq!(append(&h, "b", &r, "x").0, 1);
        for d in ["2", "3", "4", "5"] {
            append(&h, "a", &r, d);
        }
        assert_eq!(since(&h, "a", 2, &epoch, &r), Ok(vec![3, 4, 5]));
        assert_eq!(since(&h, "a", 5, &epoch, &r), Ok(vec![]));
        // 2 fell out of the three kept; a future offset, another epoch.
        assert_eq!(since(&h, "a", 1, &epoch, &r), Err(Gap));
        assert_eq!(since(&h, "a", 6, &epoch, &r), Err(Gap));
        assert_eq!(since(&h, "a", 4, "other", &r), Err(Gap));
        h.join(&arc("r"), &[arc("a"), arc("b")], |j| {
            assert_eq!(j.last("a"), Some((5, "5")));
            assert_eq!(j.position("b").map(|p| p.offset), Some(1));
        });
    }

    #[test]
    fn expired_updates_leave_the_history_but_the_snapshot_stays() {
        let h = History::new(1 << 20, 1 << 20, Evictions::default());
        let snap = history(10, 20, true);
        let plain = history(10, 20, false);
        let (_, e_snap) = append(&h, "s", &snap, "1");
        append(&h, "s", &snap, "2");
        let (_, e_plain) = append(&h, "p", &plain, "1");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(since(&h, "s", 1, &e_snap, &snap), Err(Gap));
        assert_eq!(since(&h, "p", 0, &e_plain, &plain), Err(Gap));
        h.sweep(|route| (route == "r").then_some(snap), |_| false);
        h.join(&arc("r"), &[arc("s")], |j| {
            assert_eq!(j.last("s"), Some((2, "2")))
        });
        // Without a snapshot the key empties; subscribed to, it stays.
        h.sweep(|_| Some(plain), |_| true);
        assert_eq!(append(&h, "p", &plain, "on"), (2, e_plain.clone()));
        std::thread::sleep(Duration::from_millis(40));
        // Nobody's: forgotten, and the next update starts a new epoch.
        h.sweep(|_| Some(plain), |_| false);
        let (offset, epoch) = append(&h, "p", &plain, "again");
        assert_eq!(offset, 1);
        assert_ne!(epoch, e_plain);
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest_updates_across_keys() {
        let evictions = Evictions::default();
        let budget = 16 * 1024;
        let h = History::new(budget, 1 << 20, evictions.clone());
        // 100-byte updates, 160 kept: chunks of ten updates (1,000 bytes).
        let r = history(160, 60_000, false);
        let data = "x".repeat(100);
        let (_, epoch_a) = append(&h, "a", &r, &data);
        let mut epoch_b = String::new();
        for _ in 0..300 {
            epoch_b = append(&h, "b", &r, &data).1;
            assert!(h.bytes() <= budget, "{}", h.bytes());
        }
        assert!(evictions.memory.get() >= 100, "{}", evictions.memory.get());
        // a's update was the oldest: gone, and with it the key.
        assert_eq!(since(&h, "a", 0, &epoch_a, &r), Err(Gap));
        assert_ne!(append(&h, "a", &r, "y").1, epoch_a);
        // b keeps its newest, and replays them in order.
        assert_eq!(
            since(&h, "b", 295, &epoch_b, &r),
            Ok(vec![296, 297, 298, 299, 300])
        );
        assert_eq!(since(&h, "b", 10, &epoch_b, &r), Err(Gap));
        h.join(&arc("r"), &[arc("b")], |j| {
            assert_eq!(j.last("b"), Some((300, data.as_str())))
        });
        h.sweep(|_| None, |_| true);
        assert_eq!((h.bytes(), h.key_count()), (0, 0));
    }

    #[test]
    fn updates_are_kept_in_chunks_and_counted_by_what_is_allocated() {
        let h = History::new(1 << 20, 1 << 20, Evictions::default());
        let r = history(64, 60_000, true);
        // Updates of several sizes, a few larger than a chunk.
        let datas: Vec<String> = (0..200)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "é".repeat(i % 7 * 40)))
            .collect();
        let (_, epoch) = append(&h, "k", &r, &datas[0]);
        for d in &datas[1..] {
            append(&h, "k", &r, d);
        }
        h.join(&arc("r"), &[arc("k")], |j| {
            let kept: Vec<(u64, String)> = j
                .since("k", 136, &epoch, &r, Instant::now())
                .map(|it| it.map(|(o, d)| (o, d.to_owned())).collect())
                .unwrap_or_default();
            let want: Vec<(u64, String)> = (137..=200).zip(datas[136..].iter().cloned()).collect();
            assert_eq!(kept, want);
            let state = j.state("k").map(|s| (s.chunks.len(), s.held));
            let (chunks, held) = state.unwrap_or_default();
            assert!((2..=64).contains(&chunks), "{chunks} chunks");
            assert_eq!(h.bytes(), held);
        });
        h.sweep(|_| None, |_| true);
        assert_eq!(h.bytes(), 0);
    }
}
