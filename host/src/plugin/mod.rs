//! Route plugins: WebAssembly components exporting `ws-router:plugin/route`.
//!
//! This layer knows nothing of the host above it: it turns a `.wasm` file
//! into a [`Plugin`] and calls it, under the [`Limits`] it is given.
//!
//! * [`engine`]: one wasmtime `Engine` and `Linker` for every plugin, the
//!   sandboxed store, and the epoch ticker behind call deadlines.
//! * [`loader`]: from a `.wasm` file to a checked, ready-to-call [`Plugin`].
//! * [`route`]: a loaded plugin and calling it.
//! * [`authorized`]: `authorize` answers remembered for a moment.
//! * [`pool`]: pre-instantiated instances, one call at a time each.
//! * [`schema`]: the route's JSON Schemas and the problems they find.
//! * [`cache`]: compiled components on disk, so a restart need not compile.
//! * [`output`]: plugin stdout and stderr, into the log, rate-limited.
//! * [`bindings`]: the host side of `wit/ws-router.wit`.

mod authorized;
mod bindings;
pub mod cache;
pub mod engine;
pub mod loader;
pub mod output;
mod pool;
pub mod route;
pub mod schema;

pub use engine::{CallError, CallObserver, Limits, PluginEngine};
pub use loader::{CONTRACT_VERSION, LoadError, PluginFile};
pub use route::{CompileInfo, DeliveryPolicy, Lease, Plugin, Retention, RouteInfo, Subscription};
pub use schema::{Problem, Schema};
