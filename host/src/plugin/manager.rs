//! Reconciling the route table with the plugin files on disk.
//!
//! Everything that changes which plugin serves which route goes through
//! [`PluginManager::reconcile`], one file at a time (a lock serialises
//! them): at startup for each file in name order, and afterwards whenever
//! the watcher reports that a file settled. Reconciling a path compares the
//! file with what the host last saw there and then adds, upgrades, removes
//! or rejects:
//!
//! * **Add**: a valid plugin for a route nobody serves goes live.
//! * **Upgrade**: a valid plugin from the file that serves its route
//!   replaces the old version without a gap (see [`PluginManager::upgrade`]).
//! * **Remove**: the file is gone (while its directory exists): the route
//!   leaves the table and its subscribers are told.
//! * **Reject**: the file does not load, or declares a route another file
//!   serves. One log line names the file and the reason; whatever was
//!   serving keeps serving. The file that serves a route keeps it, so at
//!   startup the first file in name order wins; when the route is freed,
//!   rejected claimants are retried in name order.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{CompileInfo, Plugin, cache::ArtifactCache};
use crate::{
    outbox::Frame,
    protocol,
    registry::{HeldSubscription, Rekey},
    server::Host,
};

/// How long an upgrade or removal waits for calls still running on the old
/// version before moving on.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

pub struct PluginManager {
    cache: Option<ArtifactCache>,
    files: Mutex<BTreeMap<PathBuf, FileState>>,
    /// One reconcile at a time.
    busy: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct FileState {
    /// SHA-256 of the content last reconciled.
    sha256: String,
    /// The plugin this file serves, if any.
    plugin: Option<Arc<Plugin>>,
    /// Why the content last reconciled was rejected.
    last_error: Option<String>,
    /// Rejected because another file serves its route: retried when the
    /// route is freed.
    conflict: bool,
    attempted_at: Option<SystemTime>,
}

/// One plugin file, as `GET /api/v1/plugins` shows it.
#[derive(Debug, Serialize)]
pub struct PluginFileView {
    pub file: String,
    /// `serving` if a plugin from this file serves a route (possibly an
    /// earlier version of the file, when the current one was rejected),
    /// else `rejected`.
    pub status: &'static str,
    pub route: Option<String>,
    pub version: Option<String>,
    /// SHA-256 of the serving plugin's content.
    pub sha256: Option<String>,
    /// SHA-256 of the file's current content.
    pub file_sha256: String,
    /// When the serving plugin was loaded (Unix time, milliseconds).
    pub loaded_at: Option<u64>,
    pub last_error: Option<String>,
    /// Calls of the serving plugin that failed.
    pub failures: u64,
    /// Whether its machine code came from the compiled-artifact cache.
    pub compile: Option<CompileInfo>,
}

impl PluginManager {
    pub fn new(cache: Option<ArtifactCache>) -> Self {
        PluginManager {
            cache,
            files: Mutex::default(),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Reconcile every `*.wasm` in `dir`, in file-name order; the number of
    /// routes served afterwards.
    pub async fn load_dir(&self, host: &Host, dir: &Path) -> anyhow::Result<usize> {
        let files = wasm_files(dir)
            .map_err(|e| anyhow::anyhow!("cannot read plugins directory {}: {e}", dir.display()))?;
        for file in files {
            self.reconcile(host, &file, None).await;
        }
        Ok(host.routes.snapshot().len())
    }

    /// Every file the host knows, as of now (for a rescan).
    pub fn known_files(&self) -> Vec<PathBuf> {
        self.lock_files().keys().cloned().collect()
    }

    /// Bring the route table in line with the file at `path`. `changed_at`
    /// is when the file last changed, for the latency log.
    pub async fn reconcile(&self, host: &Host, path: &Path, changed_at: Option<Instant>) {
        if !is_plugin_file(path) {
            return;
        }
        let _busy = self.busy.lock().await;
        let mut freed = self.reconcile_one(host, path, changed_at, false).await;
        // A freed route goes to the first rejected claimant in name order.
        let mut rounds = 0;
        while freed && rounds < 8 {
            freed = false;
            rounds += 1;
            let claimants: Vec<PathBuf> = self
                .lock_files()
                .iter()
                .filter(|(_, f)| f.conflict)
                .map(|(p, _)| p.clone())
                .collect();
            for claimant in claimants {
                freed |= self.reconcile_one(host, &claimant, None, true).await;
            }
        }
    }

    /// Returns whether a route was freed.
    async fn reconcile_one(
        &self,
        host: &Host,
        path: &Path,
        changed_at: Option<Instant>,
        retry: bool,
    ) -> bool {
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A missing directory is not a removal: keep serving until
                // it is back (the watcher rescans then).
                let dir_exists = path.parent().is_some_and(Path::is_dir);
                return dir_exists && self.forget(host, path).await;
            }
            Err(e) => {
                self.reject(path, String::new(), format!("cannot read file: {e}"), false);
                return false;
            }
        };
        let sha256 = hex(&Sha256::digest(&bytes));
        {
            let files = self.lock_files();
            if let Some(state) = files.get(path)
                && state.sha256 == sha256
                && !(retry && state.conflict)
            {
                return false;
            }
        }
        let plugin = match host
            .engine
            .load_bytes(path, bytes, self.cache.as_ref())
            .await
        {
            Ok(plugin) => Arc::new(plugin),
            Err(e) => {
                self.reject(path, sha256, e.to_string(), false);
                return false;
            }
        };
        let route = plugin.info.name.clone();
        let owner = self
            .lock_files()
            .iter()
            .find(|(p, f)| {
                p.as_path() != path && f.plugin.as_ref().is_some_and(|s| s.info.name == route)
            })
            .map(|(p, _)| p.clone());
        if let Some(owner) = owner {
            self.reject(
                path,
                sha256,
                format!(
                    "route {route:?} is already served by {} (the file serving a route keeps it)",
                    owner.display()
                ),
                true,
            );
            return false;
        }
        let previous = self.lock_files().get(path).and_then(|f| f.plugin.clone());
        let mut freed = false;
        match previous {
            Some(old) if old.info.name == route => {
                self.set_serving(path, sha256, Arc::clone(&plugin));
                self.upgrade(host, old, Arc::clone(&plugin)).await;
            }
            other => {
                if let Some(old) = other {
                    // The file now declares another route: its old one goes.
                    self.set_serving(path, sha256, Arc::clone(&plugin));
                    self.remove_route(host, old).await;
                    freed = true;
                } else {
                    self.set_serving(path, sha256, Arc::clone(&plugin));
                }
                host.routes.insert(Arc::clone(&plugin));
            }
        }
        log_live(&plugin, changed_at);
        freed
    }

    /// Replace `old` by `new` (same route) with no update lost or doubled.
    ///
    /// Existing subscriptions keep their topics; their keys are resolved
    /// again by the new version. Before the table swap each subscription is
    /// registered under its new keys as well as its old ones: a publication
    /// resolves its keys with exactly one version, so it reaches each
    /// subscription once either way. Once calls on the old version have
    /// finished, the old keys are dropped.
    async fn upgrade(&self, host: &Host, old: Arc<Plugin>, new: Arc<Plugin>) {
        let limits = &host.config.limits;
        let mut resolved: HashMap<Arc<str>, Option<Vec<Arc<str>>>> = HashMap::new();
        let held = host.registry.held_of_route(&new.info.name);
        for sub in &held {
            if let Some(keys) = self.resolve(&mut resolved, &new, sub, limits).await {
                host.registry.rekey(sub, &keys, &new.sha256, Rekey::Add);
            }
        }
        if let Some(replaced) = host.routes.insert(Arc::clone(&new)) {
            drop(replaced);
        }
        drain(old).await;
        // Includes subscriptions made on the old version during the swap.
        for sub in host.registry.held_of_route(&new.info.name) {
            if *sub.resolved_by == *new.sha256 {
                continue;
            }
            if let Some(keys) = self.resolve(&mut resolved, &new, &sub, limits).await {
                host.registry.rekey(&sub, &keys, &new.sha256, Rekey::Add);
                host.registry.rekey(&sub, &keys, &new.sha256, Rekey::Retire);
            }
        }
        tracing::info!(
            route = %new.info.name,
            subscriptions = held.len(),
            "subscriptions moved to the new version"
        );
    }

    async fn resolve(
        &self,
        cache: &mut HashMap<Arc<str>, Option<Vec<Arc<str>>>>,
        plugin: &Plugin,
        sub: &HeldSubscription,
        limits: &crate::config::Limits,
    ) -> Option<Vec<Arc<str>>> {
        if let Some(keys) = cache.get(&sub.request) {
            return keys.clone();
        }
        let keys = match plugin.topics(&sub.request, limits).await {
            Ok(s) => Some(s.keys),
            Err(e) => {
                // It keeps its old keys: publications addressed to them by
                // topic still reach it.
                tracing::warn!(
                    route = %plugin.info.name,
                    topic = %sub.topic,
                    "new version cannot resolve an existing subscription: {e}"
                );
                None
            }
        };
        cache.insert(Arc::clone(&sub.request), keys.clone());
        keys
    }

    /// The file at `path` is gone: stop serving its route.
    async fn forget(&self, host: &Host, path: &Path) -> bool {
        let Some(state) = self.lock_files().remove(path) else {
            return false;
        };
        match state.plugin {
            Some(plugin) => {
                tracing::info!(file = %path.display(), route = %plugin.info.name, "plugin file removed");
                self.remove_route(host, plugin).await;
                true
            }
            None => false,
        }
    }

    /// Take `plugin`'s route out of the table, end its subscriptions and
    /// tell their clients.
    async fn remove_route(&self, host: &Host, plugin: Arc<Plugin>) {
        let route = plugin.info.name.clone();
        // Only if the table still holds this very plugin.
        if host
            .routes
            .get(&route)
            .is_some_and(|p| Arc::ptr_eq(&p, &plugin))
        {
            host.routes.remove(&route);
        }
        // Subscribes and publishes already holding the plugin finish first,
        // so nothing reaches a client after its `route.removed`.
        drain(plugin).await;
        let ended = host.registry.remove_route(&route);
        let mut subscriptions = 0;
        for (outbox, topics) in &ended {
            subscriptions += topics.len();
            let topics: Vec<&str> = topics.iter().map(|t| &**t).collect();
            let _ = outbox.push(Frame::from(protocol::route_removed_frame(&route, &topics)));
        }
        tracing::info!(route = %route, clients = ended.len(), subscriptions, "route removed");
    }

    fn set_serving(&self, path: &Path, sha256: String, plugin: Arc<Plugin>) {
        let mut files = self.lock_files();
        let state = files.entry(path.to_path_buf()).or_default();
        state.sha256 = sha256;
        state.plugin = Some(plugin);
        state.last_error = None;
        state.conflict = false;
        state.attempted_at = Some(SystemTime::now());
    }

    fn reject(&self, path: &Path, sha256: String, reason: String, conflict: bool) {
        let serving = {
            let mut files = self.lock_files();
            let state = files.entry(path.to_path_buf()).or_default();
            state.sha256 = sha256;
            state.last_error = Some(reason.clone());
            state.conflict = conflict;
            state.attempted_at = Some(SystemTime::now());
            state
                .plugin
                .as_ref()
                .map(|p| format!("{} {}", p.info.name, p.info.version))
        };
        match serving {
            Some(serving) => tracing::error!(
                file = %path.display(),
                "plugin rejected: {}: {reason} (still serving {serving})",
                path.display()
            ),
            None => tracing::error!(
                file = %path.display(),
                "plugin rejected: {}: {reason}",
                path.display()
            ),
        }
    }

    /// Every known plugin file, by name.
    pub fn views(&self) -> Vec<PluginFileView> {
        self.lock_files()
            .iter()
            .map(|(path, state)| {
                let p = state.plugin.as_ref();
                PluginFileView {
                    file: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    status: if p.is_some() { "serving" } else { "rejected" },
                    route: p.map(|p| p.info.name.clone()),
                    version: p.map(|p| p.info.version.clone()),
                    sha256: p.map(|p| p.sha256.clone()),
                    file_sha256: state.sha256.clone(),
                    loaded_at: p.map(|p| unix_ms(p.loaded_at)),
                    last_error: state.last_error.clone(),
                    failures: p.map_or(0, |p| p.failures()),
                    compile: p.map(|p| p.compile),
                }
            })
            .collect()
    }

    fn lock_files(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, FileState>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Wait (bounded) until nothing but us holds `plugin`: calls that took it
/// from the table before a swap have finished.
async fn drain(plugin: Arc<Plugin>) {
    let started = Instant::now();
    while Arc::strong_count(&plugin) > 1 && started.elapsed() < DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn log_live(plugin: &Plugin, changed_at: Option<Instant>) {
    let latency_ms = changed_at.map(|t| format!("{:.1}", t.elapsed().as_secs_f64() * 1e3));
    tracing::info!(
        route = %plugin.info.name,
        version = %plugin.info.version,
        delivery = ?plugin.delivery,
        file = %plugin.file.display(),
        sha256 = %&plugin.sha256[..12],
        cached = plugin.compile.cached,
        compile_ms = format!("{:.1}", plugin.compile.ms),
        since_last_write_ms = latency_ms.as_deref().unwrap_or("-"),
        "route loaded"
    );
}

/// Plugin files are `*.wasm` directly in the directory; dot-files are
/// editors' and copiers' temporaries.
pub fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
        && path
            .file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
}

/// The plugin files in `dir`, in name order.
pub fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| is_plugin_file(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Send `routes.changed` to every client whenever the route table changes.
pub async fn announce_changes(host: Arc<Host>, mut changes: tokio::sync::watch::Receiver<u64>) {
    while changes.changed().await.is_ok() {
        let table = host.routes.snapshot();
        let routes: Vec<(&str, &str)> = table
            .values()
            .map(|p| (p.info.name.as_str(), p.info.version.as_str()))
            .collect();
        let frame = Frame::from(protocol::routes_changed_frame(&routes));
        let clients = host.connections.broadcast(&frame);
        tracing::debug!(clients, routes = routes.len(), "announced routes.changed");
    }
}
