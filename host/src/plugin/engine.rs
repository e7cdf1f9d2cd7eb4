//! One wasmtime engine for every plugin: its configuration, the linker with
//! the (empty) WASI world plugins see, and the epoch ticker that enforces
//! call deadlines.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use wasmtime::{Config, Engine, Store, StoreLimitsBuilder, UpdateDeadline, component::Linker};

use super::{
    bindings::{RoutePlugin, RoutePluginPre},
    output::PluginOutput,
};

/// What plugins may use; the host's configuration decides the numbers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock budget of one call.
    pub deadline: Duration,
    /// Wall-clock budget of each call made while loading a plugin.
    pub load_deadline: Duration,
    /// Live instances of one plugin.
    pub instances: usize,
    /// Largest plugin file read.
    pub max_file_bytes: u64,
    /// Linear memory one instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Routing keys one subscription may resolve to.
    pub max_keys: usize,
    /// Longest topic or key a plugin may return, in bytes.
    pub max_topic_bytes: usize,
    /// How long an `authorize` answer is reused for the same claims and
    /// request; zero asks the plugin every time.
    pub authorize_memory: Duration,
}

impl Limits {
    fn deadline_ms(&self) -> u64 {
        self.deadline.as_millis() as u64
    }
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
    /// Every instance the plugin may have is in use; not the plugin's fault.
    #[error("the route is busy: its {0} plugin instances are all in use; try again")]
    Busy(usize),
}

/// The per-instance state wasmtime hands to host functions.
pub struct PluginState {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
    limits: wasmtime::StoreLimits,
    /// When the running call must stop; read by the epoch callback.
    deadline: std::time::Instant,
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
    pub store: Store<PluginState>,
    pub bindings: RoutePlugin,
    /// The raw instance, for the optional interfaces the bindings leave out.
    pub instance: wasmtime::component::Instance,
}

/// How often the engine's epoch advances; the granularity of deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Per store (one instance of a component): its linear memories, tables,
/// core instances, table size and WASI resources. Generous for the
/// toolchains seen (a componentize-py component instantiates 64 core
/// modules sharing one memory, a ComponentizeJS one has a 7,688-entry
/// table), small enough that the memory cap is a cap on the instance.
const MAX_MEMORIES: usize = 2;
const MAX_TABLES: usize = 32;
const MAX_CORE_INSTANCES: usize = 128;
const MAX_TABLE_ELEMENTS: usize = 100_000;
const MAX_RESOURCES: usize = 1_000;

/// Told about every call into a plugin once it has finished, for whoever
/// counts them (the host's metrics); the plugin layer itself keeps only
/// its failure count.
pub trait CallObserver: Send + Sync {
    /// `route`'s plugin answered `call` (or failed to, `ok == false`) after `took`.
    fn call(&self, route: &Arc<str>, call: &'static str, ok: bool, took: Duration);
}

/// Shared by every plugin; cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<PluginState>,
    limits: Limits,
    observer: Option<Arc<dyn CallObserver>>,
}

impl PluginEngine {
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        Self::observed(limits, None)
    }

    /// An engine whose plugin calls are reported to `observer`.
    pub fn observed(
        limits: Limits,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Deadlines: the ticker thread below advances the epoch; a call past
        // its deadline traps at the next check instead of spinning forever.
        config.epoch_interruption(true);
        // Plugins do not use component-model async; turning it off makes
        // every call about three times cheaper.
        config.concurrency_support(false);
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        // Plugins built by wasm32-wasip2 toolchains import WASI; they get an
        // empty context: no files, no network, no environment, no arguments.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;

        Ok(PluginEngine {
            inner: Arc::new(Inner {
                engine,
                linker,
                limits,
                observer,
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &Linker<PluginState> {
        &self.inner.linker
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub(crate) fn observe(&self, route: &Arc<str>, call: &'static str, ok: bool, took: Duration) {
        if let Some(observer) = &self.inner.observer {
            observer.call(route, call, ok, took);
        }
    }

    /// A fresh store with the plugin sandbox and memory cap.
    /// No preopened directories, no environment, no arguments, no sockets:
    /// only stdout and stderr, which go to the log.
    pub(crate) fn store(&self, output: &Arc<PluginOutput>) -> Store<PluginState> {
        let limits = &self.inner.limits;
        let mut table = wasmtime::component::ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let state = PluginState {
            wasi: wasmtime_wasi::WasiCtxBuilder::new()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .stdout(output.stream("stdout"))
                .stderr(output.stream("stderr"))
                .build(),
            table,
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .memories(MAX_MEMORIES)
                .tables(MAX_TABLES)
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(MAX_CORE_INSTANCES)
                .trap_on_grow_failure(true)
                .build(),
            deadline: Instant::now(),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limits);
        // Past the deadline, interrupt; before it, yield to the executor each
        // tick so a slow plugin never blocks a runtime thread for long.
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Start the clock for one call on `store`, to end at `deadline`.
    /// The epoch check stops wasm code running past it; the caller bounds
    /// the call in wall-clock time as well (a plugin waiting in WASI runs
    /// no wasm code).
    pub(crate) fn arm(&self, store: &mut Store<PluginState>, deadline: Instant) {
        store.data_mut().deadline = deadline;
        // Two ticks, not one: a call of a few microseconds that happens to
        // straddle a tick would otherwise yield, and wait behind every
        // runnable task (thousands in a subscribe storm) holding its pool
        // slot; enough such calls hold every slot and the route answers
        // "busy". A call yields only after running a whole tick.
        store.set_epoch_deadline(2);
    }

    /// A new instance, its start-up code run under `deadline`.
    pub(crate) async fn instantiate(
        &self,
        pre: &RoutePluginPre<PluginState>,
        output: &Arc<PluginOutput>,
        deadline: Instant,
    ) -> wasmtime::Result<Instance> {
        let mut store = self.store(output);
        self.arm(&mut store, deadline);
        let instantiate = pre.instance_pre().instantiate_async(&mut store);
        let instance = tokio::time::timeout_at(deadline.into(), instantiate)
            .await
            .map_err(|_| {
                wasmtime::Error::msg("instantiating did not finish within its deadline")
            })??;
        let bindings = RoutePlugin::new(&mut store, &instance)?;
        Ok(Instance {
            store,
            bindings,
            instance,
        })
    }

    /// Turn a failed call into what the caller reports.
    pub(crate) fn classify(&self, error: wasmtime::Error, deadline: Instant) -> CallError {
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => self.deadline_error(),
            _ if Instant::now() >= deadline => self.deadline_error(),
            _ => CallError::Trap(format!("{error:#}")),
        }
    }

    pub(crate) fn deadline_error(&self) -> CallError {
        CallError::Deadline(self.inner.limits.deadline_ms())
    }
}
