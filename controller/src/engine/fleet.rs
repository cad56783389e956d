//! What the engine reads of the fleet: agents as the cluster knows them,
//! and what each runs. The replicated state keeps these records; the
//! engine owns their shape, so rule matching and planning depend on
//! nothing above them.

use std::collections::{BTreeMap, BTreeSet};

use levee_common::ids::{AgentId, TaskId};
use serde::{Deserialize, Serialize};

/// An agent the cluster has seen, as it last introduced itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: AgentId,
    pub boot_epoch: u64,
    /// Labels the cluster gave the agent (`levee agents label`): what
    /// selectors, spreads and rules match. Never taken from the agent.
    pub labels: BTreeMap<String, String>,
    /// What the agent says about itself (the `labels` of its config):
    /// shown, and matched only by a service's `placement.facts`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    pub first_seen_ms: i64,
    pub last_hello_ms: i64,
    pub events_committed: u64,
    /// Declared lost by the leader (no session for too long); it takes no
    /// new replicas until it says hello again.
    #[serde(default)]
    pub lost: bool,
    /// Services this agent must not run (`*`: none at all, it is drained),
    /// set by `drain`/`reschedule` and cleared by `levee undrain`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub avoid: BTreeSet<String>,
}

/// The `avoid` entry that drains an agent of everything.
pub const DRAINED: &str = "*";

impl AgentRecord {
    /// Whether `service` may be placed on this agent.
    pub fn takes(&self, service: &str) -> bool {
        !self.lost && !self.avoid.contains(DRAINED) && !self.avoid.contains(service)
    }
}

/// One service on one agent, as far as the cluster knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Digest of the resources the agent last reported converged.
    pub applied: Option<String>,
    pub applied_task: Option<TaskId>,
    /// The newest unfinished task for it: the digest it converges to
    /// (empty for a removal).
    pub in_flight: Option<(String, TaskId)>,
}

/// Marks a deployment whose last task failed: it matches no digest, so
/// the next reconcile converges it again.
pub const FAILED_DIGEST: &str = "failed";

impl Deployment {
    /// The digest the planner compares against: where the agent is or is
    /// being taken. `None` when it runs nothing or is being emptied.
    pub fn current(&self) -> Option<&str> {
        match &self.in_flight {
            Some((digest, _)) if digest.is_empty() => None,
            Some((digest, _)) => Some(digest),
            None => self.applied.as_deref(),
        }
    }
}
