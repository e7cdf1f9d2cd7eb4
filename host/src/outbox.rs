//! A connection's outbound queue: bounded in bytes, never blocking the
//! publisher.
//!
//! The fan-out pushes already-encoded frames (shared bytes) and moves on; the
//! connection's writer drains everything queued in one go, feeds it to the
//! socket and flushes once. A push that would exceed the byte limit closes
//! the connection instead of waiting: one slow client never delays the
//! others, and the host's memory per connection stays bounded.

use std::{collections::VecDeque, sync::Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

/// An encoded text frame; clones share the bytes.
pub type Frame = Utf8Bytes;

/// Why a connection is being closed by the host. Codes are documented in
/// the README ("Limits and close codes").
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
}

pub struct Outbox {
    // A std mutex: held only to push or swap a deque, never across an await.
    state: Mutex<State>,
    ready: Notify,
    limit_bytes: usize,
}

impl Outbox {
    pub fn new(limit_bytes: usize) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            limit_bytes,
        }
    }

    /// Queue a frame. Over the limit, the connection is closed as a slow
    /// consumer and the frame dropped.
    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        {
            let mut state = self.lock();
            if state.closing.is_some() {
                return Err(PushError::Closed);
            }
            let len = frame.len();
            if state.bytes + len > self.limit_bytes && !state.frames.is_empty() {
                state.closing = Some(CloseReason::SLOW_CONSUMER);
                state.frames.clear();
                state.bytes = 0;
                drop(state);
                self.ready.notify_one();
                return Err(PushError::Overflow);
            }
            state.bytes += len;
            state.frames.push_back(frame);
        }
        self.ready.notify_one();
        Ok(())
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the deque invalid.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    async fn overflow_closes_as_slow_consumer() {
        let outbox = Outbox::new(10);
        outbox.push("12345678".into()).unwrap();
        assert_eq!(outbox.push("12345".into()), Err(PushError::Overflow));
        assert_eq!(outbox.push("1".into()), Err(PushError::Closed));
        let mut batch = VecDeque::new();
        assert_eq!(
            outbox.next_batch(&mut batch).await,
            Some(CloseReason::SLOW_CONSUMER)
        );
    }
}
