//! History in Redis (`--redis-url`, routes with retention): each key's
//! updates live in a Redis stream, their offsets and epoch in a meta hash,
//! the same on every node (see [`super::redis`] for the script that appends).
//!
//! On a node, the updates of such a key reach its subscribers through one
//! path only, the key's Redis channel, in offset order (the publishing node
//! included: it learns the offset from the script, and its subscribers get
//! the update from the channel like everyone else's). This module keeps,
//! per key, where the node's delivery stands ([`Streams::arrive`]) and lets
//! a subscription join without a gap or a duplicate ([`join`]):
//!
//! 1. the key's live updates are parked on this node (joins of one key take
//!    turns);
//! 2. the subscription is registered, and the node waits until Redis
//!    confirms its channel subscription (so every later update arrives);
//! 3. the stream is read (one atomic pipeline);
//! 4. the new subscription gets the missed updates (or the snapshot) up to
//!    where the node's delivery stands, then the parked updates after that
//!    go to every subscriber, and the key is unparked.
//!
//! Parking lasts one Redis round trip, bounded by the command timeout.

use std::sync::Arc;

use super::{
    gate::KeyGate,
    redis::{KeyRead, RedisBroker},
};
use crate::{
    hub::{
        history::{Joining, frames_within, queue},
        outbox::Frame,
    },
    plugin::route::Retention,
    protocol::{self, KeyPosition, Positions, Retained},
};

/// Why a join through Redis did not complete.
pub enum JoinError<E> {
    /// Registering refused it: nothing is subscribed.
    Register(E),
    /// Redis failed; the subscription is registered (`added`), nothing was
    /// replayed or sent as a snapshot.
    Unavailable { added: bool },
}

/// Subscribe to a route that keeps its updates, with its history in Redis
/// (see the module's text). `subscribers` counts the subscriptions of a key
/// on this node; `replay_budget` bounds the bytes one subscribe replays.
pub async fn join<E>(
    redis: &RedisBroker,
    joining: Joining<'_>,
    replay_budget: usize,
    register: impl FnOnce() -> Result<bool, E>,
    subscribers: impl Fn(&str) -> usize,
) -> Result<Retained, JoinError<E>> {
    let Joining {
        route,
        topic,
        keys,
        retention,
        recover,
        outbox,
    } = joining;
    let streams = redis.streams();
    let mut sorted: Vec<&Arc<str>> = keys.iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let gates: Vec<Arc<KeyGate>> = sorted.iter().map(|k| streams.gate(k)).collect();
    let mut turns = Vec::with_capacity(gates.len());
    for gate in &gates {
        turns.push(Arc::clone(&gate.join).lock_owned().await);
    }
    for gate in &gates {
        gate.state.lock().parking = true;
    }
    let unpark_all = || {
        for (key, gate) in sorted.iter().zip(&gates) {
            streams.unpark(key, &mut gate.state.lock());
        }
    };
    let added = match register() {
        Ok(added) => added,
        Err(e) => {
            unpark_all();
            return Err(JoinError::Register(e));
        }
    };
    // Every update after the read below arrives on the channels.
    for key in &sorted {
        if !redis.channel_ready(key).await {
            unpark_all();
            return Err(JoinError::Unavailable { added });
        }
    }
    let history = retention.has_history();
    let size = u64::from(retention.history_size);
    let reads: Vec<(Arc<str>, Option<u64>)> = sorted
        .iter()
        .zip(&gates)
        .map(|(key, gate)| {
            let st = gate.state.lock();
            let mut from = recover
                .get(key)
                .filter(|_| history && added)
                .map(|r| r.offset);
            if added && retention.snapshot && subscribers(key) > 1 && st.last > 0 {
                // The snapshot is the update the node stands at.
                let at = st.last - 1;
                from = Some(from.map_or(at, |f| f.min(at)));
            }
            (Arc::clone(key), from)
        })
        .collect();
    let (now_ms, read) = match redis.read_streams(&reads, size + 1, retention).await {
        Ok(read) => read,
        Err(e) => {
            tracing::debug!(error = %e, "reading history from Redis failed");
            unpark_all();
            return Err(JoinError::Unavailable { added });
        }
    };
    let mut budget = replay_budget;
    let mut positions = Positions::new();
    let mut all = true;
    for ((key, gate), read) in sorted.iter().zip(&gates).zip(read) {
        let mut st = gate.state.lock();
        let epoch: Arc<str> = Arc::from(read.epoch.as_str());
        let same = st.epoch.as_deref() == Some(&*epoch);
        let old = added && same && subscribers(key) > 1;
        let base = if old { st.last } else { read.offset };
        let from = recover.get(key);
        let mut recovered = None;
        if added {
            let mut replayed = false;
            if let (true, Some(from)) = (history, from) {
                replayed = *from.epoch == *epoch
                    && missed(&read, from.offset, base, size, retention, now_ms)
                        .and_then(|updates| {
                            let frames = updates.map(|(offset, data)| {
                                Frame::from(protocol::update_frame_at(
                                    route, topic, key, offset, &epoch, data,
                                ))
                            });
                            frames_within(frames, &mut budget)
                        })
                        .is_some_and(|frames| queue(outbox, frames));
                recovered = Some(replayed);
            }
            if !replayed && retention.snapshot {
                let snapshot = match old {
                    true => read.entries.iter().find(|e| e.0 == base),
                    false => read.last.as_ref().filter(|e| e.0 == base),
                };
                if let Some((offset, _, data)) = snapshot {
                    let frame = match history {
                        true => protocol::update_frame_at(route, topic, key, *offset, &epoch, data),
                        false => protocol::update_frame(route, topic, data),
                    };
                    queue(outbox, vec![Frame::from(frame)]);
                }
            }
            if !old {
                st.epoch = Some(Arc::clone(&epoch));
                st.last = base;
            }
        } else if from.is_some() {
            recovered = Some(false);
        }
        streams.unpark(key, &mut st);
        all &= recovered != Some(false);
        if history {
            positions.insert(
                Arc::clone(key),
                KeyPosition {
                    offset: base,
                    epoch,
                    recovered,
                },
            );
        }
    }
    drop(turns);
    Ok(Retained {
        positions: history.then_some(positions),
        recovered: (!recover.is_empty()).then_some(all),
    })
}

/// The updates after `offset` up to `base`, when the read holds every one
/// of them, within the route's size and TTL.
fn missed<'a>(
    read: &'a KeyRead,
    offset: u64,
    base: u64,
    size: u64,
    retention: &Retention,
    now_ms: u64,
) -> Option<impl Iterator<Item = (u64, &'a str)>> {
    if offset > base || base - offset > size {
        return None;
    }
    let wanted: Vec<&(u64, u64, String)> = read
        .entries
        .iter()
        .filter(|e| e.0 > offset && e.0 <= base)
        .collect();
    let complete =
        wanted.len() as u64 == base - offset && wanted.first().is_none_or(|e| e.0 == offset + 1);
    let ttl = u64::try_from(retention.history_ttl.as_millis()).unwrap_or(u64::MAX);
    let fresh = ttl == 0
        || wanted
            .first()
            .is_none_or(|e| now_ms.saturating_sub(e.1) <= ttl);
    (complete && fresh).then(|| wanted.into_iter().map(|e| (e.0, e.2.as_str())))
}
