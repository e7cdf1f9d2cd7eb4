//! `ws-router-host`: serve the route plugins in a directory over WebSocket.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use ws_router_host::{Config, Host, demo};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();

    let host = Host::new(config.clone()).context("cannot start the plugin engine")?;
    // Watch first, then load: nothing changed in between goes unseen.
    host.watch_plugins();
    let loaded = host.load_plugin_dir(&config.plugins).await?;
    tracing::info!(routes = loaded, dir = %config.plugins.display(), "plugins loaded");

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        "listening on http://{} (WebSocket at /api/v1/ws)",
        listener.local_addr().context("listener has no address")?
    );

    if config.demo_enabled() {
        tokio::spawn(demo::run(Arc::clone(&host), config.demo_rate));
    }
    host.serve(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
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
