//! The host's settings, and the limits the rest of the host reads.
//!
//! Every setting is a flag, defined once below with its environment
//! variable, default and help; a TOML config file (`--config`) may set any
//! of them by the flag's name. Precedence: flags, then the environment, then
//! the file, then the defaults. The file's values are handed to clap as the
//! arguments' defaults, so the precedence is clap's own and the list of
//! settings is never written out twice.

use std::{
    any::TypeId,
    collections::BTreeMap,
    ffi::OsString,
    fmt::Write as _,
    io::Read as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{
    Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser,
    error::{ContextKind, ContextValue},
    parser::ValueSource,
};

use crate::logging::{self, LogFormat};

/// The host's configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ws-router-host",
    version,
    about = "WebSocket route host whose routes are WebAssembly plugins"
)]
pub struct Config {
    /// TOML file of settings: any flag below by its name (`max_subscriptions
    /// = 100`; `ws-router-host config --example` prints them all). Flags and
    /// environment variables override it.
    #[arg(long, env = "WS_ROUTER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

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

    /// Publish random-walk updates of every route, for the keys somebody is
    /// subscribed to (the interest stream).
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

    /// Log format: `text` for people, `json` (one object per line) for log
    /// collectors.
    #[arg(long, env = "WS_ROUTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Which log lines to write: a level (`info`, `debug`) or
    /// tracing-subscriber filter directives (`info,ws_router_host=debug`).
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info",
        value_parser = logging::parse_filter
    )]
    pub log_filter: String,

    /// Redis that joins this host to others as one cluster
    /// (`redis://HOST:PORT/DB`, `redis://:PASSWORD@HOST:PORT/DB`): a
    /// publication on any node reaches subscribers on every node, and the
    /// interest stream is cluster-wide. Without it the host is one node.
    /// See docs/cluster.md.
    #[arg(
        long,
        env = "WS_ROUTER_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,

    #[command(flatten)]
    pub access: Access,

    #[command(flatten)]
    pub limits: Limits,
}

impl Config {
    /// Every setting at its default (the environment ignored).
    pub fn defaults() -> Config {
        let matches = without_env(Config::command()).get_matches_from(["ws-router-host"]);
        // The defaults are constants of this file; a failure is a bug here.
        Config::from_arg_matches(&matches).expect("the defaults are valid")
    }

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

/// Who may subscribe, publish and read the operator views (see
/// `docs/security.md`). Everything is open unless a key is configured.
#[derive(Debug, Clone, clap::Args)]
pub struct Access {
    /// Clients must present a JWT signed with this HS256 secret (in the
    /// `access_token` cookie, an `Authorization: Bearer` header or the
    /// `token` query parameter). Without it or `--jwt-public-key`, clients
    /// are not authenticated.
    #[arg(long, env = "WS_ROUTER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Clients must present a JWT signed by the private half of this PEM
    /// public key (RS256 for an RSA key, ES256 for a P-256 key).
    #[arg(long, env = "WS_ROUTER_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// Accept only tokens whose `iss` claim is this.
    #[arg(long, env = "WS_ROUTER_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Accept only tokens whose `aud` claim names this.
    #[arg(long, env = "WS_ROUTER_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// `POST /api/v1/publish`, `GET /api/v1/subscribers` and `GET
    /// /api/v1/plugins` require `Authorization: Bearer KEY` with one of these
    /// keys (repeat the flag; comma-separated in the environment).
    #[arg(
        long,
        env = "WS_ROUTER_PUBLISH_KEYS",
        value_name = "KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub publish_key: Vec<String>,

    /// A publish key whose updates are trusted: their data is checked
    /// against the route's schema on a sample (`--trusted-validation-sample`)
    /// instead of every time. Also a publish key.
    #[arg(
        long,
        env = "WS_ROUTER_TRUSTED_PUBLISH_KEYS",
        value_name = "KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub trusted_publish_key: Vec<String>,

    /// A trusted publisher's updates are checked one in N (1: every one);
    /// a failure is rejected, logged and counted.
    #[arg(
        long,
        env = "WS_ROUTER_TRUSTED_VALIDATION_SAMPLE",
        value_name = "N",
        default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub trusted_validation_sample: u64,

    /// Serve without a publish key on a non-loopback address: anyone who
    /// reaches the port may publish. Without it, the host refuses to start
    /// that way.
    #[arg(long, env = "WS_ROUTER_INSECURE_PUBLISH")]
    pub insecure_publish: bool,

    /// Browser origins, besides the host's own, that may open a WebSocket
    /// (`https://app.example.com`; comma-separated; `*`: any).
    #[arg(
        long,
        env = "WS_ROUTER_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
}

impl Access {
    /// Whether publishing needs a key.
    pub fn publish_keys_set(&self) -> bool {
        !self.publish_key.is_empty() || !self.trusted_publish_key.is_empty()
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

    /// Memory for the updates kept for snapshots and recovery (routes with
    /// retention), host-wide, in MiB; past it the oldest updates across
    /// keys are evicted first; 0 turns snapshots and history off (every
    /// route then sends the frames of a route without retention). See
    /// docs/recovery.md.
    #[arg(long, env = "WS_ROUTER_HISTORY_MEMORY_MIB", default_value_t = 64)]
    pub history_memory_mib: usize,

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

    /// How long a plugin's `authorize` answer is reused for the same claims
    /// and request, in milliseconds (the contract makes it a pure function
    /// of both); 0 asks the plugin on every subscribe.
    #[arg(long, env = "WS_ROUTER_AUTHORIZE_MEMORY_MS", default_value_t = 1000)]
    pub authorize_memory_ms: u64,

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

    /// Interest streams (`GET /api/v1/interest`) open at once; more are
    /// answered 503.
    #[arg(long, env = "WS_ROUTER_MAX_INTEREST_STREAMS", default_value_t = 16)]
    pub max_interest_streams: usize,
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
            authorize_memory: Duration::from_millis(self.authorize_memory_ms),
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
        Config::defaults().limits
    }
}

/// [`Config`]'s command, built: flags have their implicit defaults (`false`).
fn config_command() -> Command {
    let mut cmd = Config::command();
    cmd.build();
    cmd
}

/// `cmd` with no environment variables: what the defaults alone give.
fn without_env(cmd: Command) -> Command {
    cmd.mut_args(|arg| arg.env(None::<&'static str>))
}

/// Largest config file read; anything larger is a mistake (or `/dev/zero`).
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad arguments or environment, or `--help`/`--version`: clap's own
    /// message, shown by [`clap::Error::exit`].
    #[error(transparent)]
    Args(#[from] clap::Error),
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {} is larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("config file {}, line {line}: setting `{key}`: {problem}", path.display())]
    Setting {
        path: PathBuf,
        line: usize,
        key: String,
        problem: String,
    },
}

/// What an argument of [`Config`] is to a config file.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// A setting a file may hold.
    Setting,
    /// `no_x`, the negation of setting `x`: a file says `x = false`.
    Negation(String),
    /// `config` itself.
    File,
    /// `--help`, `--version`.
    Other,
}

fn kind(cmd: &Command, arg: &Arg) -> Kind {
    let id = arg.get_id().as_str();
    if matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    ) {
        return Kind::Other;
    }
    if id == "config" {
        return Kind::File;
    }
    if let Some(positive) = id.strip_prefix("no_")
        && cmd.get_arguments().any(|a| a.get_id() == positive)
    {
        return Kind::Negation(positive.to_owned());
    }
    Kind::Setting
}

/// The settings a config file may hold, in the order of `--help`.
fn settings(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(move |arg| kind(cmd, arg) == Kind::Setting)
}

/// Whether a setting's value must never be printed: its name has a word
/// such as `secret`, `key` or `password` (`jwt_secret`, `publish_key`; not
/// `max_keys`), or its definition hides its environment value.
fn is_secret(arg: &Arg) -> bool {
    arg.is_hide_env_values_set() || is_secret_name(arg.get_id().as_str())
}

/// The naming rule of [`is_secret`].
pub fn is_secret_name(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "secret",
        "secrets",
        "key",
        "password",
        "passwd",
        "token",
        "credential",
        "credentials",
    ];
    name.split(['_', '-'])
        .any(|word| WORDS.iter().any(|w| word.eq_ignore_ascii_case(w)))
}

/// A config file's settings, each checked against its flag.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    /// Setting (the argument's id) -> its value, as its flag would take it.
    values: BTreeMap<String, String>,
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read_error)?
            .take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        ConfigFile::parse(path, &text)
    }

    /// Parse `text`, the content of `path`: every key must name a setting,
    /// by its flag's name with underscores (`max_keys`) or dashes
    /// (`max-keys`), and every value must be one its flag accepts.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        type Table = BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;
        let table: Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let cmd = config_command();
        let mut values = BTreeMap::new();
        let mut spellings: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in table {
            let line = 1 + text.as_bytes()[..key.span().start.min(text.len())]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            let key = key.into_inner();
            let fail = |problem: String| ConfigError::Setting {
                path: path.to_owned(),
                line,
                key: key.clone(),
                problem,
            };
            let id = key.replace('-', "_");
            let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == id.as_str()) else {
                return Err(fail(
                    "unknown setting (`ws-router-host config --example` lists them all)".into(),
                ));
            };
            match kind(&cmd, arg) {
                Kind::Setting => {}
                Kind::Negation(positive) => {
                    return Err(fail(format!(
                        "not a file setting: write `{positive} = false`"
                    )));
                }
                Kind::File => return Err(fail("a config file cannot name another".into())),
                Kind::Other => return Err(fail("unknown setting".into())),
            }
            if let Some(first) = spellings.insert(id.clone(), key.clone()) {
                return Err(fail(format!("set twice (also as `{first}`)")));
            }
            let raw = match value.into_inner() {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(fail("expected a string, a number or a boolean".into())),
            };
            check(&id, &raw).map_err(|why| {
                fail(if is_secret(arg) {
                    format!("invalid value: {why}")
                } else {
                    format!("invalid value {raw:?}: {why}")
                })
            })?;
            values.insert(id, raw);
        }
        Ok(ConfigFile {
            path: path.to_owned(),
            values,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `cmd` (the binary's command line, which flattens [`Config`] at its
    /// top level or in subcommands) with this file's values as the defaults
    /// of the settings it holds: the environment and flags still win.
    pub fn apply(&self, mut cmd: Command) -> Command {
        for (id, value) in &self.values {
            if cmd.get_arguments().any(|a| a.get_id() == id.as_str()) {
                cmd = cmd.mut_arg(id, |arg| arg.default_value(value.clone()));
            }
        }
        cmd.mut_subcommands(|sub| self.apply(sub))
    }
}

/// Whether the setting `id` accepts `raw`, by its own value parser; why not.
fn check(id: &str, raw: &str) -> Result<(), String> {
    let cmd = without_env(Config::command()).mut_arg(id, |arg| arg.default_value(raw.to_owned()));
    match cmd.try_get_matches_from(["ws-router-host"]) {
        Ok(_) => Ok(()),
        Err(e) => Err(reason(&e)),
    }
}

/// The gist of a clap error about one value.
fn reason(e: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("expected one of: {}", valid.join(", "));
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.trim_start_matches("error: ").to_owned()
}

/// The process's arguments parsed, with the config file they name.
#[derive(Debug)]
pub struct Parsed {
    pub matches: ArgMatches,
    pub file: Option<ConfigFile>,
}

impl Parsed {
    /// The matches holding [`Config`]'s settings: the subcommand's, if one
    /// was given.
    pub fn settings(&self) -> &ArgMatches {
        self.matches
            .subcommand()
            .map_or(&self.matches, |(_, sub)| sub)
    }

    /// `ws-router-host config`: every setting's effective value, as TOML,
    /// each followed by where it came from. Secrets print `<redacted>`.
    pub fn report(&self) -> String {
        let matches = self.settings();
        let cmd = config_command();
        let mut out = String::from(
            "# Effective configuration of ws-router-host (TOML). After each value: where\n\
             # it came from (flag, env, file or default; flags win over the environment,\n\
             # the environment over the file, the file over the defaults).\n",
        );
        match &self.file {
            Some(file) => {
                let _ = writeln!(out, "# config file: {}", file.path.display());
            }
            None => out.push_str("# config file: none\n"),
        }
        out.push('\n');
        let lines: Vec<(String, String)> = settings(&cmd)
            .map(|arg| {
                let id = arg.get_id().as_str();
                let (value, source) = self.effective(&cmd, arg, matches);
                match value {
                    Some(raw) => (format!("{id} = {}", render(arg, &raw)), source),
                    None => (format!("# {id} is unset"), source),
                }
            })
            .collect();
        let width = lines
            .iter()
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0);
        for (line, source) in lines {
            let _ = writeln!(out, "{line:width$}  # {source}");
        }
        out
    }

    fn effective(
        &self,
        cmd: &Command,
        arg: &Arg,
        matches: &ArgMatches,
    ) -> (Option<String>, String) {
        let id = arg.get_id().as_str();
        // `--no-x` on the command line turns setting `x` off whatever `x`
        // says (the reverse order is clap's `overrides_with`).
        if let Some(negation) = cmd
            .get_arguments()
            .find(|a| kind(cmd, a) == Kind::Negation(id.to_owned()))
        {
            let no = negation.get_id().as_str();
            if matches.value_source(no) == Some(ValueSource::CommandLine)
                && matches.try_get_one::<bool>(no).ok().flatten() == Some(&true)
            {
                return (Some("false".into()), format!("flag --{}", long(negation)));
            }
        }
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => format!("flag --{}", long(arg)),
            Some(ValueSource::EnvVariable) => format!(
                "env {}",
                arg.get_env().unwrap_or_default().to_string_lossy()
            ),
            Some(ValueSource::DefaultValue) => match &self.file {
                Some(file) if file.values.contains_key(id) => {
                    format!("file {}", file.path.display())
                }
                _ => "default".into(),
            },
            _ => "unset".into(),
        };
        let value = if is_bool(arg) {
            matches
                .try_get_one::<bool>(id)
                .ok()
                .flatten()
                .map(bool::to_string)
        } else {
            matches
                .get_raw(id)
                .and_then(|mut values| values.next_back())
                .map(|v| v.to_string_lossy().into_owned())
        };
        (value, source)
    }
}

fn long(arg: &Arg) -> &str {
    arg.get_long().unwrap_or(arg.get_id().as_str())
}

fn is_bool(arg: &Arg) -> bool {
    arg.get_value_parser().type_id() == TypeId::of::<bool>()
}

/// `raw`, the value of `arg` as its flag takes it, written as a TOML value
/// of the setting's type.
fn render(arg: &Arg, raw: &str) -> String {
    if is_secret(arg) {
        return "\"<redacted>\"".into();
    }
    let ty = arg.get_value_parser().type_id();
    let ints = [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i8>(),
        TypeId::of::<i16>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<isize>(),
    ];
    let floats = [TypeId::of::<f32>(), TypeId::of::<f64>()];
    let typed = if ty == TypeId::of::<bool>() {
        raw.parse().ok().map(toml::Value::Boolean)
    } else if ints.iter().any(|t| ty == *t) {
        // TOML integers are i64; a larger value stays a string.
        raw.parse().ok().map(toml::Value::Integer)
    } else if floats.iter().any(|t| ty == *t) {
        raw.parse().ok().map(toml::Value::Float)
    } else {
        None
    };
    typed
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
        .to_string()
}

/// Parse the process's arguments (`cmd` is the binary's command line, which
/// flattens [`Config`] at its top level or in subcommands): flags, then the
/// environment, then the config file named by `--config` or
/// `WS_ROUTER_CONFIG`, then the defaults.
pub fn parse_args(
    cmd: Command,
    args: impl IntoIterator<Item = OsString>,
) -> Result<Parsed, ConfigError> {
    let args: Vec<OsString> = args.into_iter().collect();
    let first = Parsed {
        matches: cmd.clone().try_get_matches_from(&args)?,
        file: None,
    };
    let path = first
        .settings()
        .try_get_one::<PathBuf>("config")
        .ok()
        .flatten()
        .cloned();
    let Some(path) = path else {
        return Ok(first);
    };
    let file = ConfigFile::read(&path)?;
    let matches = file.apply(cmd).try_get_matches_from(&args)?;
    Ok(Parsed {
        matches,
        file: Some(file),
    })
}

/// A commented config file holding every setting at its default, with its
/// help, flag and environment variable: `ws-router.example.toml`.
pub fn example() -> String {
    let cmd = config_command();
    let mut out = String::from(
        "# ws-router-host configuration file (TOML), generated by\n\
         # `ws-router-host config --example`.\n\
         #\n\
         # Use it with `ws-router-host --config FILE` (or WS_ROUTER_CONFIG=FILE).\n\
         # Flags override environment variables, which override this file, which\n\
         # overrides the defaults. `ws-router-host config --config FILE` shows the\n\
         # result and where each value came from.\n\
         #\n\
         # Every value below is the default. Keep only the settings you change, so\n\
         # that improved defaults reach you. Names are the flags' names with\n\
         # underscores (dashes work too); an unknown name or a bad value stops the\n\
         # host at start.\n",
    );
    for arg in settings(&cmd) {
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let mut help = help.trim_end().to_owned();
        // clap drops the full stop of a one-paragraph help.
        if !help.ends_with('.') {
            help.push('.');
        }
        for paragraph in help.split("\n\n") {
            for line in wrap(paragraph, 76) {
                let _ = writeln!(out, "# {line}");
            }
        }
        let mut names = format!("# --{}", long(arg));
        if let Some(env) = arg.get_env() {
            let _ = write!(names, ", {}", env.to_string_lossy());
        }
        let _ = writeln!(out, "{names}");
        let id = arg.get_id().as_str();
        match arg.get_default_values().first() {
            Some(default) if !is_secret(arg) => {
                let _ = writeln!(out, "{id} = {}", render(arg, &default.to_string_lossy()));
            }
            _ => {
                let _ = writeln!(out, "# {id} = \"\"");
            }
        }
    }
    out
}

/// `text`'s words in lines of at most `width` characters (longer words
/// alone on theirs).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], file: Option<&str>) -> Result<Parsed, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ws-router.toml");
        let mut argv: Vec<OsString> = vec!["ws-router-host".into()];
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
            argv.extend(["--config".into(), path.clone().into_os_string()]);
        }
        argv.extend(args.iter().map(OsString::from));
        parse_args(without_env(Config::command()), argv)
    }

    /// Whether `report` has `line`, spaces collapsed.
    fn has(report: &str, line: &str) -> bool {
        report.lines().any(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .starts_with(line)
        })
    }

    fn config(parsed: &Parsed) -> Config {
        Config::from_arg_matches(&parsed.matches).unwrap()
    }

    #[test]
    fn secret_names_are_redacted_and_others_not() {
        for name in [
            "jwt_secret",
            "publish_key",
            "admin-password",
            "api_token",
            "key",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["max_keys", "max_total_keys", "keyboard", "listen", "monkey"] {
            assert!(!is_secret_name(name), "{name}");
        }
        let secret = Arg::new("jwt_secret").long("jwt-secret");
        assert_eq!(render(&secret, "hunter2"), "\"<redacted>\"");
        let hidden = Arg::new("upstream").long("upstream").hide_env_values(true);
        assert_eq!(render(&hidden, "hunter2"), "\"<redacted>\"");
    }

    #[test]
    fn file_values_sit_below_flags() {
        let parsed = parse(
            &[],
            Some("max_subscriptions = 2\nmax-keys = 7\ndemo_feed = true\n"),
        )
        .unwrap();
        let c = config(&parsed);
        assert_eq!(c.limits.max_subscriptions, 2);
        assert_eq!(c.limits.max_keys, 7);
        assert!(c.demo_enabled());
        let report = parsed.report();
        assert!(has(&report, "max_subscriptions = 2 # file "), "{report}");
        assert!(
            has(&report, "max_frame_bytes = 65536 # default"),
            "{report}"
        );

        let parsed = parse(
            &["--max-subscriptions", "5", "--no-demo-feed"],
            Some("max_subscriptions = 2\ndemo_feed = true\n"),
        )
        .unwrap();
        let c = config(&parsed);
        assert_eq!(c.limits.max_subscriptions, 5);
        assert!(!c.demo_enabled());
        let report = parsed.report();
        assert!(
            has(&report, "max_subscriptions = 5 # flag --max-subscriptions"),
            "{report}"
        );
        assert!(
            has(&report, "demo_feed = false # flag --no-demo-feed"),
            "{report}"
        );
    }

    #[test]
    fn bad_files_name_the_setting_and_line() {
        let err = parse(
            &[],
            Some("listen = \"127.0.0.1:1\"\nmax_subscriptions = \"many\"\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 2: setting `max_subscriptions`: invalid value \"many\""),
            "{err}"
        );
        let err = parse(&[], Some("\n\nmax_subscription = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3: setting `max_subscription`: unknown setting"),
            "{err}"
        );
        let err = parse(&[], Some("log_format = \"xml\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected one of: text, json"), "{err}");
        let err = parse(&[], Some("max_keys = 1\nmax-keys = 2\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("set twice"), "{err}");
        let err = parse(&[], Some("no_demo_feed = true\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("demo_feed = false"), "{err}");
        let err = parse(&[], Some("config = \"other.toml\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot name another"), "{err}");
        let err = parse(&[], Some("[limits]\nmax_keys = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`limits`"), "{err}");
        let err = parse(&[], Some("max_keys = \n")).unwrap_err().to_string();
        assert!(
            err.contains("not valid TOML") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn the_example_holds_every_setting_at_its_default() {
        let example = example();
        let parsed = parse(&[], Some(&example)).unwrap();
        let defaults = parse(&[], None).unwrap();
        assert_eq!(
            format!("{:?}", config(&parsed)),
            format!("{:?}", {
                let mut c = config(&defaults);
                c.config = config(&parsed).config;
                c
            })
        );
        let cmd = config_command();
        for arg in settings(&cmd) {
            if arg.get_default_values().is_empty() {
                continue;
            }
            let id = arg.get_id().as_str();
            assert!(
                parsed.file.as_ref().unwrap().values.contains_key(id),
                "{id} missing from the example"
            );
        }
    }
}
