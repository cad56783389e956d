//! `levee why`: the cause chain of a service's recent changes, read from
//! the replicated state: event → rule (and what it decided) → plan →
//! tasks → results. Pure, so it is tested without a cluster.

use levee_common::ids::{AgentId, PlanId};
use serde::Serialize;

use super::ClusterState;
use super::records::{EventRecord, TaskRecord};

/// One change and everything that led to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chain {
    pub plan_id: PlanId,
    pub reason: String,
    pub log_index: u64,
    pub created_ms: i64,
    /// The event that set it off, if an event did.
    pub event: Option<ChainEvent>,
    pub rule: Option<String>,
    /// The rule's own account, e.g. `scaled web 2 -> 4: plan p9.1`.
    pub rule_outcome: Option<String>,
    /// The plan's tasks for the service asked about.
    pub tasks: Vec<ChainTask>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainEvent {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub subject: String,
    pub time_ms: i64,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainTask {
    pub task_id: String,
    pub agent_id: String,
    pub action: String,
    pub state: String,
    pub result: String,
}

impl ClusterState {
    /// The last `limit` plans that changed `service` (on `agent`, if
    /// given), newest first.
    pub fn why(&self, service: &str, agent: Option<&AgentId>, limit: usize) -> Vec<Chain> {
        let mut tasks: Vec<&TaskRecord> = self
            .work
            .tasks
            .values()
            .filter(|task| {
                task.service == service && agent.is_none_or(|agent| &task.agent_id == agent)
            })
            .collect();
        tasks.sort_by_key(|task| std::cmp::Reverse((task.created.index, task.task_id.clone())));
        let mut chains: Vec<Chain> = Vec::new();
        for task in tasks {
            if let Some(chain) = chains
                .iter_mut()
                .find(|chain| chain.plan_id == task.plan_id)
            {
                chain.tasks.push(chain_task(task));
                continue;
            }
            if chains.len() == limit {
                break;
            }
            let Some(plan) = self.work.plans.get(&task.plan_id) else {
                continue;
            };
            let event = plan.cause.event_id.as_deref().and_then(|id| {
                self.event_log
                    .events
                    .iter()
                    .rev()
                    .find(|record| record.event.id() == id)
            });
            let rule_outcome = match (event, &plan.cause.rule) {
                (Some(record), Some(rule)) => outcome_of(record, rule),
                _ => None,
            };
            chains.push(Chain {
                plan_id: plan.plan_id.clone(),
                reason: plan.cause.reason.clone(),
                log_index: plan.created.index,
                created_ms: plan.created_ms,
                event: event.map(|record| ChainEvent {
                    id: record.event.id(),
                    source: record.event.source.clone(),
                    event_type: record.event.event_type.clone(),
                    subject: record.event.subject.clone(),
                    time_ms: record.event.time_unix_ms,
                    data: record.event.data.clone(),
                }),
                rule: plan.cause.rule.clone(),
                rule_outcome,
                tasks: vec![chain_task(task)],
            });
        }
        chains
    }
}

fn outcome_of(record: &EventRecord, rule: &str) -> Option<String> {
    let prefix = format!("{rule}: ");
    record
        .outcomes
        .iter()
        .find_map(|outcome| outcome.strip_prefix(&prefix).map(str::to_owned))
}

fn chain_task(task: &TaskRecord) -> ChainTask {
    let result = if !task.error.is_empty() {
        task.error.clone()
    } else {
        task.outcomes
            .iter()
            .filter(|outcome| outcome.changed)
            .map(|outcome| format!("{} {}", outcome.resource, outcome.detail))
            .collect::<Vec<_>>()
            .join("; ")
    };
    ChainTask {
        task_id: task.task_id.to_string(),
        agent_id: task.agent_id.to_string(),
        action: task.action.as_str().to_owned(),
        state: task.state.as_str().to_owned(),
        result,
    }
}
