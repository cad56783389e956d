//! `levee rules list`, `levee drain`, `levee undrain` and `levee
//! provisions`: what the automation is doing, and taking a host out of
//! service by hand.

use anyhow::Result;
use levee_common::pb;
use serde_json::{Value, json};

use super::client::ClientArgs;
use super::output::{Row, print_rows, timestamp};
use super::query::QueryArgs;
use super::terminal::print_line;

#[derive(Debug, Clone, clap::Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The agent to take work off.
    pub agent: String,
    /// Move only this service off the agent.
    #[arg(long)]
    pub service: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UndrainArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The agent that may take work again.
    pub agent: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The provision's id, as `levee provisions` shows it.
    pub id: String,
    /// The provisioner did make a host (it keeps counting against
    /// `max_hosts`).
    #[arg(long, conflicts_with = "no_host")]
    pub host_made: bool,
    /// No host was made (it stops counting).
    #[arg(long, required_unless_present = "host_made")]
    pub no_host: bool,
}

pub async fn resolve(args: ResolveArgs) -> Result<()> {
    let client = args.client.connect()?;
    let request = pb::ResolveProvisionRequest {
        id: args.id.clone(),
        host_made: args.host_made,
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.resolve_provision(request).await }
        })
        .await?;
    print_line(&format!("provision {} resolved", args.id));
    Ok(())
}

pub async fn drain(args: DrainArgs) -> Result<()> {
    let request = pb::DrainRequest {
        agent_id: args.agent.clone(),
        service: args.service.clone().unwrap_or_default(),
        undo: false,
    };
    let plan = send(&args.client, request).await?;
    let what = args.service.unwrap_or_else(|| "everything".into());
    match plan {
        Some(plan) => print_line(&format!(
            "moving {what} off {}: plan {plan} (see `levee tasks`)",
            args.agent
        )),
        None => print_line(&format!("{} runs none of {what} already", args.agent)),
    }
    Ok(())
}

pub async fn undrain(args: UndrainArgs) -> Result<()> {
    let request = pb::DrainRequest {
        agent_id: args.agent.clone(),
        service: String::new(),
        undo: true,
    };
    match send(&args.client, request).await? {
        Some(plan) => print_line(&format!("{} takes work again: plan {plan}", args.agent)),
        None => print_line(&format!("{} takes work again", args.agent)),
    }
    Ok(())
}

async fn send(client: &ClientArgs, request: pb::DrainRequest) -> Result<Option<String>> {
    let client = client.connect()?;
    let response = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.drain(request).await }
        })
        .await?;
    Ok((!response.plan_id.is_empty()).then_some(response.plan_id))
}

pub async fn rules(args: QueryArgs) -> Result<()> {
    let client = args.client.connect()?;
    let stale = args.stale;
    let response = client
        .call(|mut c| async move { c.list_rules(pb::ListRulesRequest { stale }).await })
        .await?;
    print_rows(&response.rules, args.output, "no rules in the specs");
    Ok(())
}

pub async fn provisions(args: QueryArgs) -> Result<()> {
    let client = args.client.connect()?;
    let stale = args.stale;
    let response = client
        .call(|mut c| async move { c.list_provisions(pb::ListProvisionsRequest { stale }).await })
        .await?;
    print_rows(&response.provisions, args.output, "no host was provisioned");
    Ok(())
}

impl Row for pb::RuleInfo {
    const HEADERS: &'static [&'static str] = &[
        "RULE",
        "ACTION",
        "ACTED",
        "HELD",
        "LAST ACTION",
        "SIGNAL",
        "WINDOW",
    ];

    fn cells(&self) -> Vec<String> {
        let action = if self.dry_run {
            format!("{} (dry run)", self.action)
        } else {
            self.action.clone()
        };
        vec![
            self.name.clone(),
            action,
            self.actions.to_string(),
            self.held.to_string(),
            timestamp(self.last_action_unix_ms),
            if self.signal.is_empty() {
                "-".into()
            } else {
                self.signal.clone()
            },
            self.window_samples.to_string(),
        ]
    }

    fn json(&self) -> Value {
        json!({ "name": self.name, "action": self.action, "dry_run": self.dry_run,
                "actions": self.actions, "held": self.held,
                "last_action": timestamp(self.last_action_unix_ms),
                "signal": self.signal, "window_samples": self.window_samples })
    }
}

impl Row for pb::ProvisionInfo {
    const HEADERS: &'static [&'static str] =
        &["ID", "PROVISIONER", "STATE", "REQUESTED", "CAUSE", "DETAIL"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.provisioner.clone(),
            self.state.clone(),
            timestamp(self.requested_unix_ms),
            self.cause.clone(),
            self.detail.clone(),
        ]
    }

    fn json(&self) -> Value {
        json!({ "id": self.id, "provisioner": self.provisioner, "state": self.state,
                "requested": timestamp(self.requested_unix_ms), "cause": self.cause,
                "detail": self.detail })
    }
}
