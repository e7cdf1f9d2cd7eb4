//! ws-router host: a WebSocket route host whose routes are WebAssembly
//! components (see `wit/ws-router.wit`).
//!
//! Layers, each depending only on those listed before it:
//!
//! * [`plugin`]: the wasmtime engine, loading a component, the compile
//!   cache, and calling a plugin under limits from a pool of instances.
//!   Knows nothing of the host.
//! * [`logging`]: the log's text and JSON formats; text escapes every value.
//! * [`config`]: the settings (flags, environment, config file) and the
//!   limits every part reads.
//! * [`protocol`]: the wire format: client frames parsed in exactly one
//!   place, replies and update frames encoded in exactly one place.
//! * [`hub`]: the host core, behind [`Host`]: the route table, the
//!   subscription registry and fan-out, sessions and their outboxes,
//!   publishing, and reloading plugins as files change. Knows nothing of
//!   HTTP.
//! * [`asyncapi`]: the AsyncAPI 3.0 document, assembled from the plugins.
//! * [`http`]: the HTTP surface (WebSocket endpoint, publish API, views,
//!   docs page); the only module that knows axum (but for the outbox,
//!   which holds frames as the socket's text type, `Utf8Bytes`, so that
//!   they are sent without a UTF-8 check per subscriber).
//! * [`demo`]: a random-walk demo feed, an example publisher.
//!
//! `tests/layers.rs` (run by `just test`) keeps these dependencies
//! pointing one way.

pub mod asyncapi;
pub mod config;
pub mod demo;
pub mod http;
pub mod hub;
pub mod logging;
pub mod plugin;
pub mod protocol;

pub use config::{Config, Limits};
pub use hub::{
    Host,
    publish::{Address, PublishError, Receipt, Update},
};
