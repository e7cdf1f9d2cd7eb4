//! The live route table: route name -> the plugin serving it.
//!
//! Readers (every subscribe and publish) take a snapshot without locking;
//! a change swaps in a new table, so a call that already holds a plugin
//! finishes on it even if the route is replaced meanwhile.

use std::{collections::BTreeMap, sync::Arc};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::plugin::Plugin;

pub type Table = BTreeMap<String, Arc<Plugin>>;

pub struct RouteTable {
    table: ArcSwap<Table>,
    /// Bumped on every change; the AsyncAPI document and clients follow it.
    generation: watch::Sender<u64>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            table: ArcSwap::from_pointee(Table::new()),
            generation: watch::Sender::new(0),
        }
    }
}

impl RouteTable {
    pub fn get(&self, route: &str) -> Option<Arc<Plugin>> {
        self.table.load().get(route).cloned()
    }

    /// Every route, by name.
    pub fn snapshot(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Route names, for error messages.
    pub fn names(&self) -> Vec<String> {
        self.table.load().keys().cloned().collect()
    }

    /// Serve `plugin` under its route name; returns the plugin it replaced.
    pub fn insert(&self, plugin: Arc<Plugin>) -> Option<Arc<Plugin>> {
        let mut replaced = None;
        self.table.rcu(|table| {
            let mut next = Table::clone(table);
            replaced = next.insert(plugin.info.name.clone(), Arc::clone(&plugin));
            next
        });
        self.bump();
        replaced
    }

    /// Stop serving `route`; returns the plugin that served it.
    pub fn remove(&self, route: &str) -> Option<Arc<Plugin>> {
        let mut removed = None;
        self.table.rcu(|table| {
            let mut next = Table::clone(table);
            removed = next.remove(route);
            next
        });
        if removed.is_some() {
            self.bump();
        }
        removed
    }

    /// Changes whenever the set of routes or their versions change.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}
