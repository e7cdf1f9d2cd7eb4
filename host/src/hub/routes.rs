//! The live route table: route name -> the plugin serving it.
//!
//! Readers (every subscribe and publish) take a [`Lease`] without locking;
//! a change swaps in a new table, so an operation that already holds a
//! plugin finishes on it even if the route is replaced meanwhile, and the
//! replacement waits for it (see [`crate::plugin::Plugin::drained`]).

use std::{collections::BTreeMap, sync::Arc};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::plugin::{Lease, Plugin};

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
    /// The plugin serving `route`, held for one operation.
    pub fn lease(&self, route: &str) -> Option<Lease> {
        self.table.load().get(route).map(Plugin::lease)
    }

    /// Whether `plugin` is the version serving its route now.
    pub fn is_serving(&self, plugin: &Arc<Plugin>) -> bool {
        self.table
            .load()
            .get(&*plugin.route)
            .is_some_and(|p| Arc::ptr_eq(p, plugin))
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

/// A command or publication named a route nobody serves.
#[derive(Debug, thiserror::Error)]
#[error("unknown route {route:?} (routes: {known})")]
pub struct UnknownRoute {
    pub route: String,
    /// The routes served, comma-separated, so the client can correct itself.
    pub known: String,
}

impl RouteTable {
    /// [`RouteTable::lease`], or the error that names the routes served.
    pub fn lease_or_unknown(&self, route: &str) -> Result<Lease, UnknownRoute> {
        self.lease(route).ok_or_else(|| UnknownRoute {
            route: route.to_owned(),
            known: self.names().join(", "),
        })
    }

    /// [`RouteTable::lease`] of a route whose plugin lists `tag`, or the
    /// error that names the routes with that tag (a per-module endpoint
    /// knows only those).
    pub fn lease_tagged(&self, route: &str, tag: &str) -> Result<Lease, UnknownRoute> {
        let table = self.table.load();
        match table.get(route) {
            Some(plugin) if has_tag(plugin, tag) => Ok(plugin.lease()),
            _ => Err(UnknownRoute {
                route: route.to_owned(),
                known: tagged(&table, tag)
                    .map(|p| p.info.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// Whether `plugin` lists `tag` among its tags.
pub fn has_tag(plugin: &Plugin, tag: &str) -> bool {
    plugin.info.tags.iter().any(|t| t == tag)
}

/// The plugins of `table` that list `tag`, by route name.
pub fn tagged<'t>(table: &'t Table, tag: &'t str) -> impl Iterator<Item = &'t Arc<Plugin>> {
    table.values().filter(move |p| has_tag(p, tag))
}
