//! A connection's outbound queue: bounded in bytes, never blocking the
//! publisher.
//!
//! The fan-out pushes already-encoded frames (shared bytes) and moves on; the
//! connection's writer drains everything queued in one go, feeds it to the
//! socket and flushes once. A push that would exceed the byte limit closes
//! the connection instead of waiting: one slow client never delays the
//! others, and the host's memory per connection stays bounded.
//!
//! Two exceptions:
//!
//! * Updates of "latest value" routes (quotes): over the limit, a queued
//!   update is replaced by the newer one for the same conflation slot (one
//!   per subscription and key, see [`crate::hub::registry`]), so a slow
//!   quotes client sees fewer, fresher updates instead of being
//!   disconnected. New slots are still queued up to twice the limit.
//! * Control frames (replies, `routes.changed`, `route.removed`): queued
//!   past the limit, up to three times it, so that what a latest-value
//!   client is allowed to queue never gets it closed by a reply.
//!
//! Past those hard caps, the connection is closed as a slow consumer.

use std::collections::VecDeque;

use axum::extract::ws::Utf8Bytes;
use parking_lot::{Mutex, MutexGuard};

use super::hashing::HashMap;
use tokio::sync::Notify;

/// An encoded text frame; clones share the bytes. Held as the WebSocket's
/// own text type, made from a `String` (UTF-8 already, so unchecked): the
/// transport sends it as it is. From plain bytes the transport would check
/// every frame's UTF-8 again for every subscriber, which was 6% of what a
/// delivery cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Utf8Bytes);

impl Frame {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text, for the socket.
    pub fn into_text(self) -> Utf8Bytes {
        self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl From<String> for Frame {
    fn from(text: String) -> Frame {
        Frame(Utf8Bytes::from(text))
    }
}

impl From<&'static str> for Frame {
    fn from(text: &'static str) -> Frame {
        Frame(Utf8Bytes::from_static(text))
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection is being closed by the host. Codes are documented in
/// docs/limits.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    /// The client did not read fast enough and its queue filled up.
    pub const SLOW_CONSUMER: CloseReason = CloseReason {
        code: 4008,
        reason: "slow consumer: outbound queue full",
    };
    /// The host is shutting down.
    pub const GOING_AWAY: CloseReason = CloseReason {
        code: 1001,
        reason: "server shutting down",
    };
    /// A text frame was not valid UTF-8.
    pub const INVALID_UTF8: CloseReason = CloseReason {
        code: 1007,
        reason: "text frame is not valid UTF-8",
    };
    /// The client kept sending commands over its rate limit for longer
    /// than `--rate-limit-close-after-ms`.
    pub const RATE_LIMIT: CloseReason = CloseReason {
        code: 1008,
        reason: "too many commands: over the rate limit for too long",
    };
    /// An inbound message was larger than the frame limit.
    pub const TOO_BIG: CloseReason = CloseReason {
        code: 1009,
        reason: "message too big",
    };
    /// The host serves as many connections as it is allowed to.
    pub const TOO_MANY_CONNECTIONS: CloseReason = CloseReason {
        code: 1013,
        reason: "too many connections: try again later",
    };
    /// The client's token expired and no fresh one came (`auth.refresh`).
    pub const TOKEN_EXPIRED: CloseReason = CloseReason {
        code: 4001,
        reason: "token expired",
    };
    /// The client stopped answering pings.
    pub const HEARTBEAT_TIMEOUT: CloseReason = CloseReason {
        code: 4000,
        reason: "heartbeat timeout: no pong received",
    };
    /// The connection ended for another reason (client closed, read error).
    pub const NORMAL: CloseReason = CloseReason {
        code: 1000,
        reason: "",
    };
}

/// What is being queued, which decides what happens over the limit.
#[derive(Clone, Copy)]
enum Kind {
    /// A reply or an announcement.
    Control,
    /// An update of a queue-all route.
    Update,
    /// An update of a latest-value route, with its conflation slot.
    Latest(u64),
}

/// Why a frame was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// The queue is over its byte limit; the connection is now closing.
    Overflow,
    /// The connection is already closing.
    Closed,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Frame>,
    bytes: usize,
    closing: Option<CloseReason>,
    /// Conflatable frames queued, by conflation slot: index into `frames`
    /// of the newest one. Cleared whenever `frames` is handed to the writer.
    latest: HashMap<u64, usize>,
    /// Updates replaced by newer ones since the connection opened.
    conflated: u64,
    /// Updates that arrived while a command runs (see [`Outbox::hold`]),
    /// and their bytes.
    held: Option<VecDeque<Frame>>,
    held_bytes: usize,
}

/// Updates wait behind the reply of the command running while this lives.
pub struct Hold<'a>(&'a Outbox);

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

pub struct Outbox {
    // A blocking mutex: held only to push or swap a deque, never across an await.
    state: Mutex<State>,
    ready: Notify,
    limit_bytes: usize,
    /// Updates conflated by every outbox sharing it (the host's metric).
    conflated_total: Option<prometheus_client::metrics::counter::Counter>,
}

impl Outbox {
    pub fn new(limit_bytes: usize) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            limit_bytes,
            conflated_total: None,
        }
    }

    /// An outbox that also counts its conflated updates in `counter`.
    pub fn counting(
        limit_bytes: usize,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Outbox {
            conflated_total: Some(counter),
            ..Outbox::new(limit_bytes)
        }
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Queue a control frame (a reply, `routes.changed`, `route.removed`).
    /// Over three times the limit, the connection is closed as a slow
    /// consumer and the frame dropped.
    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        self.enqueue(frame, Kind::Control)
    }

    /// Queue an update; with `latest_of` (the conflation slot of a
    /// latest-value route's update), over the limit it replaces the queued
    /// update of the same slot instead of closing the connection.
    pub fn push_update(&self, frame: Frame, latest_of: Option<u64>) -> Result<(), PushError> {
        self.enqueue(frame, latest_of.map_or(Kind::Update, Kind::Latest))
    }

    /// Hold updates back until the result is dropped: a command's reply
    /// (a control frame, queued at once) then precedes every update pushed
    /// meanwhile, such as the first update of the subscription it made.
    pub fn hold(&self) -> Hold<'_> {
        let mut state = self.lock();
        if state.held.is_none() {
            state.held = Some(VecDeque::new());
        }
        Hold(self)
    }

    fn release(&self) {
        let mut state = self.lock();
        let Some(held) = state.held.take() else {
            return;
        };
        if held.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut state.held_bytes);
        state.bytes += bytes;
        state.frames.extend(held);
        drop(state);
        self.ready.notify_one();
    }

    fn enqueue(&self, frame: Frame, kind: Kind) -> Result<(), PushError> {
        {
            let mut state = self.lock();
            if state.closing.is_some() {
                return Err(PushError::Closed);
            }
            let len = frame.len();
            if state.held.is_some() && !matches!(kind, Kind::Control) {
                // No conflation while held: a command is short.
                if state.bytes + state.held_bytes + len > self.limit_bytes.saturating_mul(2) {
                    self.overflow(state);
                    return Err(PushError::Overflow);
                }
                state.held_bytes += len;
                if let Some(held) = state.held.as_mut() {
                    held.push_back(frame);
                }
                return Ok(());
            }
            let over = state.bytes + len > self.limit_bytes && !state.frames.is_empty();
            if over {
                let cap = match kind {
                    Kind::Update => 0,
                    Kind::Latest(slot) => {
                        if let Some(&i) = state.latest.get(&slot) {
                            // Replace in place: the client keeps its position
                            // in the stream and gets the newest value.
                            let old = std::mem::replace(&mut state.frames[i], frame);
                            state.bytes = state.bytes - old.len() + len;
                            state.conflated += 1;
                            if let Some(total) = &self.conflated_total {
                                total.inc();
                            }
                            return Ok(());
                        }
                        // A slot not queued yet: allowed up to a hard cap,
                        // so that memory stays bounded even with many keys.
                        self.limit_bytes.saturating_mul(2)
                    }
                    Kind::Control => self.limit_bytes.saturating_mul(3),
                };
                if state.bytes + len > cap {
                    self.overflow(state);
                    return Err(PushError::Overflow);
                }
            }
            if let Kind::Latest(slot) = kind {
                let i = state.frames.len();
                state.latest.insert(slot, i);
            }
            state.bytes += len;
            state.frames.push_back(frame);
        }
        self.ready.notify_one();
        Ok(())
    }

    fn overflow(&self, mut state: MutexGuard<'_, State>) {
        // Logged here: the writer may be stuck on the full socket and only
        // send the close frame once the client reads again.
        tracing::info!(
            code = CloseReason::SLOW_CONSUMER.code,
            limit_bytes = self.limit_bytes,
            "closing slow consumer: outbound queue full"
        );
        state.closing = Some(CloseReason::SLOW_CONSUMER);
        state.frames.clear();
        if let Some(held) = state.held.as_mut() {
            held.clear();
        }
        state.held_bytes = 0;
        state.latest.clear();
        state.bytes = 0;
        drop(state);
        self.ready.notify_one();
    }

    /// Updates replaced by newer ones (latest-value routes) so far.
    pub fn conflated(&self) -> u64 {
        self.lock().conflated
    }

    /// Ask the writer to close the connection with `reason` (after what is
    /// already queued, except for slow consumers whose queue was dropped).
    pub fn close(&self, reason: CloseReason) {
        let mut state = self.lock();
        if state.closing.is_none() {
            state.closing = Some(reason);
        }
        drop(state);
        self.ready.notify_one();
    }

    /// Whether the connection is closing.
    pub fn is_closing(&self) -> bool {
        self.lock().closing.is_some()
    }

    /// Wait for frames and move all of them into `batch` (which must be
    /// empty). Returns the close reason once the queue is drained and the
    /// connection is closing.
    pub async fn next_batch(&self, batch: &mut VecDeque<Frame>) -> Option<CloseReason> {
        loop {
            {
                let mut state = self.lock();
                if !state.frames.is_empty() {
                    std::mem::swap(&mut state.frames, batch);
                    state.latest.clear();
                    state.bytes = 0;
                    return None;
                }
                if let Some(reason) = &state.closing {
                    return Some(reason.clone());
                }
            }
            // `notify_one` stores a permit when nobody waits, so a push
            // between the check above and this await is not missed.
            self.ready.notified().await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_in_order_then_reports_close() {
        let outbox = Outbox::new(1024);
        outbox.push("a".into()).unwrap();
        outbox.push("b".into()).unwrap();
        let mut batch = VecDeque::new();
        assert_eq!(outbox.next_batch(&mut batch).await, None);
        assert_eq!(
            batch.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        batch.clear();
        outbox.close(CloseReason::GOING_AWAY);
        assert_eq!(
            outbox.next_batch(&mut batch).await,
            Some(CloseReason::GOING_AWAY)
        );
    }

    #[tokio::test]
    async fn latest_value_replaces_queued_update_of_same_slot() {
        let outbox = Outbox::new(10);
        let (a, b, c) = (Some(1), Some(2), Some(3));
        outbox.push_update("a1-------".into(), a).unwrap();
        outbox.push_update("a2-------".into(), a).unwrap();
        outbox.push_update("b1-------".into(), b).unwrap();
        outbox.push_update("b2-------".into(), b).unwrap();
        outbox.push_update("a3-------".into(), a).unwrap();
        assert_eq!(outbox.conflated(), 3);
        let mut batch = VecDeque::new();
        assert_eq!(outbox.next_batch(&mut batch).await, None);
        assert_eq!(
            batch.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            ["a3-------", "b2-------"]
        );
        // Past twice the limit even latest-value updates disconnect.
        outbox.push_update("a4-------".into(), a).unwrap();
        outbox.push_update("b3-------".into(), b).unwrap();
        assert_eq!(
            outbox.push_update("c1-------".into(), c),
            Err(PushError::Overflow)
        );
    }

    #[tokio::test]
    async fn control_frames_over_the_limit_are_queued_up_to_a_hard_cap() {
        let outbox = Outbox::new(10);
        outbox.push_update("a1-------".into(), Some(1)).unwrap();
        outbox.push_update("b1-------".into(), Some(2)).unwrap();
        // Over the limit with latest-value updates: a reply still fits.
        outbox.push("reply----".into()).unwrap();
        outbox.push_update("a2-------".into(), Some(1)).unwrap();
        assert_eq!(outbox.push("changed--".into()), Err(PushError::Overflow));
        assert!(outbox.is_closing());
    }

    #[tokio::test]
    async fn a_held_outbox_queues_the_reply_before_updates_pushed_meanwhile() {
        let outbox = Outbox::new(1024);
        {
            let _hold = outbox.hold();
            outbox.push_update("update".into(), None).unwrap();
            outbox.push("reply".into()).unwrap();
        }
        outbox.push_update("later".into(), None).unwrap();
        let mut batch = VecDeque::new();
        assert_eq!(outbox.next_batch(&mut batch).await, None);
        assert_eq!(
            batch.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            ["reply", "update", "later"]
        );
    }

    #[tokio::test]
    async fn overflow_closes_as_slow_consumer() {
        let outbox = Outbox::new(10);
        outbox.push_update("12345678".into(), None).unwrap();
        assert_eq!(
            outbox.push_update("12345".into(), None),
            Err(PushError::Overflow)
        );
        assert_eq!(outbox.push("1".into()), Err(PushError::Closed));
        let mut batch = VecDeque::new();
        assert_eq!(
            outbox.next_batch(&mut batch).await,
            Some(CloseReason::SLOW_CONSUMER)
        );
    }
}
