//! `levee plan | apply | history | rollback | scale | status`: desired
//! state, its versions, and following a rollout until it converges.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use levee_common::pb;
use serde_json::{Value, json};

use super::client::{Client, ClientArgs};
use super::output::{OutputFormat, Row, listed, print_rows, timestamp};
use super::specs::{parse_specs, read_spec_files, wire_files};
use super::terminal::{eprint_line, print_line};

/// How often a rollout's progress is polled.
const POLL: Duration = Duration::from_millis(250);

/// `levee plan` found changes: exit code 2, as `terraform plan
/// -detailed-exitcode` does.
pub const EXIT_CHANGES: u8 = 2;

/// Marks an error from `levee plan`, which exits 1 for every error (2
/// means "changes pending" there).
#[derive(Debug, thiserror::Error)]
#[error("planning failed")]
pub struct PlanFailed;

#[derive(Debug, Clone, clap::Args)]
pub struct SpecsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// A spec file or a directory of `*.yaml` / `*.yml` files.
    #[arg(long = "file", short = 'f')]
    pub path: PathBuf,
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FollowArgs {
    /// Return once committed, without following the rollout.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up following the rollout after this many seconds (it goes on).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub specs: SpecsArgs,
    /// Why this version is applied; kept in the history.
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub follow: FollowArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The version to restore (see `levee history`).
    #[arg(value_name = "VERSION")]
    pub to: u64,
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub follow: FollowArgs,
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    pub service: String,
    /// Replica count, within the service's `replicas.min` and `max`.
    pub replicas: u32,
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub follow: FollowArgs,
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

pub async fn plan(args: SpecsArgs) -> Result<u8> {
    plan_inner(args)
        .await
        .map_err(|err| err.context(PlanFailed))
}

async fn plan_inner(args: SpecsArgs) -> Result<u8> {
    let files = read_spec_files(&args.path)?;
    parse_specs(&files)?;
    let client = args.client.connect()?;
    let request = pb::PlanSpecsRequest {
        files: wire_files(files),
        stale: false,
    };
    let response = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.plan_specs(request).await }
        })
        .await?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for step in &response.steps {
        *counts.entry(step.action.as_str()).or_default() += 1;
    }
    let count = |action| counts.get(action).copied().unwrap_or(0);
    match args.output {
        OutputFormat::Json => out!(
            "{}",
            super::json_output::to_json(&json!({
                "current_version": response.current_version,
                "steps": response.steps.iter().map(Row::json).collect::<Vec<_>>(),
                "problems": response.problems,
                "summary": { "create": count("create"), "update": count("update"), "remove": count("remove") },
            }))?
        ),
        OutputFormat::Table => {
            print_rows(
                &response.steps,
                OutputFormat::Table,
                "No changes: the agents run what these specs declare.",
            );
            for problem in &response.problems {
                print_line(&format!("warning: {problem}"));
            }
            if !response.steps.is_empty() {
                out!(
                    "Plan against version {}: {} to create, {} to update, {} to remove.",
                    response.current_version,
                    count("create"),
                    count("update"),
                    count("remove")
                );
            }
        }
    }
    Ok(if response.steps.is_empty() {
        0
    } else {
        EXIT_CHANGES
    })
}

pub async fn apply(args: ApplyArgs) -> Result<u8> {
    let files = read_spec_files(&args.specs.path)?;
    // Validate locally first: the same checks the controller runs, with
    // no round trip for a typo.
    parse_specs(&files)?;
    let client = args.specs.client.connect()?;
    let response = apply_specs(&client, files, args.reason).await?;
    let output = args.specs.output;
    if response.unchanged {
        let line = format!(
            "no change to the specs: spec version {} stays current",
            response.version
        );
        say(output, &line);
    } else {
        say(
            output,
            &format!("spec version {} committed", response.version),
        );
    }
    let summary = json!({ "version": response.version, "unchanged": response.unchanged });
    follow_all(&client, &response.plan_ids, &args.follow, output, summary).await
}

/// Commits spec files as the new desired state through the Control API;
/// the same files as the current version make no new version
/// (`unchanged`).
pub async fn apply_specs(
    client: &Client,
    files: Vec<(String, String)>,
    reason: String,
) -> Result<pb::ApplySpecsResponse> {
    let request = pb::ApplySpecsRequest {
        files: wire_files(files),
        reason,
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.apply_specs(request).await }
        })
        .await
}

pub async fn rollback(args: RollbackArgs) -> Result<u8> {
    let client = args.client.connect()?;
    let request = pb::RollbackRequest {
        version: args.to,
        reason: args.reason,
    };
    let response = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.rollback(request).await }
        })
        .await?;
    say(
        args.output,
        &format!(
            "version {} restored as spec version {}",
            args.to, response.version
        ),
    );
    let summary = json!({ "version": response.version, "restored": args.to });
    follow_all(
        &client,
        &response.plan_ids,
        &args.follow,
        args.output,
        summary,
    )
    .await
}

pub async fn scale(args: ScaleArgs) -> Result<u8> {
    let client = args.client.connect()?;
    let request = pb::ScaleRequest {
        service: args.service.clone(),
        replicas: args.replicas,
        reason: args.reason,
    };
    let response = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.scale(request).await }
        })
        .await?;
    say(
        args.output,
        &format!(
            "{}: {} -> {} replicas",
            args.service, response.from, response.to
        ),
    );
    let summary = json!({ "service": args.service, "from": response.from, "to": response.to });
    let plans: Vec<String> = Some(response.plan_id)
        .filter(|id| !id.is_empty())
        .into_iter()
        .collect();
    follow_all(&client, &plans, &args.follow, args.output, summary).await
}

/// The command's result: on stdout for a table, on stderr when stdout is
/// kept for one JSON document.
fn say(output: OutputFormat, line: &str) {
    match output {
        OutputFormat::Table => print_line(line),
        OutputFormat::Json => eprint_line(line),
    }
}

/// Follows each plan to its end (unless told not to wait) and returns the
/// exit code: 0 when every task succeeded. With `--output json`, prints one
/// document: `summary` plus the plan ids and their final tasks.
async fn follow_all(
    client: &Client,
    plan_ids: &[String],
    follow: &FollowArgs,
    output: OutputFormat,
    mut summary: Value,
) -> Result<u8> {
    let mut tasks = Vec::new();
    let mut failed = false;
    if plan_ids.is_empty() {
        eprintln!("nothing to change: the agents already run this");
    } else if follow.no_wait {
        say(output, &format!("plans: {}", plan_ids.join(", ")));
    } else {
        let deadline = Instant::now() + Duration::from_secs(follow.timeout);
        for plan_id in plan_ids {
            let finished = follow_plan(client, plan_id, deadline).await?;
            failed |= finished
                .iter()
                .any(|task| !matches!(task.state.as_str(), "succeeded" | "superseded"));
            tasks.extend(finished);
        }
    }
    if output == OutputFormat::Json {
        summary["plan_ids"] = json!(plan_ids);
        summary["tasks"] = Value::Array(tasks.iter().map(Row::json).collect());
        summary["succeeded"] = json!(!failed);
        out!("{}", super::json_output::to_json(&summary)?);
    }
    Ok(if failed { 1 } else { 0 })
}

/// Polls one plan until every task is finished, printing a line each time
/// the picture changes. Returns the final tasks.
async fn follow_plan(
    client: &Client,
    plan_id: &str,
    deadline: Instant,
) -> Result<Vec<pb::TaskInfo>> {
    let started = Instant::now();
    let mut last_line = String::new();
    loop {
        let request = pb::GetPlanRequest {
            plan_id: plan_id.to_owned(),
            stale: false,
        };
        let response = client
            .call(|mut c| {
                let request = request.clone();
                async move { c.get_plan(request).await }
            })
            .await?;
        let plan = response
            .plan
            .ok_or_else(|| anyhow!("plan {plan_id} has no record"))?;
        let line = progress_line(&response.tasks);
        if line != last_line {
            eprint_line(&format!(
                "[{:>5.1}s] {plan_id}: {line}",
                started.elapsed().as_secs_f64()
            ));
            let _ = std::io::stderr().flush();
            last_line = line;
        }
        let finished = response
            .tasks
            .iter()
            .all(|task| !matches!(task.state.as_str(), "pending" | "waiting"));
        if finished {
            for task in response.tasks.iter().filter(|task| !task.error.is_empty()) {
                eprint_line(&format!(
                    "  {} on {} ({}): {}",
                    task.task_id, task.agent_id, task.state, task.error
                ));
            }
            if plan.rolled_back_by != 0 {
                eprintln!(
                    "rollout failed; rolled back automatically as spec version {} (see `levee history`)",
                    plan.rolled_back_by
                );
            }
            return Ok(response.tasks);
        }
        if Instant::now() >= deadline {
            bail!(
                "stopped following plan {plan_id} after the timeout; it goes on (see `levee tasks`)"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// E.g. `batch 2/3 · 4 succeeded, 1 pending, 2 waiting`.
fn progress_line(tasks: &[pb::TaskInfo]) -> String {
    let batches = tasks
        .iter()
        .map(|task| task.batch)
        .max()
        .map_or(0, |max| max + 1);
    let current = tasks
        .iter()
        .filter(|task| task.state == "pending")
        .map(|task| task.batch)
        .min()
        .map_or(batches, |batch| batch + 1);
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for task in tasks {
        *states.entry(task.state.as_str()).or_default() += 1;
    }
    let states = states
        .iter()
        .map(|(state, count)| format!("{count} {state}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("batch {current}/{batches} · {states}")
}

pub async fn history(args: super::query::QueryArgs) -> Result<u8> {
    let client = args.client.connect()?;
    let (limit, stale) = (args.limit, args.stale);
    let response = client
        .call(|mut c| async move {
            c.list_versions(pb::ListVersionsRequest { limit, stale })
                .await
        })
        .await?;
    print_rows(
        &response.versions,
        args.output,
        "no spec version applied yet",
    );
    Ok(0)
}

pub async fn status(args: super::query::QueryArgs) -> Result<u8> {
    let client = args.client.connect()?;
    let stale = args.stale;
    let response = client
        .call(|mut c| async move { c.status(pb::StatusRequest { stale }).await })
        .await?;
    match args.output {
        OutputFormat::Json => out!(
            "{}",
            super::json_output::to_json(&json!({
                "spec_version": response.spec_version,
                "services": response.services.iter().map(Row::json).collect::<Vec<_>>(),
                "agents": response.agents.iter().map(Row::json).collect::<Vec<_>>(),
            }))?
        ),
        OutputFormat::Table => {
            out!("spec version {}", response.spec_version);
            print_rows(
                &response.services,
                OutputFormat::Table,
                "no services declared",
            );
            print_rows(
                &response.agents,
                OutputFormat::Table,
                "no agents have connected yet",
            );
        }
    }
    Ok(0)
}

impl Row for pb::PlannedStep {
    const HEADERS: &'static [&'static str] = &["ACTION", "SERVICE", "AGENT", "BATCH", "CHANGES"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.action.clone(),
            self.service.clone(),
            self.agent_id.clone(),
            (self.batch + 1).to_string(),
            listed(&self.changes, ", "),
        ]
    }

    fn json(&self) -> Value {
        json!({ "action": self.action, "service": self.service, "agent_id": self.agent_id,
                "batch": self.batch, "changes": self.changes })
    }
}

impl Row for pb::VersionInfo {
    const HEADERS: &'static [&'static str] = &[
        "VERSION", "APPLIED", "BY", "ORIGIN", "REASON", "SERVICES", "PLANS",
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            format!(
                "{}{}",
                self.version,
                if self.current { " (current)" } else { "" }
            ),
            timestamp(self.applied_unix_ms),
            self.applied_by.clone(),
            self.origin.clone(),
            if self.reason.is_empty() {
                "-".into()
            } else {
                self.reason.clone()
            },
            listed(&self.services, ", "),
            listed(&self.plan_ids, ", "),
        ]
    }

    fn json(&self) -> Value {
        json!({ "version": self.version, "current": self.current, "applied": timestamp(self.applied_unix_ms),
                "applied_by": self.applied_by, "origin": self.origin, "reason": self.reason,
                "services": self.services, "rules": self.rules, "plan_ids": self.plan_ids })
    }
}

impl Row for pb::ServiceStatus {
    const HEADERS: &'static [&'static str] = &[
        "SERVICE",
        "TARGET",
        "MIN..MAX",
        "PLACED",
        "CONVERGED",
        "IN FLIGHT",
        "FAILED",
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.target.to_string(),
            format!("{}..{}", self.min, self.max),
            self.placed.to_string(),
            self.converged.to_string(),
            self.in_flight.to_string(),
            self.failed.to_string(),
        ]
    }

    fn json(&self) -> Value {
        json!({ "name": self.name, "target": self.target, "min": self.min, "max": self.max, "placed": self.placed,
                "converged": self.converged, "in_flight": self.in_flight, "failed": self.failed })
    }
}

impl Row for pb::AgentStatus {
    const HEADERS: &'static [&'static str] = &["AGENT", "CONNECTED", "SERVICES", "DRIFT"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.agent_id.clone(),
            if self.connected { "yes" } else { "no" }.into(),
            self.services.to_string(),
            if self.drift.is_empty() {
                "none".into()
            } else {
                self.drift.join("; ")
            },
        ]
    }

    fn json(&self) -> Value {
        json!({ "agent_id": self.agent_id, "connected": self.connected, "services": self.services,
                "drift": self.drift, "drifting": !self.drift.is_empty() })
    }
}
