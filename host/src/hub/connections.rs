//! Every connected client: how many there are (the connection limit), and
//! each one's outbox, for the frames the host sends to all (`routes.changed`).

use std::{
    collections::HashMap,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use parking_lot::Mutex;

use super::{
    outbox::{Frame, Outbox},
    registry::ConnId,
};

type Listing = Arc<Mutex<HashMap<ConnId, Weak<Outbox>>>>;

pub struct Connections {
    listing: Listing,
    /// Connections admitted and not yet closed (the limit's count).
    open: Arc<AtomicUsize>,
    next_id: AtomicU64,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            listing: Listing::default(),
            open: Arc::default(),
            next_id: AtomicU64::new(1),
        }
    }
}

/// The host serves as many connections as it is allowed to.
#[derive(Debug, thiserror::Error)]
#[error("too many connections (at most {0})")]
pub struct TooManyConnections(pub usize);

/// One admitted connection: counted, with an id; uncounted when dropped.
pub struct Admitted {
    pub id: ConnId,
    open: Arc<AtomicUsize>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Keeps a connection listed; dropping it unlists the connection.
pub struct Listed {
    conn: ConnId,
    listing: Listing,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.listing.lock().remove(&self.conn);
    }
}

impl Connections {
    /// Count a new connection, unless `max` are open.
    pub fn admit(&self, max: usize) -> Result<Admitted, TooManyConnections> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            open: Arc::clone(&self.open),
        };
        if before >= max {
            return Err(TooManyConnections(max));
        }
        Ok(admitted)
    }

    /// Connections admitted and not yet closed.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// List `conn` for [`Connections::broadcast`] while the result lives.
    pub fn list(&self, conn: ConnId, outbox: &Arc<Outbox>) -> Listed {
        self.listing.lock().insert(conn, Arc::downgrade(outbox));
        Listed {
            conn,
            listing: Arc::clone(&self.listing),
        }
    }

    /// Bytes queued to each listed client now.
    pub fn queued_bytes(&self) -> Vec<usize> {
        let outboxes: Vec<Arc<Outbox>> = self
            .listing
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        outboxes.iter().map(|o| o.queued_bytes()).collect()
    }

    /// Queue `frame` to every listed client; returns how many.
    pub fn broadcast(&self, frame: &Frame) -> usize {
        // Upgrade under the lock, push outside it: a push may close a
        // connection, whose unlisting takes this lock.
        let outboxes: Vec<Arc<Outbox>> = self
            .listing
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        outboxes
            .iter()
            .filter(|o| o.push(frame.clone()).is_ok())
            .count()
    }
}
