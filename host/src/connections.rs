//! Every connected client's outbox, for the frames the host sends to all of
//! them (`routes.changed`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use crate::{
    outbox::{Frame, Outbox},
    registry::ConnId,
};

#[derive(Default)]
pub struct Connections {
    inner: Arc<Mutex<HashMap<ConnId, Weak<Outbox>>>>,
}

/// Keeps a connection listed; dropping it unlists the connection.
pub struct Listed {
    conn: ConnId,
    inner: Arc<Mutex<HashMap<ConnId, Weak<Outbox>>>>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.conn);
    }
}

impl Connections {
    pub fn register(&self, conn: ConnId, outbox: &Arc<Outbox>) -> Listed {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(conn, Arc::downgrade(outbox));
        Listed {
            conn,
            inner: Arc::clone(&self.inner),
        }
    }

    /// Queue `frame` to every connected client; returns how many.
    pub fn broadcast(&self, frame: &Frame) -> usize {
        let outboxes: Vec<Arc<Outbox>> = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        outboxes
            .iter()
            .filter(|o| o.push(frame.clone()).is_ok())
            .count()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
