//! Route plugins: WebAssembly components exporting `ws-router:plugin/route`.
//!
//! * [`engine`]: one wasmtime `Engine` and `Linker` for every plugin, the
//!   epoch ticker behind call deadlines, and compiling a component.
//! * [`loader`]: from a `.wasm` file to a checked, ready-to-call [`Plugin`].
//! * This module: a loaded plugin and calling it.
//!
//! Calls run on pre-instantiated instances taken from a small pool: an
//! instance is used by one call at a time, returned after a clean call and
//! discarded after a trap (a trapped instance cannot be entered again).

pub mod cache;
pub mod engine;
pub mod loader;
pub mod manager;
pub mod output;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime},
};

use serde_json::Value;
use tracing::Instrument;
use wasmtime::Store;

pub use engine::PluginEngine;
pub use loader::LoadError;

use crate::{config::Limits, protocol::Problem};

/// The host-side bindings of `wit/ws-router.wit`.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        // The required part of the contract only: `delivery` is optional
        // and probed by name at load (see `loader`).
        world: "route-plugin-core",
        exports: { default: async },
    });
    pub use RoutePluginCore as RoutePlugin;
    pub use RoutePluginCorePre as RoutePluginPre;
}

use bindings::{RoutePlugin, RoutePluginPre, exports::ws_router::plugin::route as wit};

/// The version of the `ws-router:plugin` package this host implements.
pub const CONTRACT_VERSION: &str = "0.1.1";

/// How a route's updates reach a client that cannot keep up (the optional
/// WIT `delivery` interface; `QueueAll` when the plugin does not export it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryPolicy {
    /// Disconnect the slow client (close code 4008).
    QueueAll,
    /// Replace queued updates by newer ones of the same topic.
    LatestValue,
}

/// A route's identity, as its plugin reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub tags: Vec<String>,
}

/// What a subscription request resolved to (see the WIT `subscription`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: Arc<str>,
    pub keys: Vec<Arc<str>>,
}

/// Why a plugin call gave no topics. The `Display` text is safe to show to
/// clients; details go to the log.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin refused the request; its message is for the client.
    #[error("{0}")]
    Rejected(String),
    #[error("the route's plugin did not answer within {0} ms")]
    Deadline(u64),
    #[error("the route's plugin failed")]
    Trap(String),
    #[error("the route's plugin returned an invalid answer: {0}")]
    BadOutput(String),
}

/// The per-instance state wasmtime hands to host functions.
pub struct PluginState {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
    limits: wasmtime::StoreLimits,
    /// When the running call must stop; read by the epoch callback.
    deadline: Instant,
}

impl wasmtime_wasi::WasiView for PluginState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

pub(crate) struct Instance {
    store: Store<PluginState>,
    bindings: RoutePlugin,
}

/// A loaded, validated route plugin.
pub struct Plugin {
    pub info: RouteInfo,
    /// The schemas as the plugin reported them.
    pub request_schema: Value,
    pub data_schema: Value,
    /// Where it was loaded from, its SHA-256 and when.
    pub file: std::path::PathBuf,
    pub sha256: String,
    pub loaded_at: SystemTime,
    /// The route name as shared by registry entries and frames.
    pub route: Arc<str>,
    /// What happens to slow clients of this route.
    pub delivery: DeliveryPolicy,
    request_validator: jsonschema::Validator,
    data_validator: jsonschema::Validator,
    pre: RoutePluginPre<PluginState>,
    engine: PluginEngine,
    idle: Mutex<Vec<Instance>>,
    /// Where the plugin's stdout and stderr go.
    output: Arc<output::PluginOutput>,
    /// Calls that trapped, timed out or returned invalid output.
    failures: AtomicU64,
    /// How its machine code was obtained.
    pub compile: CompileInfo,
}

/// Whether a plugin's machine code came from the artifact cache, and how
/// long compiling or loading it took.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CompileInfo {
    pub cached: bool,
    pub ms: f64,
}

impl Plugin {
    /// Check a subscription request against the route's request schema.
    pub fn validate_request(&self, request: &Value) -> Result<(), Vec<Problem>> {
        problems(&self.request_validator, request)
    }

    /// Check published data against the route's data schema.
    pub fn validate_data(&self, data: &Value) -> Result<(), Vec<Problem>> {
        problems(&self.data_validator, data)
    }

    /// Calls that failed since the plugin was loaded.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Resolve a (schema-valid) request to its topic and routing keys, and
    /// check the answer: a non-empty, bounded list of keys of this route.
    pub async fn topics(&self, request: &str, limits: &Limits) -> Result<Subscription, CallError> {
        let answer = self.call_topics(request).await?;
        let answer = answer.map_err(|e| match e {
            wit::TopicError::InvalidRequest(m) => CallError::Rejected(m),
            wit::TopicError::Internal(m) => {
                tracing::warn!(route = %self.info.name, error = %m, "plugin reported an internal error");
                CallError::Rejected("the route could not handle this request".to_owned())
            }
        })?;
        match self.check_subscription(answer, limits) {
            Ok(sub) => Ok(sub),
            Err(e) => {
                self.record_failure(&e);
                Err(e)
            }
        }
    }

    fn check_subscription(
        &self,
        answer: wit::Subscription,
        limits: &Limits,
    ) -> Result<Subscription, CallError> {
        let prefix = format!("{}:", self.info.name);
        let check = |what: &str, t: &str| {
            if !t.starts_with(&prefix) {
                Err(CallError::BadOutput(format!(
                    "{what} {t:?} does not start with {prefix:?}"
                )))
            } else if t.len() > limits.max_topic_bytes {
                Err(CallError::BadOutput(format!(
                    "{what} is {} bytes, over the limit of {}",
                    t.len(),
                    limits.max_topic_bytes
                )))
            } else {
                Ok(())
            }
        };
        check("topic", &answer.topic)?;
        if answer.keys.is_empty() {
            return Err(CallError::BadOutput("no keys".to_owned()));
        }
        if answer.keys.len() > limits.max_keys {
            return Err(CallError::BadOutput(format!(
                "{} keys, over the limit of {}",
                answer.keys.len(),
                limits.max_keys
            )));
        }
        for key in &answer.keys {
            check("key", key)?;
        }
        let mut keys: Vec<Arc<str>> = answer.keys.into_iter().map(Arc::from).collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(Subscription {
            topic: Arc::from(answer.topic),
            keys,
        })
    }

    async fn call_topics(
        &self,
        request: &str,
    ) -> Result<Result<wit::Subscription, wit::TopicError>, CallError> {
        let mut instance = self.checkout().await?;
        let deadline = self.engine.arm(&mut instance.store);
        let span = tracing::trace_span!("plugin_call", route = %self.info.name, call = "topics");
        // Instrumented rather than entered: the call is awaited, and a span
        // entered across an await would tag whatever runs while it waits.
        let result = instance
            .bindings
            .ws_router_plugin_route()
            .call_topics(&mut instance.store, request)
            .instrument(span)
            .await;
        match result {
            Ok(answer) => {
                self.checkin(instance);
                Ok(answer)
            }
            Err(trap) => {
                // The instance may be mid-way through anything: drop it.
                let err = self.engine.classify(trap, deadline);
                self.record_failure(&err);
                Err(err)
            }
        }
    }

    fn record_failure(&self, err: &CallError) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let detail = match err {
            CallError::Trap(d) | CallError::BadOutput(d) => d.as_str(),
            _ => "",
        };
        tracing::warn!(route = %self.info.name, failures = n, error = %err, detail, "plugin call failed");
    }

    async fn checkout(&self) -> Result<Instance, CallError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(instance) => Ok(instance),
            None => self
                .engine
                .instantiate(&self.pre, &self.output)
                .await
                .map_err(|e| {
                    let err = CallError::Trap(format!("instantiate: {e:#}"));
                    self.record_failure(&err);
                    err
                }),
        }
    }

    fn checkin(&self, instance: Instance) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Keep enough instances for the concurrency we see, not more.
        if idle.len() < engine::MAX_IDLE_INSTANCES {
            idle.push(instance);
        }
    }
}

fn problems(validator: &jsonschema::Validator, value: &Value) -> Result<(), Vec<Problem>> {
    if validator.is_valid(value) {
        return Ok(());
    }
    // A client learns everything wrong at once, but a hostile request
    // cannot make the reply unbounded.
    let found: Vec<Problem> = validator
        .iter_errors(value)
        .take(20)
        .map(|e| Problem {
            path: e.instance_path().as_str().to_owned(),
            message: truncate(&e.to_string(), 300),
        })
        .collect();
    Err(found)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
