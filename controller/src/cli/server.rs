//! `levee server`: one controller node from a config file, the production
//! entry point.

use std::path::Path;

use anyhow::Result;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::NodeConfig;
use crate::node;

/// Runs the node `config_path` describes until SIGINT or SIGTERM, then
/// stops it in order.
pub async fn run(config_path: &Path) -> Result<()> {
    let config = NodeConfig::load(config_path)?;
    let shutdown = CancellationToken::new();
    let node = node::start(config, shutdown.clone()).await?;
    shutdown_signal().await;
    shutdown.cancel();
    node.wait().await
}

/// Resolves on SIGINT or SIGTERM.
pub(super) async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    ) {
        Ok(signal) => signal,
        Err(err) => {
            warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C will stop this process");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
