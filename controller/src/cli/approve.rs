//! `levee approvals` and `levee approve ID [--reject]`: rule actions that
//! wait for an operator (`guardrails.approval`).

use anyhow::Result;
use levee_common::pb;
use serde_json::{Value, json};

use super::client::ClientArgs;
use super::output::{Row, print_rows, timestamp};
use super::query::QueryArgs;
use super::terminal::print_line;

#[derive(Debug, Clone, clap::Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The id shown by `levee approvals` (and in the event's outcome).
    pub id: String,
    /// Drop the action instead of carrying it out.
    #[arg(long)]
    pub reject: bool,
}

pub async fn list(args: QueryArgs) -> Result<()> {
    let client = args.client.connect()?;
    let stale = args.stale;
    let response = client
        .call(|mut c| async move { c.list_approvals(pb::ListApprovalsRequest { stale }).await })
        .await?;
    print_rows(&response.approvals, args.output, "nothing awaits approval");
    Ok(())
}

pub async fn approve(args: ApproveArgs) -> Result<()> {
    let client = args.client.connect()?;
    let request = pb::ApproveRequest {
        id: args.id,
        reject: args.reject,
    };
    let response = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.approve(request).await }
        })
        .await?;
    print_line(&response.outcome);
    Ok(())
}

impl Row for pb::ApprovalInfo {
    const HEADERS: &'static [&'static str] = &["ID", "RULE", "ACTION", "AGENT", "EVENT", "SINCE"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.rule.clone(),
            self.action.clone(),
            self.agent_id.clone(),
            self.event_id.clone(),
            timestamp(self.at_unix_ms),
        ]
    }

    fn json(&self) -> Value {
        json!({ "id": self.id, "rule": self.rule, "action": self.action, "agent_id": self.agent_id,
                "event_id": self.event_id, "since": timestamp(self.at_unix_ms) })
    }
}
