//! `ws-router-host`: serve the route plugins in a directory over WebSocket.

use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use ws_router_host::{
    Config, Host, asyncapi,
    config::{self, ConfigError},
    demo, http,
    logging::{self, Output},
};

/// Serve (the default), or run one of the subcommands. The serve flags stay
/// top-level so that `ws-router-host --listen ...` keeps working.
#[derive(Parser)]
#[command(
    name = "ws-router-host",
    version,
    about = "WebSocket route host whose routes are WebAssembly plugins",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Subcommand>,
}

#[derive(clap::Subcommand)]
enum Subcommand {
    /// Print the AsyncAPI document of the plugins in `--plugins` (the one
    /// served at /api/v1/ws/asyncapi.json) and exit, without serving.
    Asyncapi {
        #[command(flatten)]
        config: Config,
    },
    /// Print the effective configuration (flags, environment, `--config`
    /// file, defaults), each value with where it came from, and exit.
    /// Secrets print as `<redacted>`.
    #[command(name = "config")]
    ShowConfig {
        #[command(flatten)]
        config: Config,
        /// Print instead a commented config file holding every setting at its
        /// default (`ws-router.example.toml`).
        #[arg(long)]
        example: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let parsed = match config::parse_args(Cli::command(), std::env::args_os()) {
        Ok(parsed) => parsed,
        // Usage errors, --help and --version, as clap shows them.
        Err(ConfigError::Args(e)) => e.exit(),
        Err(e) => return Err(e.into()),
    };
    let cli = Cli::from_arg_matches(&parsed.matches).unwrap_or_else(|e| e.exit());
    let config = match cli.command {
        Some(Subcommand::ShowConfig { example, .. }) => {
            if example {
                print!("{}", config::example());
            } else {
                print!("{}", parsed.report());
            }
            return Ok(());
        }
        Some(Subcommand::Asyncapi { config }) => {
            // stdout carries the document; the log goes to stderr.
            logging::init(config.log_format, &config.log_filter, Output::Stderr)?;
            return print_asyncapi(config).await;
        }
        None => cli.config,
    };
    logging::init(config.log_format, &config.log_filter, Output::Stdout)?;
    if let Some(file) = &parsed.file {
        tracing::info!(file = %file.path().display(), "configuration read");
    }
    // Before anything listens: an open publish API on the network, or a
    // key that cannot be read, stops the host here.
    let security = http::Security::new(&config)?;
    if security.authenticates() {
        tracing::info!("clients must present a token");
    }

    let host = Host::new(config.clone()).context("cannot start the plugin engine")?;
    // Listen first, so that a load balancer sees the process (`/healthz`)
    // and that it is not ready yet (`/readyz`) while plugins compile.
    let listener = http::bind(config.listen, config.listen_backlog)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("listener has no address")?;
    let server = tokio::spawn(http::serve(
        Arc::clone(&host),
        security,
        listener,
        shutdown_signal(),
    ));
    let loaded = host.start().await?;
    tracing::info!(routes = loaded, dir = %config.plugins.display(), "plugins loaded");
    tracing::info!("ready: listening on http://{addr} (WebSocket at /api/v1/ws)");

    if config.demo_enabled() {
        tokio::spawn(demo::run(Arc::clone(&host), config.demo_rate));
    }
    server.await.context("the server task failed")??;
    tracing::info!("stopped");
    Ok(())
}

/// `ws-router-host asyncapi`: load the plugins, print the document.
async fn print_asyncapi(config: Config) -> anyhow::Result<()> {
    let host = Host::new(config.clone()).context("cannot start the plugin engine")?;
    host.load_plugin_dir().await?;
    let document = asyncapi::document(host.routes().values(), &config.listen.to_string()).await;
    let text = serde_json::to_string_pretty(&document).context("cannot encode the document")?;
    println!("{text}");
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
