//! From a `.wasm` file to a checked, ready-to-call [`Plugin`], in linear steps:
//! read, compile, check the contract, pre-instantiate, ask the plugin who it
//! is, check its answers. Any failure rejects the file with one reason.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicU64},
    time::{Instant, SystemTime},
};

use tokio_util::task::TaskTracker;
use wasmtime::component::{Component, ComponentExportIndex};

use super::{
    authorized::AuthorizeCache,
    bindings::RoutePluginPre,
    cache::{ArtifactCache, Lookup},
    engine::{Instance, PluginEngine, PluginState},
    output::PluginOutput,
    pool::Pool,
    route::{CompileInfo, DeliveryPolicy, Plugin, Retention, RouteInfo, TopicsCache},
    schema::Schema,
};

/// The version of the `ws-router:plugin` package this host implements.
pub const CONTRACT_VERSION: &str = "0.1.3";

/// A plugin file's content, read once and hashed once.
pub struct PluginFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
}

/// Why a plugin file was not read. Anyone who can write the plugins
/// directory can put anything there: a FIFO (reading it would block the
/// reload loop), a symlink to `/dev/zero` (reading it would never end), a
/// file of gigabytes.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file")]
    NotRegular,
    #[error("a symlink that resolves outside the plugins directory (to {0})")]
    OutsideDir(String),
    #[error("the file is {size} bytes, over the limit of {max} bytes (--max-plugin-bytes)")]
    TooBig { size: u64, max: u64 },
}

impl FileError {
    /// The file does not exist (it was removed).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

impl PluginFile {
    pub fn new(path: &Path, bytes: Vec<u8>) -> PluginFile {
        PluginFile {
            path: path.to_path_buf(),
            sha256: sha256_hex(&bytes),
            bytes,
        }
    }

    /// Read the plugin file at `path`: a regular file of at most
    /// `max_bytes`, or a symlink to one inside the same directory.
    pub async fn read(path: &Path, max_bytes: u64) -> Result<PluginFile, FileError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || read_checked(&path, max_bytes))
            .await
            .map_err(|e| FileError::Io(std::io::Error::other(e)))?
    }
}

fn read_checked(path: &Path, max_bytes: u64) -> Result<PluginFile, FileError> {
    use std::io::Read;
    if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        let dir = path.parent().unwrap_or(Path::new(".")).canonicalize()?;
        let target = path.canonicalize()?;
        if !target.starts_with(&dir) {
            return Err(FileError::OutsideDir(target.display().to_string()));
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Opening a FIFO for reading waits for a writer; non-blocking, it does
    // not, and the type check below refuses it. Checking the open file
    // (not the path) leaves no gap for the path to be swapped meanwhile.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(FileError::NotRegular);
    }
    let too_big = |size| FileError::TooBig {
        size,
        max: max_bytes,
    };
    if meta.len() > max_bytes {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(PluginFile::new(path, bytes))
}

/// The interface every route plugin exports, without its version.
const ROUTE_INTERFACE: &str = "ws-router:plugin/route";
/// The optional interface declaring the delivery policy (since 0.1.1). The
/// lookup matches any semver-compatible version the plugin exports.
const DELIVERY_INTERFACE: &str = "ws-router:plugin/delivery@0.1.1";
/// The optional interface deciding who may subscribe (since 0.1.2).
const AUTHORIZE_INTERFACE: &str = "ws-router:plugin/authorize@0.1.2";
/// The optional interface declaring snapshots and history (since 0.1.3).
const RETENTION_INTERFACE: &str = "ws-router:plugin/retention@0.1.3";

/// Bounds of a route's retention settings (the WIT `retention` interface
/// states them). Memory is bounded host-wide by the history's byte budget
/// too; these keep one route's declaration within reason: history is for
/// recovering across a reconnect, not an archive.
pub const MAX_HISTORY_SIZE: u32 = 100_000;
pub const MAX_HISTORY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Why a file was not loaded. Each names the reason in one line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    File(#[from] FileError),
    #[error("not a WebAssembly component: {0}")]
    NotComponent(String),
    #[error("not a route plugin: it does not export {ROUTE_INTERFACE} (it exports: {0})")]
    WrongWorld(String),
    #[error(
        "incompatible contract: the plugin needs {ROUTE_INTERFACE}@{needs}, this host offers {ROUTE_INTERFACE}@{CONTRACT_VERSION} (compatible: 0.1.x)"
    )]
    IncompatibleVersion { needs: String },
    #[error("cannot link: {0}")]
    Link(String),
    #[error("plugin failed while loading ({call}): {message}")]
    Trap { call: &'static str, message: String },
    #[error("plugin did not answer within {ms} ms while loading ({call})")]
    Deadline { call: &'static str, ms: u128 },
    #[error("invalid route name {0:?}: use 1-64 lowercase ASCII letters, digits, '_' or '-'")]
    BadName(String),
    #[error("invalid {field}: {problem}")]
    BadMetadata {
        field: &'static str,
        problem: String,
    },
    #[error("invalid retention settings: {0}")]
    BadRetention(String),
    #[error("invalid {which} schema: {message}")]
    BadSchema {
        which: &'static str,
        message: String,
    },
}

impl PluginEngine {
    /// Load the plugin in `path`, compiling it or taking it from `cache`.
    pub async fn load_path(
        &self,
        path: &Path,
        cache: Option<&ArtifactCache>,
    ) -> Result<Plugin, LoadError> {
        let file = PluginFile::read(path, self.limits().max_file_bytes).await?;
        self.load(file, cache).await
    }

    /// Load the plugin in `file`, compiling it or taking it from `cache`.
    pub async fn load(
        &self,
        file: PluginFile,
        cache: Option<&ArtifactCache>,
    ) -> Result<Plugin, LoadError> {
        let PluginFile {
            path,
            bytes,
            sha256,
        } = file;
        let path = path.as_path();
        let (component, compile) = self.compile(path, &sha256, bytes, cache).await?;
        self.check_contract(&component)?;
        let instance_pre = self
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let output = PluginOutput::new(&name);
        let (delivery, retention) = self.ask_options(&instance_pre, &output).await?;
        let authorize = find_authorize(&component);
        let pre =
            RoutePluginPre::new(instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let deadline = self.load_deadline();
        let mut instance = self
            .instantiate(&pre, &output, deadline)
            .await
            .map_err(|e| self.load_error("instantiate", deadline, e))?;

        let info = self.ask_info(&mut instance).await?;
        let request_schema = self.ask_schema(&mut instance, "request").await?;
        let data_schema = self.ask_schema(&mut instance, "data").await?;

        Ok(Plugin {
            route: Arc::from(info.name.as_str()),
            delivery,
            retention,
            authorize,
            info,
            request_schema,
            data_schema,
            file: path.to_path_buf(),
            sha256: Arc::from(sha256),
            loaded_at: SystemTime::now(),
            compile,
            pre,
            engine: self.clone(),
            pool: Pool::new(self.limits().instances, instance),
            output,
            failures: AtomicU64::new(0),
            leases: TaskTracker::new(),
            resolved: TopicsCache::new(),
            authorized: AuthorizeCache::new(self.limits().authorize_memory),
        })
    }

    /// Compile on a blocking thread (a large component takes seconds), or
    /// take the compiled component from the cache.
    async fn compile(
        &self,
        path: &Path,
        sha256: &str,
        bytes: Vec<u8>,
        cache: Option<&ArtifactCache>,
    ) -> Result<(Component, CompileInfo), LoadError> {
        let engine = self.engine().clone();
        let path: PathBuf = path.to_path_buf();
        let sha256 = sha256.to_owned();
        let cache = cache.cloned();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            if let Some(cache) = &cache {
                match cache.get(&engine, &sha256) {
                    Lookup::Hit(component) => {
                        let ms = started.elapsed().as_secs_f64() * 1e3;
                        tracing::info!(file = %path.display(), ms = format!("{ms:.1}"), "compiled plugin loaded from cache");
                        return Ok((component, CompileInfo { cached: true, ms }));
                    }
                    Lookup::Miss => {}
                    Lookup::Invalid(why) => {
                        tracing::warn!(file = %path.display(), "discarded compiled-plugin cache entry, recompiling: {why}");
                    }
                }
            }
            tracing::info!(file = %path.display(), bytes = bytes.len(), "compiling plugin");
            let component = Component::new(&engine, &bytes)
                .map_err(|e| LoadError::NotComponent(first_line(&format!("{e:#}"))))?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            tracing::info!(file = %path.display(), ms = format!("{ms:.1}"), "compiled plugin");
            if let Some(cache) = &cache
                && let Err(e) = cache.put(&sha256, &component)
            {
                tracing::warn!(file = %path.display(), dir = %cache.dir().display(), "cannot write compiled-plugin cache entry: {e:#}");
            }
            Ok((component, CompileInfo { cached: false, ms }))
        })
        .await
        .map_err(|e| LoadError::NotComponent(format!("compiler panicked: {e}")))?
    }

    /// Accept any export of `ws-router:plugin/route` whose version is
    /// semver-compatible with ours (wasmtime's export lookup then finds it);
    /// otherwise name the version the plugin needs.
    fn check_contract(&self, component: &Component) -> Result<(), LoadError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(self.engine())
            .map(|(name, _)| name.to_owned())
            .collect();
        let versions: Vec<&str> = exports
            .iter()
            .filter_map(|e| e.strip_prefix(ROUTE_INTERFACE)?.strip_prefix('@'))
            .collect();
        if versions
            .iter()
            .any(|v| semver_compatible(v, CONTRACT_VERSION))
        {
            return Ok(());
        }
        match versions.first() {
            Some(version) => Err(LoadError::IncompatibleVersion {
                needs: (*version).to_owned(),
            }),
            None if exports.iter().any(|e| e == ROUTE_INTERFACE) => {
                Err(LoadError::IncompatibleVersion {
                    needs: "(unversioned)".to_owned(),
                })
            }
            None => Err(LoadError::WrongWorld(if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            })),
        }
    }

    /// When a call made while loading must have answered.
    fn load_deadline(&self) -> Instant {
        Instant::now() + self.limits().load_deadline
    }

    /// Run `call` (named `name`) of a plugin being loaded, bounded in
    /// wall-clock time: a plugin waiting in WASI runs no wasm code, so the
    /// epoch check alone would never stop it, and the load (and with it hot
    /// reload) would wait forever.
    async fn bounded<T>(
        &self,
        name: &'static str,
        deadline: Instant,
        call: impl Future<Output = wasmtime::Result<T>>,
    ) -> Result<T, LoadError> {
        match tokio::time::timeout_at(deadline.into(), call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.load_error(name, deadline, e)),
            Err(_) => Err(LoadError::Deadline {
                call: name,
                ms: self.limits().load_deadline.as_millis(),
            }),
        }
    }

    fn load_error(&self, call: &'static str, deadline: Instant, e: wasmtime::Error) -> LoadError {
        let interrupted = matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        );
        if interrupted || Instant::now() >= deadline {
            return LoadError::Deadline {
                call,
                ms: self.limits().load_deadline.as_millis(),
            };
        }
        LoadError::Trap {
            call,
            message: truncate(&format!("{e:#}"), MAX_REASON),
        }
    }

    /// The route's delivery policy and retention, from the optional
    /// `delivery` and `retention` interfaces (probed by name: plugins built
    /// against older contracts do not export them), on one instance.
    async fn ask_options(
        &self,
        pre: &wasmtime::component::InstancePre<PluginState>,
        output: &std::sync::Arc<PluginOutput>,
    ) -> Result<(DeliveryPolicy, Retention), LoadError> {
        use wasmtime::component::Val;
        let deadline = self.load_deadline();
        let mut store = self.store(output);
        self.arm(&mut store, deadline);
        let instance = self
            .bounded("instantiate", deadline, pre.instantiate_async(&mut store))
            .await?;
        // Each optional call: `None` when the plugin does not export its
        // interface, else the function's one result.
        let mut call = async |iface_name: &str, call: &'static str| {
            let Some(iface) = instance.get_export_index(&mut store, None, iface_name) else {
                return Ok(None);
            };
            let func = instance
                .get_export_index(&mut store, Some(&iface), call)
                .and_then(|f| instance.get_func(&mut store, f))
                .ok_or_else(|| LoadError::Trap {
                    call,
                    message: format!("{iface_name} has no {call} function"),
                })?;
            let deadline = self.load_deadline();
            self.arm(&mut store, deadline);
            let mut results = [Val::Bool(false)];
            self.bounded(
                call,
                deadline,
                func.call_async(&mut store, &[], &mut results),
            )
            .await?;
            let [result] = results;
            Ok::<_, LoadError>(Some(result))
        };
        let unexpected = |call: &'static str, what: &str| LoadError::Trap {
            call,
            message: format!("unexpected {what}"),
        };

        let delivery = match call(DELIVERY_INTERFACE, "delivery-policy").await? {
            None => DeliveryPolicy::QueueAll,
            Some(Val::Enum(case)) if case == "queue-all" => DeliveryPolicy::QueueAll,
            Some(Val::Enum(case)) if case == "latest-value" => DeliveryPolicy::LatestValue,
            Some(_) => return Err(unexpected("delivery-policy", "delivery policy")),
        };
        let retention = match call(RETENTION_INTERFACE, "retention-policy").await? {
            None => Retention::NONE,
            Some(Val::Record(fields)) => {
                let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
                match (
                    field("snapshot"),
                    field("history-size"),
                    field("history-ttl-ms"),
                ) {
                    (Some(Val::Bool(snapshot)), Some(Val::U32(size)), Some(Val::U32(ttl_ms))) => {
                        check_retention(*snapshot, *size, *ttl_ms)?
                    }
                    _ => return Err(unexpected("retention-policy", "retention settings")),
                }
            }
            Some(_) => return Err(unexpected("retention-policy", "retention settings")),
        };
        Ok((delivery, retention))
    }

    async fn ask_info(&self, instance: &mut Instance) -> Result<RouteInfo, LoadError> {
        let deadline = self.load_deadline();
        self.arm(&mut instance.store, deadline);
        let call = instance
            .bindings
            .ws_router_plugin_route()
            .call_info(&mut instance.store);
        let info = self.bounded("info", deadline, call).await?;
        check_metadata(RouteInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            tags: info.tags,
        })
    }

    async fn ask_schema(
        &self,
        instance: &mut Instance,
        which: &'static str,
    ) -> Result<Schema, LoadError> {
        let deadline = self.load_deadline();
        self.arm(&mut instance.store, deadline);
        let route = instance.bindings.ws_router_plugin_route();
        let text = if which == "request" {
            let call = route.call_request_schema(&mut instance.store);
            self.bounded("request-schema", deadline, call).await?
        } else {
            let call = route.call_data_schema(&mut instance.store);
            self.bounded("data-schema", deadline, call).await?
        };
        Schema::compile(&text).map_err(|message| LoadError::BadSchema {
            which,
            message: truncate(&message, MAX_REASON),
        })
    }
}

/// The plugin's `authorize` function, when it exports the interface (in any
/// semver-compatible version: wasmtime's lookup matches those).
fn find_authorize(component: &Component) -> Option<ComponentExportIndex> {
    let iface = component.get_export_index(None, AUTHORIZE_INTERFACE)?;
    component.get_export_index(Some(&iface), "authorize")
}

/// The route's retention settings, or why they are refused: within the
/// bounds, and a history has both a size and a TTL (a size without a TTL
/// would keep updates forever; a TTL without a size keeps nothing, and is
/// more likely a mistake than a wish).
fn check_retention(snapshot: bool, history_size: u32, ttl_ms: u32) -> Result<Retention, LoadError> {
    let history_ttl = std::time::Duration::from_millis(ttl_ms.into());
    let bad = |problem: String| Err(LoadError::BadRetention(problem));
    if history_size > MAX_HISTORY_SIZE {
        return bad(format!(
            "history-size {history_size} is over the limit of {MAX_HISTORY_SIZE}"
        ));
    }
    if history_ttl > MAX_HISTORY_TTL {
        return bad(format!(
            "history-ttl-ms {ttl_ms} is over the limit of {} (one day)",
            MAX_HISTORY_TTL.as_millis()
        ));
    }
    match (history_size, ttl_ms) {
        (0, 0) => {}
        (0, _) => {
            return bad(format!(
                "history-ttl-ms is {ttl_ms} but history-size is 0 (no history): set both or neither"
            ));
        }
        (_, 0) => {
            return bad(format!(
                "history-size is {history_size} but history-ttl-ms is 0: a history needs a TTL"
            ));
        }
        _ => {}
    }
    Ok(Retention {
        snapshot,
        history_size,
        history_ttl,
    })
}

/// Longest reason kept from a plugin's answer or a trap: a reason is shown
/// in the API and the log, and a plugin must not make either unbounded.
const MAX_REASON: usize = 1024;
/// Metadata bounds: the values reach every client in `routes.changed`, and
/// tags name endpoints (`/api/v1/<tag>/ws`).
const MAX_VERSION_BYTES: usize = 64;
const MAX_DESCRIPTION_BYTES: usize = 4096;
const MAX_TAGS: usize = 16;
const MAX_TAG_BYTES: usize = 32;

/// The route name, version, description and tags, or why they are refused.
fn check_metadata(info: RouteInfo) -> Result<RouteInfo, LoadError> {
    let is_name_byte =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
    if info.name.is_empty() || info.name.len() > 64 || !info.name.bytes().all(is_name_byte) {
        return Err(LoadError::BadName(truncate(&info.name, 80)));
    }
    let bad = |field: &'static str, problem: String| Err(LoadError::BadMetadata { field, problem });
    if info.version.len() > MAX_VERSION_BYTES {
        return bad(
            "version",
            format!(
                "{} bytes, over the limit of {MAX_VERSION_BYTES}",
                info.version.len()
            ),
        );
    }
    if let Err(e) = semver::Version::parse(&info.version) {
        return bad(
            "version",
            format!("{:?} is not a semantic version ({e})", info.version),
        );
    }
    if info.description.len() > MAX_DESCRIPTION_BYTES {
        return bad(
            "description",
            format!(
                "{} bytes, over the limit of {MAX_DESCRIPTION_BYTES}",
                info.description.len()
            ),
        );
    }
    if info.tags.len() > MAX_TAGS {
        return bad(
            "tags",
            format!("{} tags, over the limit of {MAX_TAGS}", info.tags.len()),
        );
    }
    for tag in &info.tags {
        if tag.is_empty() || tag.len() > MAX_TAG_BYTES || !tag.bytes().all(is_name_byte) {
            return bad(
                "tag",
                format!(
                    "{:?}: use 1-{MAX_TAG_BYTES} lowercase ASCII letters, digits, '_' or '-'",
                    truncate(tag, 40)
                ),
            );
        }
    }
    Ok(info)
}

fn truncate(s: &str, max: usize) -> String {
    super::schema::truncate(s, max)
}

/// Hex SHA-256 of a plugin file's content: its identity in the cache, the
/// registry and the API.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// The component model's rule: `0.x.*` matches `0.x.*`, `x.*` matches `x.*`
/// for x >= 1. Pre-release versions match only exactly.
fn semver_compatible(a: &str, b: &str) -> bool {
    fn parts(v: &str) -> Option<(u64, u64, bool)> {
        let mut it = v.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = it.next()?;
        Some((
            major,
            minor,
            patch.parse::<u64>().is_ok() && it.next().is_none(),
        ))
    }
    match (parts(a), parts(b)) {
        (Some((ma, na, true)), Some((mb, nb, true))) => ma == mb && (ma > 0 || na == nb),
        _ => a == b,
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_owned()
}

#[cfg(test)]
mod tests {
    use super::{MAX_HISTORY_SIZE, check_retention, semver_compatible};
    use std::time::Duration;

    #[test]
    fn retention_bounds() {
        let ok = check_retention(true, 500, 600_000).unwrap();
        assert!(ok.snapshot && ok.has_history());
        assert_eq!(ok.history_ttl, Duration::from_secs(600));
        assert!(!check_retention(true, 0, 0).unwrap().has_history());
        assert!(check_retention(false, MAX_HISTORY_SIZE, 86_400_000).is_ok());
        for (size, ttl, says) in [
            (
                MAX_HISTORY_SIZE + 1,
                1000,
                "history-size 100001 is over the limit of 100000",
            ),
            (
                10,
                86_400_001,
                "history-ttl-ms 86400001 is over the limit of 86400000",
            ),
            (0, 1000, "set both or neither"),
            (10, 0, "a history needs a TTL"),
        ] {
            let e = check_retention(false, size, ttl).unwrap_err().to_string();
            assert!(e.starts_with("invalid retention settings: "), "{e}");
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn contract_versions() {
        assert!(semver_compatible("0.1.0", "0.1.0"));
        assert!(semver_compatible("0.1.3", "0.1.0"));
        assert!(!semver_compatible("0.2.0", "0.1.0"));
        assert!(semver_compatible("1.4.0", "1.0.2"));
        assert!(!semver_compatible("2.0.0", "1.0.0"));
        assert!(!semver_compatible("0.1.0-rc1", "0.1.0"));
        assert!(!semver_compatible("garbage", "0.1.0"));
    }
}
