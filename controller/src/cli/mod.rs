//! The `levee` command line: parsing, then one module per command family.

mod ca;
mod client;
mod cluster;
mod dev;
mod output;
mod query;
mod specs;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use self::client::ClientArgs;
pub use self::output::OutputFormat;

/// Levee: event-driven infrastructure as code.
///
/// Agents on each host stream events to a Raft-replicated controller
/// cluster, which matches rules, plans changes against the declared desired
/// state, and dispatches apply tasks back to the agents.
#[derive(Debug, Parser)]
#[command(name = "levee", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "LEVEE_LOG_FORMAT"
    )]
    pub log_format: LogFormatArg,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a one-node controller and a local agent with the example specs.
    Dev(dev::DevArgs),
    /// Run one controller node from a TOML config file.
    Server {
        /// Path of the node's config (see deploy/examples/controller.toml).
        #[arg(long, short, env = "LEVEE_CONFIG")]
        config: PathBuf,
    },
    /// Manage the cluster certificate authority.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// List agents: connection, labels, services placed on them.
    Agents(query::QueryArgs),
    /// List recent events with the rules they matched and the plans they caused.
    Events(query::QueryArgs),
    /// List recent plans and their cause.
    Plans(query::QueryArgs),
    /// List recent tasks: agent, state, cause, outcome.
    Tasks(query::QueryArgs),
    /// Manage and inspect the controller cluster.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Check spec files without contacting a controller.
    Validate {
        /// A spec file or a directory of `*.yaml` / `*.yml` files.
        path: PathBuf,
    },
    /// Commit the specs in a directory as the new desired state.
    Apply(specs::ApplyArgs),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Server { config } => dev::run_server(&config).await,
        Command::Ca(command) => ca::run(command),
        Command::Agents(args) => query::agents(args).await,
        Command::Events(args) => query::events(args).await,
        Command::Plans(args) => query::plans(args).await,
        Command::Tasks(args) => query::tasks(args).await,
        Command::Cluster(command) => cluster::run(command).await,
        Command::Validate { path } => specs::validate(&path),
        Command::Apply(args) => specs::apply(args).await,
    }
}

/// The process exit code for an error: 2 for usage and input problems the
/// caller can fix, 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|cause| cause.is::<levee_common::spec::SpecErrors>())
    {
        2
    } else {
        1
    }
}
