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
    #[arg(long, short, global = true, env = "LEVEE_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", env = "LEVEE_LOG_FORMAT")]
    log_format: Format,
    /// Without a command, run the agent.
    #[command(subcommand)]
    command: Option<AgentCommand>,
}

#[derive(Debug, clap::Subcommand)]
enum AgentCommand {
    /// Send an event from this host to the controllers, through the
    /// running agent (its `emit.sock`). Exits 0 once the event is stored.
    Emit {
        /// The event type, e.g. `app.load` (`host.*`, `levee.*` and `timer.*`
        /// are reserved).
        #[arg(value_name = "TYPE")]
        event_type: String,
        /// The event's data, a JSON document.
        #[arg(long, default_value = "{}")]
        data: String,
        /// What the event is about, e.g. a service name.
        #[arg(long, default_value = "")]
        subject: String,
    },
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
    let Some(config_path) = cli.config else {
        eprintln!("error: no config given: pass --config FILE or set LEVEE_AGENT_CONFIG");
        return ExitCode::from(2);
    };
    let config = match levee_agent::load_config(&config_path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            // EX_CONFIG: a bad config is not worth restarting for.
            return ExitCode::from(78);
        }
    };
    if let Some(AgentCommand::Emit {
        event_type,
        data,
        subject,
    }) = cli.command
    {
        return emit(&config, event_type, &data, subject).await;
    }
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

async fn emit(config: &AgentConfig, event_type: String, data: &str, subject: String) -> ExitCode {
    let data = match serde_json::from_str(data) {
        Ok(data) => data,
        Err(err) => {
            eprintln!("error: --data is not JSON: {err}");
            return ExitCode::from(2);
        }
    };
    let request = levee_agent::sources::emit::EmitRequest {
        event_type,
        subject,
        data,
    };
    let socket = levee_agent::sources::emit::socket_path(&config.data_dir);
    match levee_agent::sources::emit::emit(&socket, &request).await {
        Ok(seq) => {
            println!("stored as event {seq}");
            ExitCode::SUCCESS
        }
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
