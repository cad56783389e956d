//! `levee why SERVICE [--agent AGENT]`: what changed a service lately, and
//! why, as cause chains: event → rule → plan → task → result.

use anyhow::Result;
use levee_common::pb;
use serde_json::{Value, json};

use super::client::ClientArgs;
use super::output::{OutputFormat, timestamp};
use super::terminal::print_line;

#[derive(Debug, Clone, clap::Args)]
pub struct WhyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The service whose changes to explain.
    pub service: String,
    /// Only changes on this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// How many of the most recent changes.
    #[arg(long, default_value_t = 5)]
    pub limit: u32,
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: OutputFormat,
    #[arg(long)]
    pub stale: bool,
}

pub async fn why(args: WhyArgs) -> Result<()> {
    let client = args.client.connect()?;
    let request = pb::WhyRequest {
        service: args.service.clone(),
        agent_id: args.agent.clone().unwrap_or_default(),
        limit: args.limit,
        stale: args.stale,
    };
    let response = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.why(request).await }
        })
        .await?;
    match args.output {
        OutputFormat::Json => out!(
            "{}",
            super::json_output::to_json(&Value::Array(
                response.chains.iter().map(chain_json).collect()
            ))?
        ),
        OutputFormat::Table if response.chains.is_empty() => {
            print_line(&format!("no changes to {} recorded", args.service))
        }
        OutputFormat::Table => {
            for chain in &response.chains {
                // Line by line, each escaped: a value cannot add a line.
                for line in render(chain) {
                    print_line(&line);
                }
                out!();
            }
        }
    }
    Ok(())
}

/// A chain as indented lines, cause first, not yet escaped.
fn render(chain: &pb::CauseChain) -> Vec<String> {
    let mut lines = vec![format!(
        "{}  {}",
        timestamp(chain.created_unix_ms),
        chain.plan_id
    )];
    if let Some(event) = &chain.event {
        lines.push(format!(
            "  event  {} {} (subject {}) from {}: {}",
            event.id, event.r#type, event.subject, event.source, event.data_json
        ));
    }
    if !chain.rule.is_empty() {
        lines.push(format!("  rule   {}: {}", chain.rule, chain.rule_outcome));
    }
    lines.push(format!("  plan   {} ({})", chain.plan_id, chain.reason));
    for task in &chain.tasks {
        lines.push(format!(
            "  task   {} {} on {}: {}{}",
            task.task_id,
            task.action,
            task.agent_id,
            task.state,
            if task.result.is_empty() {
                String::new()
            } else {
                format!(" ({})", task.result)
            }
        ));
    }
    lines
}

fn chain_json(chain: &pb::CauseChain) -> Value {
    json!({
        "plan_id": chain.plan_id, "reason": chain.reason, "log_index": chain.log_index,
        "created": timestamp(chain.created_unix_ms),
        "event": chain.event.as_ref().map(|event| json!({
            "id": event.id, "source": event.source, "type": event.r#type, "subject": event.subject,
            "time": timestamp(event.time_unix_ms),
            "data": serde_json::from_str::<Value>(&event.data_json).unwrap_or(Value::Null),
        })),
        "rule": chain.rule, "rule_outcome": chain.rule_outcome,
        "tasks": chain.tasks.iter().map(|task| json!({
            "task_id": task.task_id, "agent_id": task.agent_id, "action": task.action,
            "state": task.state, "result": task.result,
        })).collect::<Vec<_>>(),
    })
}
