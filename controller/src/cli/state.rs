//! `levee state save FILE`: the cluster's replicated state, saved as JSON,
//! for `levee rules test --state FILE` to try rules against later or
//! elsewhere, without a cluster.

use std::path::PathBuf;

use anyhow::{Context, Result};
use levee_common::{pb, private_files};

use super::client::ClientArgs;

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Save the replicated state (agents, specs, placements, rule state...)
    /// as JSON.
    Save(SaveArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct SaveArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Where to write it.
    pub file: PathBuf,
    /// Save the state of the node at --endpoint, even if it lags.
    #[arg(long)]
    pub stale: bool,
}

pub async fn run(command: StateCommand) -> Result<()> {
    let StateCommand::Save(args) = command;
    let client = args.client.connect()?;
    let stale = args.stale;
    let response = client
        .call(|mut c| async move { c.export_state(pb::ExportStateRequest { stale }).await })
        .await?;
    // It holds the specs (a provisioner's env may carry credentials) and
    // recent event data: readable by its owner only, also when it
    // replaces a file that was readable by others.
    private_files::write(&args.file, &response.json)
        .with_context(|| format!("saving the state to {}", args.file.display()))?;
    eprintln!(
        "saved the cluster's state ({} bytes) to {}",
        response.json.len(),
        args.file.display()
    );
    Ok(())
}
