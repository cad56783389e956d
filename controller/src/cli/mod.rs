//! The `levee` command line: parsing, then one module per command family.

/// `println!` for a command's answer, quiet when stdout's reader is gone
/// (`levee events | head`).
macro_rules! out {
    () => {
        $crate::cli::stdout::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::stdout::line(format_args!($($arg)*))
    };
}

mod approve;
mod automation;
mod ca;
mod client;
mod cluster;
mod desired;
mod dev;
mod json_output;
mod labels;
mod output;
mod query;
mod rules;
mod server;
mod specs;
mod state;
mod stdout;
mod terminal;
mod why;

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
    /// List agents (connection, labels, facts, services placed on them),
    /// or label one: `levee agents label NAME key=value key2-`.
    Agents(query::AgentsArgs),
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
    /// Print the JSON Schema of spec documents (for editors).
    Schema,
    /// Show what applying specs would change, per agent and batch.
    ///
    /// Exit code 0: no changes; 2: changes pending; 1: error.
    Plan(desired::SpecsArgs),
    /// Commit specs as the new desired state and follow the rollout.
    ///
    /// Exit code 0 when every task succeeded, 1 otherwise.
    Apply(desired::ApplyArgs),
    /// List spec versions: who applied them, when and why.
    History(query::QueryArgs),
    /// Restore an earlier spec version (as a new version) and follow it.
    Rollback(desired::RollbackArgs),
    /// Set a service's replica count within its min and max.
    Scale(desired::ScaleArgs),
    /// Services against their targets, and agents that drifted.
    Status(query::QueryArgs),
    /// Why a service changed: event -> rule -> plan -> task -> result.
    Why(why::WhyArgs),
    /// List rule actions waiting for an operator.
    Approvals(query::QueryArgs),
    /// Carry out (or, with --reject, drop) a rule action awaiting approval.
    Approve(approve::ApproveArgs),
    /// List rules with what they did, or try them against recorded events.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Move everything (or one service) off an agent and place nothing
    /// there until `levee undrain`.
    Drain(automation::DrainArgs),
    /// Let a drained agent take work again.
    Undrain(automation::UndrainArgs),
    /// List hosts asked of provisioners and what became of them.
    Provisions(query::QueryArgs),
    /// Settle a provision a leader change left `unknown`: say whether the
    /// host was made.
    ResolveProvision(automation::ResolveArgs),
    /// Save the cluster's state, for `levee rules test --state`.
    #[command(subcommand)]
    State(state::StateCommand),
}

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    let done = match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Server { config } => server::run(&config).await,
        Command::Ca(command) => ca::run(command),
        Command::Agents(args) => query::agents(args).await,
        Command::Events(args) => query::events(args).await,
        Command::Plans(args) => query::plans(args).await,
        Command::Tasks(args) => query::tasks(args).await,
        Command::Cluster(command) => cluster::run(command).await,
        Command::Validate { path } => specs::validate(&path),
        Command::Schema => specs::schema(),
        Command::Why(args) => why::why(args).await,
        Command::Rules(command) => rules::run(command).await,
        Command::Approvals(args) => approve::list(args).await,
        Command::Approve(args) => approve::approve(args).await,
        Command::Drain(args) => automation::drain(args).await,
        Command::Undrain(args) => automation::undrain(args).await,
        Command::Provisions(args) => automation::provisions(args).await,
        Command::ResolveProvision(args) => automation::resolve(args).await,
        Command::State(command) => state::run(command).await,
        Command::Plan(args) => return desired::plan(args).await,
        Command::Apply(args) => return desired::apply(args).await,
        Command::History(args) => return desired::history(args).await,
        Command::Rollback(args) => return desired::rollback(args).await,
        Command::Scale(args) => return desired::scale(args).await,
        Command::Status(args) => return desired::status(args).await,
    };
    done.map(|()| 0)
}

/// An error as `main` prints it on stderr. Peer-supplied text in it was
/// escaped where it entered (`client::describe`); escaping the whole
/// again, keeping only the line breaks of multi-line errors (every problem
/// of a spec on its own line), covers whatever else an error quotes.
pub fn error_message(err: &anyhow::Error) -> String {
    format!(
        "error: {}",
        terminal::escape_keeping_lines(&format!("{err:#}"))
    )
}

/// The process exit code for an error: 2 for usage and input problems the
/// caller can fix, 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<desired::PlanFailed>().is_some() {
        1
    } else if err
        .chain()
        .any(|cause| cause.is::<levee_common::spec::SpecErrors>())
    {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
