//! ws-router host: a WebSocket route host whose routes are WebAssembly
//! components (see `wit/ws-router.wit`).
//!
//! Layout, one concern per module:
//!
//! * [`config`]: command-line flags and the limits every part reads.
//! * [`plugin`]: the wasmtime engine, loading a component, and calling it
//!   under a deadline from a pool of pre-instantiated instances.
//! * [`routes`]: the live route table (route name -> loaded plugin).
//! * [`protocol`]: the wire format: client frames parsed in exactly one
//!   place, replies and update frames encoded in exactly one place.
//! * [`registry`]: who is subscribed to which key; fan-out of an update,
//!   encoded once per subscription topic, to every subscriber's outbox.
//! * [`outbox`]: each connection's bounded outbound queue.
//! * [`session`]: one WebSocket connection: reads commands, writes its outbox.
//! * [`publish`]: publishing updates, in-process and over HTTP.
//! * [`server`]: the HTTP router, shared state and graceful shutdown.
//! * [`watcher`]: watching the plugins directory; changed files go to the
//!   plugin manager ([`plugin::manager`]), which adds, upgrades and removes
//!   routes while clients stay connected.
//! * [`connections`]: every connected client, for frames sent to all.
//! * [`demo`]: a random-walk demo feed, an example publisher.
//! * [`asyncapi`]: the AsyncAPI 3.0 document, assembled from the loaded plugins.
//! * [`docs`]: the documentation page with a live console, assets embedded.

pub mod asyncapi;
pub mod config;
pub mod connections;
pub mod demo;
pub mod docs;
pub mod outbox;
pub mod plugin;
pub mod protocol;
pub mod publish;
pub mod registry;
pub mod routes;
pub mod server;
pub mod session;
pub mod watcher;

pub use config::{Config, Limits};
pub use publish::{Address, Delivery, PublishError, Update};
pub use server::Host;
