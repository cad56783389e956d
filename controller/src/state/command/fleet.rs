//! Agents joining, lost and drained, and controllers removed.

use std::collections::{BTreeMap, BTreeSet};

use levee_common::ids::AgentId;
use serde::{Deserialize, Serialize};

use super::Response;

/// An agent opened a session (a new boot epoch or a reconnect).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentHello {
    pub agent_id: AgentId,
    pub boot_epoch: u64,
    /// Labels the agent chose for itself, as entries of the previous
    /// release carry them (it trusted them). Empty in new entries: labels
    /// are the cluster's (`LabelAgent`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// What the agent says about itself (its config's `labels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    /// 0 when the agent has no memory of any task: a new host, or one
    /// whose store was lost.
    #[serde(default)]
    pub highest_term_seen: u64,
    pub at_ms: i64,
}

/// The leader has not heard from an agent for too long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentLost {
    pub agent_id: AgentId,
    pub silent_ms: u64,
    /// The agent's last hello as the leader saw it when deciding; a
    /// later hello (it came back meanwhile) voids the decision.
    #[serde(default)]
    pub last_hello_ms: i64,
    pub at_ms: i64,
}

/// Keep `service` (or, without one, everything) off an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    pub agent_id: AgentId,
    pub service: Option<String>,
    pub by: String,
    pub at_ms: i64,
}

/// Let a drained agent take work again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Undrain {
    pub agent_id: AgentId,
    pub by: String,
    pub at_ms: i64,
}

/// Set `set` and remove `remove` among an agent's labels; the agent need
/// not have connected yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelAgent {
    pub agent_id: AgentId,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: BTreeSet<String>,
    pub by: String,
    pub at_ms: i64,
}

/// A controller node is being removed; its id may never be reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRemoved {
    pub node_id: u64,
    /// Its certificate name, refused at every later join whatever the id
    /// (empty in entries of earlier releases and for unnamed members).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub at_ms: i64,
}

proposal!(AgentHello => super::AgentRegistered, Response::AgentRegistered);
proposal!(AgentLost => (), Response::Nothing);
proposal!(Drain => super::Drained, Response::Drained);
proposal!(Undrain => super::Drained, Response::Drained);
proposal!(NodeRemoved => (), Response::Nothing);
proposal!(LabelAgent => super::AgentLabelled, Response::AgentLabelled);
