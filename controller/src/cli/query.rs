//! `levee agents | events | plans | tasks | status`.

use anyhow::Result;
use levee_common::pb;
use serde_json::{Value, json};

use super::client::ClientArgs;
use super::output::{OutputFormat, Row, listed, print_rows, timestamp};

#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Show at most this many of the most recent rows.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Answer from the node at --endpoint, even if it lags the leader.
    /// Works without a quorum; by default reads go through the leader.
    #[arg(long)]
    pub stale: bool,
}

/// `levee agents`: the list, or a change to one agent.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub command: Option<AgentsCommand>,
    #[command(flatten)]
    pub list: QueryArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AgentsCommand {
    /// Set (`key=value`) or remove (`key-`) an agent's labels: what
    /// service selectors, spreads and rules match. Labels are the
    /// cluster's; what an agent says of itself is shown as its facts.
    Label(super::labels::LabelArgs),
}

pub async fn agents(args: AgentsArgs) -> Result<()> {
    match args.command {
        Some(AgentsCommand::Label(label)) => super::labels::label(label).await,
        None => list_agents(args.list).await,
    }
}

async fn list_agents(args: QueryArgs) -> Result<()> {
    let client = args.client.connect()?;
    let stale = args.stale;
    let response = client
        .call(|mut c| async move { c.list_agents(pb::ListAgentsRequest { stale }).await })
        .await?;
    print_rows(
        &response.agents,
        args.output,
        "no agents have connected yet",
    );
    Ok(())
}

pub async fn events(args: QueryArgs) -> Result<()> {
    let client = args.client.connect()?;
    let (limit, stale) = (args.limit, args.stale);
    let response = client
        .call(|mut c| async move { c.list_events(pb::ListEventsRequest { limit, stale }).await })
        .await?;
    print_rows(&response.events, args.output, "no events yet");
    Ok(())
}

pub async fn plans(args: QueryArgs) -> Result<()> {
    let client = args.client.connect()?;
    let (limit, stale) = (args.limit, args.stale);
    let response = client
        .call(|mut c| async move { c.list_plans(pb::ListPlansRequest { limit, stale }).await })
        .await?;
    print_rows(&response.plans, args.output, "no plans yet");
    Ok(())
}

pub async fn tasks(args: QueryArgs) -> Result<()> {
    let client = args.client.connect()?;
    let (limit, stale) = (args.limit, args.stale);
    let response = client
        .call(|mut c| async move { c.list_tasks(pb::ListTasksRequest { limit, stale }).await })
        .await?;
    print_rows(&response.tasks, args.output, "no tasks yet");
    Ok(())
}

impl Row for pb::AgentInfo {
    const HEADERS: &'static [&'static str] = &[
        "AGENT",
        "CONNECTED",
        "EPOCH",
        "LABELS",
        "FACTS",
        "SERVICES",
        "DRAINED OF",
        "EVENTS",
        "LAST HELLO",
    ];

    fn cells(&self) -> Vec<String> {
        let mut labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let facts: Vec<String> = self
            .facts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        vec![
            self.agent_id.clone(),
            if self.connected { "yes" } else { "no" }.into(),
            self.boot_epoch.to_string(),
            listed(&labels, ", "),
            listed(&facts, ", "),
            listed(&self.services, ", "),
            listed(&self.avoid, ", "),
            self.events_committed.to_string(),
            timestamp(self.last_connected_unix_ms),
        ]
    }

    fn json(&self) -> Value {
        json!({
            "agent_id": self.agent_id, "connected": self.connected, "boot_epoch": self.boot_epoch,
            "labels": self.labels, "facts": self.facts, "services": self.services,
            "drained_of": self.avoid,
            "events_committed": self.events_committed,
            "last_hello": timestamp(self.last_connected_unix_ms),
        })
    }
}

impl Row for pb::EventInfo {
    const HEADERS: &'static [&'static str] = &[
        "EVENT",
        "TYPE",
        "SUBJECT",
        "TIME",
        "OUTCOMES",
        "PLANS",
        "LOG INDEX",
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.r#type.clone(),
            self.subject.clone(),
            timestamp(self.time_unix_ms),
            listed(&self.outcomes, ", "),
            listed(&self.plan_ids, ", "),
            self.log_index.to_string(),
        ]
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id, "source": self.source, "type": self.r#type, "subject": self.subject,
            "time": timestamp(self.time_unix_ms),
            "data": serde_json::from_str::<Value>(&self.data_json).unwrap_or(Value::Null),
            "rules": self.rules, "plan_ids": self.plan_ids, "log_index": self.log_index,
            "outcomes": self.outcomes,
        })
    }
}

impl Row for pb::PlanInfo {
    const HEADERS: &'static [&'static str] = &["PLAN", "REASON", "EVENT", "RULE", "TASKS", "TERM"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.plan_id.clone(),
            self.reason.clone(),
            if self.cause_event_id.is_empty() {
                "-".into()
            } else {
                self.cause_event_id.clone()
            },
            if self.rule.is_empty() {
                "-".into()
            } else {
                self.rule.clone()
            },
            listed(&self.task_ids, ", "),
            self.term.to_string(),
        ]
    }

    fn json(&self) -> Value {
        json!({
            "plan_id": self.plan_id, "reason": self.reason, "cause_event_id": self.cause_event_id,
            "rule": self.rule, "task_ids": self.task_ids, "log_index": self.log_index, "term": self.term,
            "spec_version": self.spec_version, "problems": self.problems, "rolled_back_by": self.rolled_back_by,
        })
    }
}

impl Row for pb::TaskInfo {
    const HEADERS: &'static [&'static str] = &[
        "TASK", "PLAN", "AGENT", "SERVICE", "STATE", "EVENT", "RULE", "OUTCOME",
    ];

    fn cells(&self) -> Vec<String> {
        let outcome = if self.error.is_empty() {
            listed(&self.outcomes, ", ")
        } else {
            self.error.clone()
        };
        vec![
            self.task_id.clone(),
            self.plan_id.clone(),
            self.agent_id.clone(),
            self.service.clone(),
            self.state.clone(),
            if self.cause_event_id.is_empty() {
                "-".into()
            } else {
                self.cause_event_id.clone()
            },
            if self.rule.is_empty() {
                "-".into()
            } else {
                self.rule.clone()
            },
            outcome,
        ]
    }

    fn json(&self) -> Value {
        json!({
            "task_id": self.task_id, "plan_id": self.plan_id, "agent_id": self.agent_id, "service": self.service,
            "state": self.state, "created_term": self.created_term, "cause_event_id": self.cause_event_id,
            "rule": self.rule, "error": self.error, "outcomes": self.outcomes,
            "action": self.action, "batch": self.batch,
            "created": timestamp(self.created_unix_ms), "finished": timestamp(self.finished_unix_ms),
        })
    }
}

impl Row for pb::ClusterStatusResponse {
    const HEADERS: &'static [&'static str] =
        &["NODE", "STATE", "LEADER", "TERM", "COMMITTED", "APPLIED"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.node_id.to_string(),
            self.state.clone(),
            self.leader_id.to_string(),
            self.term.to_string(),
            self.committed.to_string(),
            self.last_applied.to_string(),
        ]
    }

    fn json(&self) -> Value {
        json!({
            "node_id": self.node_id, "state": self.state, "leader_id": self.leader_id, "leader_addr": self.leader_addr,
            "term": self.term, "last_log_index": self.last_log_index, "committed": self.committed,
            "last_applied": self.last_applied, "purged": self.purged, "snapshot_index": self.snapshot_index,
            "spec_version": self.spec_version, "members": self.members.iter().map(Row::json).collect::<Vec<_>>(),
        })
    }
}
