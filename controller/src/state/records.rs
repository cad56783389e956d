//! The records the replicated state keeps: agents, events, plans, tasks.

use std::collections::{BTreeMap, VecDeque};

use levee_common::event::Event;
use levee_common::ids::{AgentId, PlanId, TaskId};
use levee_common::resource::Resource;
use levee_common::spec::SpecSet;
use serde::{Deserialize, Serialize};

pub use crate::engine::fleet::{AgentRecord, DRAINED, Deployment, FAILED_DIGEST};
use crate::engine::planner::Action;

pub use super::entry::{Entry, LogPosition};

/// A committed event with what it caused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event: Event,
    pub log_index: u64,
    pub rules: Vec<String>,
    pub plan_ids: Vec<PlanId>,
    /// What each matched rule did or why it held back, e.g.
    /// `scale-up: scaled web 2 -> 4` or `scale-up: held: cooldown, 12 s left`.
    #[serde(default)]
    pub outcomes: Vec<String>,
}

/// What the replicated state remembers of a rule's actions, for its
/// guardrails.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    pub last_action_ms: Option<i64>,
    /// Times of recent actions, within the rule's window.
    pub recent: VecDeque<i64>,
    pub actions: u64,
    pub held: u64,
    /// Samples of the rule's `window`, per window key (`*`, an agent, a
    /// label value): (time, value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub windows: BTreeMap<String, VecDeque<(i64, f64)>>,
    /// When a matching event last came (or the rule was added), for
    /// `signal.silent_after_ms`.
    #[serde(default)]
    pub last_signal_ms: Option<i64>,
    /// The signal went silent and has not come back.
    #[serde(default)]
    pub silent: bool,
    /// Hosts the rule's actions sent tasks to, with when: its blast radius.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub touched: VecDeque<(i64, AgentId)>,
}

/// A host a `Provisioner` was asked to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionRecord {
    pub id: String,
    pub provisioner: String,
    pub cause: Cause,
    pub requested_ms: i64,
    pub state: ProvisionState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionState {
    /// Waiting for the leader to run the provisioner.
    Pending,
    /// The leader of `term` started the command. A later leader finding it
    /// so never runs it again (that could make a second host): it is
    /// marked `Unknown` for an operator to check.
    Running {
        term: u64,
        started_ms: i64,
    },
    Succeeded {
        finished_ms: i64,
        output: String,
    },
    Failed {
        finished_ms: i64,
        error: String,
    },
    /// Its leader changed while the command ran: a host may or may not
    /// have been made. It keeps counting against `max_hosts`.
    Unknown {
        finished_ms: i64,
        reason: String,
    },
}

impl ProvisionState {
    /// Counts against the provisioner's `max_hosts`.
    pub fn holds_a_host(&self) -> bool {
        !matches!(self, ProvisionState::Failed { .. })
    }
}

/// A rule's action waiting for an operator (`guardrails.approval`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub id: String,
    pub rule: String,
    pub action: levee_common::spec::RuleAction,
    /// The agent whose event set it off (where a repair would run).
    pub agent: AgentId,
    pub cause: Cause,
    pub at_ms: i64,
    /// The event itself, for actions that pass it on (`webhook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
}

/// A rule's `webhook` call, delivered by the leader at least once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub id: String,
    pub rule: String,
    pub url: String,
    pub token_file: Option<String>,
    /// The JSON body, fixed when the rule acted.
    pub body: String,
    pub requested_ms: i64,
    pub state: NotificationState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    Pending,
    Delivered {
        status: u16,
        attempts: u32,
        at_ms: i64,
    },
    Failed {
        error: String,
        attempts: u32,
        at_ms: i64,
    },
}

/// When a service was last scaled each way, by anyone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingRecord {
    pub last_up_ms: Option<i64>,
    pub last_down_ms: Option<i64>,
}

/// Why a plan was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub reason: String,
    pub event_id: Option<String>,
    pub rule: Option<String>,
    /// How many rule reactions led here: 0 for an operator's change, 1 for
    /// a rule reacting to an outside event, n + 1 for a rule reacting to an
    /// event that a change of depth n caused.
    #[serde(default)]
    pub depth: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub plan_id: PlanId,
    pub cause: Cause,
    pub task_ids: Vec<TaskId>,
    pub created: LogPosition,
    pub created_ms: i64,
    /// The spec version in force when the plan was made.
    #[serde(default)]
    pub spec_version: u64,
    /// What the planner could not do (e.g. too few agents with capacity).
    #[serde(default)]
    pub problems: Vec<String>,
    /// The version an automatic rollback of this plan committed.
    #[serde(default)]
    pub rolled_back_by: Option<u64>,
}

/// One version of the desired state, as committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecVersion {
    pub version: u64,
    pub specs: SpecSet,
    pub applied_by: String,
    pub reason: String,
    pub at_ms: i64,
    pub origin: VersionOrigin,
    pub plan_ids: Vec<PlanId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionOrigin {
    /// `levee apply`.
    Apply,
    /// `levee rollback`: the specs of an earlier version, applied again.
    Rollback { to: u64 },
    /// A rollout failed and its service asked for automatic rollback.
    AutoRollback {
        service: String,
        failed_task: TaskId,
    },
}

impl VersionOrigin {
    pub fn describe(&self) -> String {
        match self {
            VersionOrigin::Apply => "apply".into(),
            VersionOrigin::Rollback { to } => format!("rollback to {to}"),
            VersionOrigin::AutoRollback {
                service,
                failed_task,
            } => {
                format!("automatic rollback of {service} ({failed_task} failed)")
            }
        }
    }
}

/// A resource an agent reported drifted from its desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftRecord {
    pub service: String,
    pub detail: String,
    pub since_ms: i64,
    pub event_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Committed, not yet reported done by its agent.
    Pending,
    /// In a later batch of a rollout: sent once the batch before it has
    /// applied and is healthy.
    Waiting,
    /// A batch before it failed, so it was never sent.
    Cancelled,
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
            TaskState::Waiting => "waiting",
            TaskState::Cancelled => "cancelled",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Refused => "refused",
            TaskState::Superseded => "superseded",
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, TaskState::Pending | TaskState::Waiting)
    }

    /// Finished without harm to a rollout: applied, or replaced by a newer
    /// task for the same service and agent.
    pub fn is_fine(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Superseded)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: TaskId,
    pub plan_id: PlanId,
    pub agent_id: AgentId,
    pub service: String,
    #[serde(default = "default_action")]
    pub action: Action,
    #[serde(default)]
    pub batch: u32,
    /// Digest of `resources`; empty for a removal.
    #[serde(default)]
    pub digest: String,
    pub resources: Vec<Resource>,
    pub state: TaskState,
    pub created: LogPosition,
    pub created_ms: i64,
    pub cause: Cause,
    pub outcomes: Vec<ResourceOutcome>,
    pub error: String,
    pub finished_ms: i64,
    /// For `Action::Run`: the command a rule runs once on the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunSpec>,
}

impl TaskRecord {
    /// A pending task of `plan_id` in batch 0, with no resources yet.
    pub fn new(
        task_id: TaskId,
        plan_id: &PlanId,
        agent_id: AgentId,
        service: String,
        action: Action,
        entry: &Entry,
        cause: Cause,
    ) -> Self {
        Self {
            task_id,
            plan_id: plan_id.clone(),
            agent_id,
            service,
            action,
            batch: 0,
            digest: String::new(),
            resources: Vec::new(),
            state: TaskState::Pending,
            created: entry.at,
            created_ms: entry.at_ms,
            cause,
            outcomes: Vec::new(),
            error: String::new(),
            finished_ms: 0,
            run: None,
        }
    }
}

/// A rule's one-off command, as sent to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout_ms: u32,
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

fn default_action() -> Action {
    Action::Update
}
