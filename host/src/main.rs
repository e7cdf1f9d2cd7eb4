//! `ws-router-host`: serve the route plugins in a directory over WebSocket.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use ws_router_host::{Config, Host, asyncapi, demo, http};

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let print_only = cli.command.is_some();
    let fmt = tracing_subscriber::fmt().with_env_filter(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    );
    if print_only {
        // stdout carries the document; the log goes to stderr.
        fmt.with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init();
    }
    let config = match cli.command {
        Some(Subcommand::Asyncapi { config }) => return print_asyncapi(config).await,
        None => cli.config,
    };

    let host = Host::new(config.clone()).context("cannot start the plugin engine")?;
    let loaded = host.start().await?;
    tracing::info!(routes = loaded, dir = %config.plugins.display(), "plugins loaded");

    let listener = http::bind(config.listen, config.listen_backlog)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        "listening on http://{} (WebSocket at /api/v1/ws)",
        listener.local_addr().context("listener has no address")?
    );

    if config.demo_enabled() {
        tokio::spawn(demo::run(Arc::clone(&host), config.demo_rate));
    }
    http::serve(host, listener, shutdown_signal()).await?;
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
