//! The records the replicated state keeps: agents, events, plans, tasks.

use std::collections::BTreeMap;

use levee_common::event::Event;
use levee_common::ids::{AgentId, PlanId, TaskId};
use levee_common::resource::Resource;
use serde::{Deserialize, Serialize};

/// Where a command sits in the Raft log. Everything derived from a command
/// (ids, times, terms) comes from here or from the command itself, never
/// from the applying node's clock, so every node derives the same state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    pub index: u64,
    pub term: u64,
}

/// An agent the cluster has seen, as it last introduced itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: AgentId,
    pub boot_epoch: u64,
    pub labels: BTreeMap<String, String>,
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    pub first_seen_ms: i64,
    pub last_hello_ms: i64,
    pub events_committed: u64,
}

/// A committed event with what it caused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event: Event,
    pub log_index: u64,
    pub rules: Vec<String>,
    pub plan_ids: Vec<PlanId>,
}

/// Why a plan was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub reason: String,
    pub event_id: Option<String>,
    pub rule: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub plan_id: PlanId,
    pub cause: Cause,
    pub task_ids: Vec<TaskId>,
    pub created: LogPosition,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Committed, not yet reported done by its agent.
    Pending,
    Succeeded,
    Failed,
    /// The agent refused it without applying it.
    Refused,
    /// A newer task for the same service on the same agent replaced it
    /// before it was reported; agents converge to the newest one.
    Superseded,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Refused => "refused",
            TaskState::Superseded => "superseded",
        }
    }

    pub fn is_finished(self) -> bool {
        self != TaskState::Pending
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: TaskId,
    pub plan_id: PlanId,
    pub agent_id: AgentId,
    pub service: String,
    pub resources: Vec<Resource>,
    pub state: TaskState,
    pub created: LogPosition,
    pub created_ms: i64,
    pub cause: Cause,
    pub outcomes: Vec<ResourceOutcome>,
    pub error: String,
    pub finished_ms: i64,
}

/// What an agent reported for one resource of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceOutcome {
    pub resource: String,
    pub changed: bool,
    pub detail: String,
}

/// An agent's report on a task, as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub task_id: TaskId,
    pub state: TaskState,
    pub outcomes: Vec<ResourceOutcome>,
    pub error: String,
    pub finished_ms: i64,
}
