//! Command-line flags (each also settable by an environment variable) and the
//! limits the rest of the host reads.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

/// The host's configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ws-router-host",
    version,
    about = "WebSocket route host whose routes are WebAssembly plugins"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "WS_ROUTER_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Connections the kernel may queue before the host accepts them (the
    /// listen backlog; the kernel caps it at `net.core.somaxconn`).
    #[arg(long, env = "WS_ROUTER_LISTEN_BACKLOG", default_value_t = 4096)]
    pub listen_backlog: u32,

    /// Directory whose `*.wasm` files are the route plugins.
    #[arg(long, env = "WS_ROUTER_PLUGINS", default_value = "plugins")]
    pub plugins: PathBuf,

    /// Publish random-walk bars, quotes and trades for AAPL, GOOGL and MSFT.
    #[arg(long, env = "WS_ROUTER_DEMO_FEED", overrides_with = "no_demo_feed")]
    pub demo_feed: bool,

    /// Turn the demo feed off (overrides an earlier `--demo-feed`).
    #[arg(long, overrides_with = "demo_feed")]
    pub no_demo_feed: bool,

    /// Demo feed updates per second, per route and symbol.
    #[arg(long, env = "WS_ROUTER_DEMO_RATE", default_value_t = 4.0)]
    pub demo_rate: f64,

    /// Directory of compiled plugins, so a restart need not compile again
    /// [default: $XDG_CACHE_HOME/ws-router/components, else
    /// ~/.cache/ws-router/components].
    #[arg(long, env = "WS_ROUTER_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Always compile plugins; do not read or write the cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Do not watch the plugins directory (load it once at startup).
    #[arg(long)]
    pub no_watch: bool,

    #[command(flatten)]
    pub limits: Limits,
}

impl Config {
    /// Whether the demo feed runs.
    pub fn demo_enabled(&self) -> bool {
        self.demo_feed && !self.no_demo_feed
    }

    /// Where compiled plugins are cached, unless caching is off.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        Some(
            self.cache_dir
                .clone()
                .unwrap_or_else(crate::plugin::cache::default_dir),
        )
    }

    /// Whether the plugins directory is watched for changes.
    pub fn watch_enabled(&self) -> bool {
        !self.no_watch
    }
}

/// Limits on what clients and plugins may use. Defaults suit a production
/// market-data host; every one can be changed by a flag.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Bytes a connection's outbound queue may hold before the route's
    /// delivery policy applies (slow consumers are disconnected).
    #[arg(long, env = "WS_ROUTER_OUTBOX_BYTES", default_value_t = 1 << 20)]
    pub outbox_bytes: usize,

    /// Largest inbound WebSocket message, in bytes.
    #[arg(long, env = "WS_ROUTER_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Subscriptions one connection may hold.
    #[arg(long, env = "WS_ROUTER_MAX_SUBSCRIPTIONS", default_value_t = 1024)]
    pub max_subscriptions: usize,

    /// Wall-clock budget of one plugin call, in milliseconds.
    #[arg(long, env = "WS_ROUTER_PLUGIN_DEADLINE_MS", default_value_t = 50)]
    pub plugin_deadline_ms: u64,

    /// Linear memory one plugin instance may grow to, in MiB.
    #[arg(long, env = "WS_ROUTER_PLUGIN_MEMORY_MIB", default_value_t = 64)]
    pub plugin_memory_mib: usize,

    /// Topics (routing keys) one subscription may resolve to.
    #[arg(long, env = "WS_ROUTER_MAX_KEYS", default_value_t = 256)]
    pub max_keys: usize,

    /// Longest topic or key a plugin may return, in bytes.
    #[arg(long, env = "WS_ROUTER_MAX_TOPIC_BYTES", default_value_t = 1024)]
    pub max_topic_bytes: usize,

    /// WebSocket connections served at once; more are closed with 1013.
    #[arg(long, env = "WS_ROUTER_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Commands (text or binary messages) one connection may send per
    /// second, with bursts of as many; more get an error reply, and a client
    /// that keeps going is closed with 1008.
    #[arg(long, env = "WS_ROUTER_COMMANDS_PER_SEC", default_value_t = 100)]
    pub commands_per_sec: u32,

    /// How often the host pings each client, in milliseconds.
    #[arg(
        long,
        env = "WS_ROUTER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 20_000
    )]
    pub heartbeat_interval_ms: u64,

    /// How long a ping may go unanswered (no pong nor any other frame) before
    /// the client is closed with 4000, in milliseconds. Also the longest a
    /// write to a client may block.
    #[arg(long, env = "WS_ROUTER_HEARTBEAT_TIMEOUT_MS", default_value_t = 20_000)]
    pub heartbeat_timeout_ms: u64,
}

impl Limits {
    /// What the plugin layer enforces.
    pub fn plugin(&self) -> crate::plugin::Limits {
        crate::plugin::Limits {
            deadline: Duration::from_millis(self.plugin_deadline_ms),
            memory_bytes: self.plugin_memory_mib.saturating_mul(1 << 20),
            max_keys: self.max_keys,
            max_topic_bytes: self.max_topic_bytes,
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms.max(1))
    }

    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms.max(1))
    }
}

impl Default for Limits {
    fn default() -> Self {
        // One source of truth for the defaults: the clap attributes above.
        Config::parse_from(["ws-router-host"]).limits
    }
}
