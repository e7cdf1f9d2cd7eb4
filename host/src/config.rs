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
    /// ~/.cache/ws-router/components, else none]. It must belong to this
    /// user and not be writable by others (it is created with mode 0700).
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
        self.cache_dir
            .clone()
            .or_else(crate::plugin::cache::default_dir)
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

    /// Wall-clock budget of each plugin call made while loading it
    /// (instantiating, `info`, the schemas, the delivery policy), in
    /// milliseconds. A plugin that does not answer in time is rejected.
    #[arg(
        long,
        env = "WS_ROUTER_PLUGIN_LOAD_DEADLINE_MS",
        default_value_t = 1000
    )]
    pub plugin_load_deadline_ms: u64,

    /// Linear memory one plugin instance may grow to, in MiB.
    #[arg(long, env = "WS_ROUTER_PLUGIN_MEMORY_MIB", default_value_t = 64)]
    pub plugin_memory_mib: usize,

    /// Live instances of one plugin (concurrent calls into it); a call that
    /// finds all busy waits up to the call deadline, then gets a busy error.
    #[arg(long, env = "WS_ROUTER_PLUGIN_INSTANCES", default_value_t = 8)]
    pub plugin_instances: usize,

    /// Largest plugin file the host reads, in bytes.
    #[arg(long, env = "WS_ROUTER_MAX_PLUGIN_BYTES", default_value_t = 64 << 20)]
    pub max_plugin_bytes: u64,

    /// Subscriptions held by all connections together; more get an error
    /// reply.
    #[arg(
        long,
        env = "WS_ROUTER_MAX_TOTAL_SUBSCRIPTIONS",
        default_value_t = 1_000_000
    )]
    pub max_total_subscriptions: usize,

    /// Distinct routing keys with subscribers, host-wide; subscriptions that
    /// would add more get an error reply.
    #[arg(long, env = "WS_ROUTER_MAX_TOTAL_KEYS", default_value_t = 1_000_000)]
    pub max_total_keys: usize,

    /// Topics (routing keys) one subscription may resolve to.
    #[arg(long, env = "WS_ROUTER_MAX_KEYS", default_value_t = 256)]
    pub max_keys: usize,

    /// Longest topic or key a plugin may return, in bytes.
    #[arg(long, env = "WS_ROUTER_MAX_TOPIC_BYTES", default_value_t = 1024)]
    pub max_topic_bytes: usize,

    /// Connections (WebSocket or plain HTTP) served at once; a WebSocket
    /// over the limit is closed with 1013.
    #[arg(long, env = "WS_ROUTER_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Commands (text or binary messages) one connection may send per
    /// second, with bursts of as many. Beyond that the host stops reading
    /// the connection until the rate allows (TCP slows the client down).
    #[arg(long, env = "WS_ROUTER_COMMANDS_PER_SEC", default_value_t = 100)]
    pub commands_per_sec: u32,

    /// A client held back by the command rate continuously for this long is
    /// closed with 1008, in milliseconds.
    #[arg(
        long,
        env = "WS_ROUTER_RATE_LIMIT_CLOSE_AFTER_MS",
        default_value_t = 5000
    )]
    pub rate_limit_close_after_ms: u64,

    /// An HTTP connection must send complete request headers within this
    /// time, in milliseconds, or it is closed.
    #[arg(
        long,
        env = "WS_ROUTER_HTTP_HEADER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub http_header_timeout_ms: u64,

    /// A request body (a publish) must arrive completely within this time,
    /// in milliseconds, or the request is answered 408.
    #[arg(long, env = "WS_ROUTER_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_body_timeout_ms: u64,

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
            load_deadline: Duration::from_millis(self.plugin_load_deadline_ms),
            instances: self.plugin_instances.max(1),
            max_file_bytes: self.max_plugin_bytes,
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
