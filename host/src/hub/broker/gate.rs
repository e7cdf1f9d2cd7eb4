//! Where each key of a route with retention stands on this node, with
//! Redis (see [`super::streams`]): the offset and epoch last delivered, and
//! the key's live updates parked while a subscription joins.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use parking_lot::Mutex;

/// Most updates parked for one key while a subscription joins; past it the
/// oldest are dropped (a join is one Redis round trip).
const PARKED: usize = 65_536;

/// Delivers an update of a route with retention to this node's
/// subscribers: (route, key, offset, epoch, data).
pub type DeliverAt = Arc<dyn Fn(&str, &str, u64, &str, &str) + Send + Sync>;

#[derive(Default)]
pub struct Streams {
    keys: Mutex<HashMap<Arc<str>, Arc<KeyGate>>>,
    deliver: OnceLock<DeliverAt>,
}

#[derive(Default)]
pub(super) struct KeyGate {
    /// Joins of this key take turns.
    pub(super) join: Arc<tokio::sync::Mutex<()>>,
    pub(super) state: Mutex<Cursor>,
}

#[derive(Default)]
pub(super) struct Cursor {
    /// The epoch and offset of the last update delivered on this node.
    pub(super) epoch: Option<Arc<str>>,
    pub(super) last: u64,
    pub(super) parking: bool,
    parked: Vec<Live>,
}

struct Live {
    route: Arc<str>,
    offset: u64,
    epoch: Arc<str>,
    data: Box<str>,
}

impl Cursor {
    /// Whether an update at (`offset`, `epoch`) is news here; if so it
    /// becomes the position.
    fn admit(&mut self, offset: u64, epoch: &str) -> bool {
        if self.epoch.as_deref() == Some(epoch) && offset <= self.last {
            return false;
        }
        if self.epoch.as_deref() != Some(epoch) {
            self.epoch = Some(Arc::from(epoch));
        }
        self.last = offset;
        true
    }
}

impl Streams {
    pub fn set_delivery(&self, deliver: DeliverAt) {
        let _ = self.deliver.set(deliver);
    }

    /// An update from the key's channel: delivered unless already
    /// delivered, parked while a subscription joins.
    pub fn arrive(&self, route: &str, key: &str, offset: u64, epoch: &str, data: &str) {
        let Some(deliver) = self.deliver.get() else {
            return;
        };
        let gate = self.gate(key);
        let mut st = gate.state.lock();
        if st.parking {
            if st.parked.len() >= PARKED {
                st.parked.remove(0);
            }
            st.parked.push(Live {
                route: Arc::from(route),
                offset,
                epoch: Arc::from(epoch),
                data: Box::from(data),
            });
            return;
        }
        if st.admit(offset, epoch) {
            deliver(route, key, offset, epoch, data);
        }
    }

    /// Forget the positions of keys nobody here wants (and nobody joins).
    pub fn prune(&self, wanted: impl Fn(&str) -> bool) {
        self.keys.lock().retain(|key, gate| {
            wanted(key) || Arc::strong_count(gate) > 1 || gate.join.try_lock().is_err()
        });
    }

    pub(super) fn gate(&self, key: &str) -> Arc<KeyGate> {
        let mut keys = self.keys.lock();
        if let Some(g) = keys.get(key) {
            return Arc::clone(g);
        }
        let g = Arc::new(KeyGate::default());
        keys.insert(Arc::from(key), Arc::clone(&g));
        g
    }

    /// Stop parking `key`, delivering what was parked (after the position).
    pub(super) fn unpark(&self, key: &str, st: &mut Cursor) {
        st.parking = false;
        let parked = std::mem::take(&mut st.parked);
        let Some(deliver) = self.deliver.get() else {
            return;
        };
        for live in parked {
            if st.admit(live.offset, &live.epoch) {
                deliver(&live.route, key, live.offset, &live.epoch, &live.data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_admits_news_only() {
        let mut c = Cursor::default();
        assert!(c.admit(1, "e"));
        assert!(!c.admit(1, "e"));
        assert!(c.admit(3, "e"));
        assert!(!c.admit(2, "e"));
        // Another epoch: a new run, whatever its offsets.
        assert!(c.admit(1, "f"));
    }
}
