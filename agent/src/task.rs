//! Tasks and their outcomes as the agent works with them: plain Rust types,
//! so the applier, the worker and the journal never handle generated
//! protobuf types or compare states as integers. [`crate::wire`] is the one
//! place they meet `levee.v1`.

use std::collections::BTreeMap;

use levee_common::resource::Resource;

/// One task from the leader: converge a service's resources, remove the
/// service, or run one command for a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub task_id: String,
    /// The dispatching leader's term; older than one seen means deposed.
    pub term: u64,
    pub plan_id: String,
    /// A service name, or `rule/<name>` for a run task.
    pub service: String,
    /// The resources as sent, or why one of them could not be read. Such a
    /// task is refused, not dropped, and only after the checks that come
    /// before reading resources, so its refusal says the same as before.
    pub resources: Result<Vec<Resource>, String>,
    /// Take the service off this host.
    pub remove: bool,
    /// Run one command, once, for a rule.
    pub run: Option<RunCommand>,
}

impl Default for Task {
    /// A task with no resources that neither removes nor runs, as an empty
    /// `pb::Task` reads.
    fn default() -> Self {
        Task {
            task_id: String::new(),
            term: 0,
            plan_id: String::new(),
            service: String::new(),
            resources: Ok(Vec::new()),
            remove: false,
            run: None,
        }
    }
}

impl Task {
    /// Whether the task lists any resource, readable or not.
    pub fn lists_resources(&self) -> bool {
        !matches!(&self.resources, Ok(resources) if resources.is_empty())
    }
}

/// A rule's `run` action: one argv, never through a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCommand {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// 0 means the agent's default.
    pub timeout_ms: u32,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Succeeded,
    /// Applying began and did not finish: something may have changed.
    Failed,
    /// Refused before anything was touched.
    Refused,
}

/// What the agent reports, and records, for a finished task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    pub task_id: String,
    pub term: u64,
    pub state: TaskState,
    /// One per resource converged (or removed), in order.
    pub outcomes: Vec<ResourceOutcome>,
    /// Empty when the task succeeded.
    pub error: String,
    pub finished_unix_ms: i64,
}

/// What converging one resource did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceOutcome {
    /// The resource's key, e.g. `file:/srv/clock/banner.txt`.
    pub resource: String,
    pub changed: bool,
    pub detail: String,
}
