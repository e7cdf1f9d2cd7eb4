//! The instances of one plugin, bounded.
//!
//! An instance serves one call at a time. It goes back to the pool after a
//! clean call and is dropped after a trap or a deadline: a trapped instance
//! cannot be entered again, and one interrupted mid-call may hold any state.
//!
//! A call holds a [`Slot`] while it runs; there are as many slots as the
//! plugin may have live instances, and an instance is only created by a
//! call holding a slot, so live instances (idle or busy) never exceed the
//! bound however many callers arrive at once: the others wait for a slot.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::engine::Instance;

pub(crate) struct Pool {
    idle: Mutex<Vec<Pooled>>,
    slots: Arc<Semaphore>,
    max: usize,
    live: Arc<AtomicUsize>,
}

/// The right to run one call.
pub(crate) struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// An instance, counted as live until dropped.
pub(crate) struct Pooled {
    pub instance: Instance,
    _live: Live,
}

struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    /// A pool of at most `max` live instances, starting with `first`.
    pub fn new(max: usize, first: Instance) -> Pool {
        let max = max.max(1);
        let pool = Pool {
            idle: Mutex::new(Vec::with_capacity(max)),
            slots: Arc::new(Semaphore::new(max)),
            max,
            live: Arc::default(),
        };
        let first = pool.adopt(first);
        pool.idle.lock().push(first);
        pool
    }

    /// Wait for a free slot until `deadline`; `None` if none came free.
    pub async fn slot(&self, deadline: Instant) -> Option<Slot> {
        let acquire = Arc::clone(&self.slots).acquire_owned();
        match tokio::time::timeout_at(deadline.into(), acquire).await {
            Ok(Ok(permit)) => Some(Slot(permit)),
            _ => None,
        }
    }

    /// An idle instance, if there is one.
    pub fn take(&self) -> Option<Pooled> {
        self.idle.lock().pop()
    }

    /// Count a new instance as live.
    pub fn adopt(&self, instance: Instance) -> Pooled {
        self.live.fetch_add(1, Ordering::Relaxed);
        Pooled {
            instance,
            _live: Live(Arc::clone(&self.live)),
        }
    }

    /// Return an instance after a clean call.
    pub fn give_back(&self, pooled: Pooled) {
        self.idle.lock().push(pooled);
    }

    /// Instances alive now (idle or in a call).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}
