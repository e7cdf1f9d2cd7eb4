//! Pre-instantiated instances of one plugin.
//!
//! An instance serves one call at a time. It goes back to the pool after a
//! clean call and is dropped after a trap or a deadline: a trapped instance
//! cannot be entered again, and one interrupted mid-call may hold any state.

use parking_lot::Mutex;

use super::engine::Instance;

/// Idle instances kept per plugin: enough for the concurrency we see, not more.
const MAX_IDLE: usize = 16;

#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Instance>>,
}

impl Pool {
    pub fn with(instance: Instance) -> Pool {
        Pool {
            idle: Mutex::new(vec![instance]),
        }
    }

    /// An idle instance, if there is one.
    pub fn take(&self) -> Option<Instance> {
        self.idle.lock().pop()
    }

    /// Return an instance after a clean call.
    pub fn give_back(&self, instance: Instance) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(instance);
        }
    }
}
