//! Reconciling the route table with the plugin files on disk.
//!
//! Everything that changes which plugin serves which route goes through
//! [`Reloader::reconcile`], one file at a time (a lock serialises
//! them): at startup for each file in name order, and afterwards whenever
//! the watcher reports that a file settled. Reconciling a path compares the
//! file with what the host last saw there, decides on one [`Change`], then
//! applies it:
//!
//! * **Add**: a valid plugin for a route nobody serves goes live.
//! * **Upgrade**: a valid plugin from the file that serves its route
//!   replaces the old version without a gap (see [`Reloader::upgrade`]).
//! * **Move**: the file now declares another route: its old route goes
//!   (as in a removal) and the new one is added.
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
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;

use super::{
    metrics::{Metrics, PluginEvent},
    outbox::Frame,
    registry::{HeldSubscription, Registry, Rekey},
    routes::RouteTable,
};
use crate::{
    plugin::{CompileInfo, Plugin, PluginEngine, PluginFile, cache::ArtifactCache},
    protocol,
};

/// How long an upgrade or removal waits for operations still holding the
/// old version before moving on.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Loads plugin files into the route table, moving the registry's
/// subscriptions along. It is handed only what it changes: the route table,
/// the registry, and the engine (with the compile cache) that loads plugins.
pub struct Reloader {
    engine: PluginEngine,
    metrics: Arc<Metrics>,
    cache: Option<ArtifactCache>,
    routes: Arc<RouteTable>,
    registry: Arc<Registry>,
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

/// What reconciling one file does.
enum Change {
    /// The content is what the host already reconciled.
    Unchanged,
    /// The file is gone: the route it served (if any) goes too.
    Forget,
    /// A plugin for a route nobody serves.
    Add(Arc<Plugin>),
    /// A new version of the route this file already serves.
    Upgrade { old: Arc<Plugin>, new: Arc<Plugin> },
    /// The file now declares another route: its old route goes.
    Move { old: Arc<Plugin>, new: Arc<Plugin> },
    /// Not loaded. A conflict (another file serves the route) is retried
    /// when that route is freed.
    Reject {
        sha256: String,
        reason: String,
        conflict: bool,
    },
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
    /// Instances of the serving plugin alive now, and the most it may have.
    pub instances: Option<usize>,
    pub max_instances: Option<usize>,
    /// Whether its machine code came from the compiled-artifact cache.
    pub compile: Option<CompileInfo>,
}

impl Reloader {
    pub fn new(
        engine: PluginEngine,
        cache: Option<ArtifactCache>,
        routes: Arc<RouteTable>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reloader {
            engine,
            metrics,
            cache,
            routes,
            registry,
            files: Mutex::default(),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Reconcile every `*.wasm` in `dir`; the number of routes served
    /// afterwards. The files are loaded concurrently (a first start
    /// compiles large components for seconds each), and their changes
    /// applied in file-name order, so that when two files declare one route
    /// the same one always wins.
    pub async fn load_dir(&self, dir: &Path) -> anyhow::Result<usize> {
        let files = wasm_files(dir)
            .map_err(|e| anyhow::anyhow!("cannot read plugins directory {}: {e}", dir.display()))?;
        let _busy = self.busy.lock().await;
        let loads = futures_util::future::join_all(files.iter().map(|p| self.load(p, false))).await;
        for (path, loaded) in files.iter().zip(loads) {
            let change = loaded.map_or_else(|early| early, |new| self.decide(path, new));
            self.apply(path, change, None).await;
        }
        Ok(self.routes.snapshot().len())
    }

    /// Every file the host knows, as of now (for a rescan).
    pub fn known_files(&self) -> Vec<PathBuf> {
        self.lock_files().keys().cloned().collect()
    }

    /// Bring the route table in line with the file at `path`. `changed_at`
    /// is when the file last changed, for the latency log.
    pub async fn reconcile(&self, path: &Path, changed_at: Option<Instant>) {
        if !is_plugin_file(path) {
            return;
        }
        let _busy = self.busy.lock().await;
        let change = self.plan(path, false).await;
        let mut freed = self.apply(path, change, changed_at).await;
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
                let change = self.plan(&claimant, true).await;
                freed |= self.apply(&claimant, change, None).await;
            }
        }
    }

    /// Decide what the file at `path` changes. `retry`: a rejected claimant
    /// is tried again although its content did not change.
    async fn plan(&self, path: &Path, retry: bool) -> Change {
        match self.load(path, retry).await {
            Ok(new) => self.decide(path, new),
            Err(early) => early,
        }
    }

    /// Read and load the file at `path`, unless what it changes is decided
    /// without loading it (unchanged content, a removed or unreadable file,
    /// a plugin that does not load): then that change is the error.
    async fn load(&self, path: &Path, retry: bool) -> Result<Arc<Plugin>, Change> {
        let max_bytes = self.engine.limits().max_file_bytes;
        let file = match PluginFile::read(path, max_bytes).await {
            Ok(file) => file,
            // A missing directory is not a removal: keep serving until it
            // is back (the watcher rescans then).
            Err(e) if e.is_not_found() => {
                let dir_exists = path.parent().is_some_and(Path::is_dir);
                return Err(if dir_exists {
                    Change::Forget
                } else {
                    Change::Unchanged
                });
            }
            Err(e) => {
                return Err(Change::Reject {
                    sha256: String::new(),
                    reason: e.to_string(),
                    conflict: false,
                });
            }
        };
        let known = self
            .lock_files()
            .get(path)
            .is_some_and(|s| s.sha256 == file.sha256 && !(retry && s.conflict));
        if known {
            return Err(Change::Unchanged);
        }
        let sha256 = file.sha256.clone();
        match self.engine.load(file, self.cache.as_ref()).await {
            Ok(plugin) => Ok(Arc::new(plugin)),
            Err(e) => Err(Change::Reject {
                sha256,
                reason: e.to_string(),
                conflict: false,
            }),
        }
    }

    /// What serving `new`, loaded from `path`, changes.
    fn decide(&self, path: &Path, new: Arc<Plugin>) -> Change {
        if let Some(owner) = self.owner_of(&new.info.name, path) {
            return Change::Reject {
                sha256: new.sha256.to_string(),
                reason: format!(
                    "route {:?} is already served by {} (the file serving a route keeps it)",
                    new.info.name,
                    owner.display()
                ),
                conflict: true,
            };
        }
        let previous = self.lock_files().get(path).and_then(|s| s.plugin.clone());
        match previous {
            Some(old) if old.route == new.route => Change::Upgrade { old, new },
            Some(old) => Change::Move { old, new },
            None => Change::Add(new),
        }
    }

    /// Apply `change` to the file at `path`; whether a route was freed.
    async fn apply(&self, path: &Path, change: Change, changed_at: Option<Instant>) -> bool {
        match change {
            Change::Unchanged => false,
            Change::Forget => {
                let freed = self.forget(path).await;
                if freed {
                    self.metrics.plugin_event(PluginEvent::removed);
                }
                freed
            }
            Change::Reject {
                sha256,
                reason,
                conflict,
            } => {
                self.reject(path, sha256, reason, conflict);
                self.metrics.plugin_event(PluginEvent::rejected);
                false
            }
            Change::Add(new) => {
                self.metrics.plugin_event(PluginEvent::loaded);
                self.set_serving(path, &new);
                self.routes.insert(Arc::clone(&new));
                log_live(&new, changed_at);
                false
            }
            Change::Upgrade { old, new } => {
                self.metrics.plugin_event(PluginEvent::upgraded);
                self.set_serving(path, &new);
                self.upgrade(old, Arc::clone(&new)).await;
                log_live(&new, changed_at);
                false
            }
            Change::Move { old, new } => {
                self.metrics.plugin_event(PluginEvent::removed);
                self.metrics.plugin_event(PluginEvent::loaded);
                self.set_serving(path, &new);
                self.remove_route(old).await;
                self.routes.insert(Arc::clone(&new));
                log_live(&new, changed_at);
                true
            }
        }
    }

    /// The file other than `path` that serves `route`.
    fn owner_of(&self, route: &str, path: &Path) -> Option<PathBuf> {
        self.lock_files()
            .iter()
            .find(|(p, f)| {
                p.as_path() != path && f.plugin.as_ref().is_some_and(|s| s.info.name == route)
            })
            .map(|(p, _)| p.clone())
    }

    /// Replace `old` by `new` (same route) with no update lost or doubled.
    ///
    /// Existing subscriptions keep their topics; their keys are resolved
    /// again by the new version. Before the table swap each subscription is
    /// registered under its new keys as well as its old ones: a publication
    /// resolves its keys with exactly one version, so it reaches each
    /// subscription once either way. Once operations on the old version
    /// have finished, the old keys are dropped.
    async fn upgrade(&self, old: Arc<Plugin>, new: Arc<Plugin>) {
        let mut resolved: HashMap<Arc<str>, Option<Vec<Arc<str>>>> = HashMap::new();
        let held = self.registry.held_of_route(&new.info.name);
        for sub in &held {
            if let Some(keys) = resolve(&mut resolved, &new, sub).await {
                self.registry.rekey(sub, &keys, &new.sha256, Rekey::Add);
            }
        }
        self.routes.insert(Arc::clone(&new));
        old.drained(DRAIN_TIMEOUT).await;
        // Includes subscriptions made on the old version during the swap.
        for sub in self.registry.held_of_route(&new.info.name) {
            if *sub.resolved_by == *new.sha256 {
                continue;
            }
            if let Some(keys) = resolve(&mut resolved, &new, &sub).await {
                self.registry.rekey(&sub, &keys, &new.sha256, Rekey::Add);
                self.registry.rekey(&sub, &keys, &new.sha256, Rekey::Retire);
            }
        }
        tracing::info!(
            route = %new.info.name,
            subscriptions = held.len(),
            "subscriptions moved to the new version"
        );
    }

    /// The file at `path` is gone: stop serving its route.
    async fn forget(&self, path: &Path) -> bool {
        let Some(state) = self.lock_files().remove(path) else {
            return false;
        };
        match state.plugin {
            Some(plugin) => {
                tracing::info!(file = %path.display(), route = %plugin.info.name, "plugin file removed");
                self.remove_route(plugin).await;
                true
            }
            None => false,
        }
    }

    /// Take `plugin`'s route out of the table, end its subscriptions and
    /// tell their clients.
    async fn remove_route(&self, plugin: Arc<Plugin>) {
        let route = plugin.info.name.clone();
        // Only if the table still holds this very plugin.
        if self.routes.is_serving(&plugin) {
            self.routes.remove(&route);
        }
        // Subscribes and publishes already holding the plugin finish first,
        // so nothing reaches a client after its `route.removed`.
        plugin.drained(DRAIN_TIMEOUT).await;
        let ended = self.registry.remove_route(&route);
        let mut subscriptions = 0;
        for (outbox, topics) in &ended {
            subscriptions += topics.len();
            let topics: Vec<&str> = topics.iter().map(|t| &**t).collect();
            let _ = outbox.push(Frame::from(protocol::route_removed_frame(&route, &topics)));
        }
        tracing::info!(route = %route, clients = ended.len(), subscriptions, "route removed");
    }

    fn set_serving(&self, path: &Path, plugin: &Arc<Plugin>) {
        let mut files = self.lock_files();
        let state = files.entry(path.to_path_buf()).or_default();
        state.sha256 = plugin.sha256.to_string();
        state.plugin = Some(Arc::clone(plugin));
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
                    sha256: p.map(|p| p.sha256.to_string()),
                    file_sha256: state.sha256.clone(),
                    loaded_at: p.map(|p| unix_ms(p.loaded_at)),
                    last_error: state.last_error.clone(),
                    failures: p.map_or(0, |p| p.failures()),
                    instances: p.map(|p| p.instances().0),
                    max_instances: p.map(|p| p.instances().1),
                    compile: p.map(|p| p.compile),
                }
            })
            .collect()
    }

    fn lock_files(&self) -> MutexGuard<'_, BTreeMap<PathBuf, FileState>> {
        self.files.lock()
    }
}

/// The keys `plugin` resolves an existing subscription's request to, asked
/// once per distinct request.
async fn resolve(
    cache: &mut HashMap<Arc<str>, Option<Vec<Arc<str>>>>,
    plugin: &Plugin,
    sub: &HeldSubscription,
) -> Option<Vec<Arc<str>>> {
    if let Some(keys) = cache.get(&sub.request) {
        return keys.clone();
    }
    let keys = match plugin.topics(&sub.request).await {
        Ok(s) => Some(s.keys),
        Err(e) => {
            // It keeps its old keys: publications addressed to them by key
            // still reach it.
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

fn log_live(plugin: &Plugin, changed_at: Option<Instant>) {
    let latency_ms = changed_at.map(|t| format!("{:.1}", t.elapsed().as_secs_f64() * 1e3));
    tracing::info!(
        route = %plugin.info.name,
        version = %plugin.info.version,
        delivery = %plugin.delivery,
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

/// The plugin files in `dir`, in name order. Whatever is named like one
/// is listed (a directory, a FIFO, a dangling symlink...): reading it says
/// what is wrong, and `GET /api/v1/plugins` shows it.
pub fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| is_plugin_file(p))
        .collect();
    files.sort();
    Ok(files)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
