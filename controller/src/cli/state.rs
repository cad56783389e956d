//! `levee state save FILE`: the cluster's replicated state, saved as JSON,
//! for `levee rules test --state FILE` to try rules against later or
//! elsewhere, without a cluster.

use std::path::PathBuf;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use anyhow::{Context, Result};
use levee_common::pb;

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
    // recent event data: readable by its owner only.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&args.file)
        .with_context(|| format!("creating {}", args.file.display()))?;
    file.write_all(&response.json)
        .with_context(|| format!("writing {}", args.file.display()))?;
    eprintln!(
        "saved the cluster's state ({} bytes) to {}",
        response.json.len(),
        args.file.display()
    );
    Ok(())
}
