//! `levee-agent`: the host agent.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use levee_common::agent_config::AgentConfig;
use levee_common::telemetry::{self, LogFormat};
use tokio_util::sync::CancellationToken;

/// Levee host agent: streams this host's events to the controllers and
/// applies the tasks they send.
#[derive(Debug, Parser)]
#[command(name = "levee-agent", version)]
struct Cli {
    /// Path of the agent's config (see deploy/examples/agent.toml).
    #[arg(long, short, env = "LEVEE_AGENT_CONFIG")]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", env = "LEVEE_LOG_FORMAT")]
    log_format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    levee_common::tls::install_crypto_provider();
    let cli = Cli::parse();
    telemetry::init(
        if matches!(cli.log_format, Format::Json) {
            LogFormat::Json
        } else {
            LogFormat::Text
        },
        "info,openraft=warn",
    );
    let config = match AgentConfig::load(&cli.config) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            // EX_CONFIG: a bad config is not worth restarting for.
            return ExitCode::from(78);
        }
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    match levee_agent::run(config, shutdown)
        .await
        .context("agent failed")
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
