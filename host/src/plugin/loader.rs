//! From a `.wasm` file to a checked, ready-to-call [`Plugin`], in linear steps:
//! read, compile, check the contract, pre-instantiate, ask the plugin who it
//! is, check its answers. Any failure rejects the file with one reason.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicU64},
    time::SystemTime,
};

use tokio_util::task::TaskTracker;
use wasmtime::component::Component;

use super::{
    bindings::RoutePluginPre,
    cache::{ArtifactCache, Lookup},
    engine::{Instance, PluginEngine, PluginState},
    output::PluginOutput,
    pool::Pool,
    route::{CompileInfo, DeliveryPolicy, Plugin, RouteInfo},
    schema::Schema,
};

/// The version of the `ws-router:plugin` package this host implements.
pub const CONTRACT_VERSION: &str = "0.1.1";

/// A plugin file's content, read once and hashed once.
pub struct PluginFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
}

impl PluginFile {
    pub fn new(path: &Path, bytes: Vec<u8>) -> PluginFile {
        PluginFile {
            path: path.to_path_buf(),
            sha256: sha256_hex(&bytes),
            bytes,
        }
    }

    pub async fn read(path: &Path) -> std::io::Result<PluginFile> {
        Ok(PluginFile::new(path, tokio::fs::read(path).await?))
    }
}

/// The interface every route plugin exports, without its version.
const ROUTE_INTERFACE: &str = "ws-router:plugin/route";
/// The optional interface declaring the delivery policy (since 0.1.1). The
/// lookup matches any semver-compatible version the plugin exports.
const DELIVERY_INTERFACE: &str = "ws-router:plugin/delivery@0.1.1";

/// Why a file was not loaded. Each names the reason in one line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read file: {0}")]
    Read(#[from] std::io::Error),
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
    #[error("invalid route name {0:?}: use 1-64 lowercase ASCII letters, digits, '_' or '-'")]
    BadName(String),
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
        self.load(PluginFile::read(path).await?, cache).await
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
        let delivery = self.ask_delivery(&instance_pre, &output).await?;
        let pre =
            RoutePluginPre::new(instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let mut instance = self
            .instantiate(&pre, &output)
            .await
            .map_err(|e| LoadError::Trap {
                call: "instantiate",
                message: format!("{e:#}"),
            })?;

        let info = self.ask_info(&mut instance).await?;
        let request_schema = self.ask_schema(&mut instance, "request").await?;
        let data_schema = self.ask_schema(&mut instance, "data").await?;

        Ok(Plugin {
            route: Arc::from(info.name.as_str()),
            delivery,
            info,
            request_schema,
            data_schema,
            file: path.to_path_buf(),
            sha256: Arc::from(sha256),
            loaded_at: SystemTime::now(),
            compile,
            pre,
            engine: self.clone(),
            pool: Pool::with(instance),
            output,
            failures: AtomicU64::new(0),
            leases: TaskTracker::new(),
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

    /// The route's delivery policy, from the optional `delivery` interface
    /// (probed by name: plugins built against 0.1.0 do not export it).
    async fn ask_delivery(
        &self,
        pre: &wasmtime::component::InstancePre<PluginState>,
        output: &std::sync::Arc<PluginOutput>,
    ) -> Result<DeliveryPolicy, LoadError> {
        use wasmtime::component::Val;
        let trap = |message: String| LoadError::Trap {
            call: "delivery-policy",
            message,
        };
        let mut store = self.store(output);
        self.arm(&mut store);
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| trap(format!("instantiate: {e:#}")))?;
        let Some(iface) = instance.get_export_index(&mut store, None, DELIVERY_INTERFACE) else {
            return Ok(DeliveryPolicy::QueueAll);
        };
        let func = instance
            .get_export_index(&mut store, Some(&iface), "delivery-policy")
            .and_then(|f| instance.get_func(&mut store, f))
            .ok_or_else(|| {
                trap("the delivery interface has no delivery-policy function".to_owned())
            })?;
        let mut results = [Val::Bool(false)];
        func.call_async(&mut store, &[], &mut results)
            .await
            .map_err(|e| trap(format!("{e:#}")))?;
        match &results[0] {
            Val::Enum(case) if case == "queue-all" => Ok(DeliveryPolicy::QueueAll),
            Val::Enum(case) if case == "latest-value" => Ok(DeliveryPolicy::LatestValue),
            other => Err(trap(format!("unexpected delivery policy {other:?}"))),
        }
    }

    async fn ask_info(&self, instance: &mut Instance) -> Result<RouteInfo, LoadError> {
        self.arm(&mut instance.store);
        let info = instance
            .bindings
            .ws_router_plugin_route()
            .call_info(&mut instance.store)
            .await
            .map_err(|e| LoadError::Trap {
                call: "info",
                message: format!("{e:#}"),
            })?;
        let valid_name = !info.name.is_empty()
            && info.name.len() <= 64
            && info
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(LoadError::BadName(info.name));
        }
        Ok(RouteInfo {
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
        self.arm(&mut instance.store);
        let route = instance.bindings.ws_router_plugin_route();
        let text = match which {
            "request" => route.call_request_schema(&mut instance.store).await,
            _ => route.call_data_schema(&mut instance.store).await,
        }
        .map_err(|e| LoadError::Trap {
            call: if which == "request" {
                "request-schema"
            } else {
                "data-schema"
            },
            message: format!("{e:#}"),
        })?;
        Schema::compile(&text).map_err(|message| LoadError::BadSchema { which, message })
    }
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
    use super::semver_compatible;

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
