//! The replicated state's parts, each a group of fields that change
//! together. `ClusterState` is the thin front that holds one of each;
//! the fields keep their names, so a state's canonical form (and digest)
//! is the same however they are grouped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use levee_common::ids::{AgentId, PlanId, TaskId};
use levee_common::spec::SpecSet;
use serde::{Deserialize, Serialize};

use super::inbound;
use super::records::{
    self, AgentRecord, Deployment, DriftRecord, EventRecord, PendingApproval, PlanRecord,
    RuleState, ScalingRecord, SpecVersion, TaskRecord,
};

/// The agents the cluster knows and what they report about themselves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    pub agents: BTreeMap<AgentId, AgentRecord>,
    /// Resources agents reported drifted and not yet converged back, per
    /// agent and `service/resource key`.
    #[serde(default)]
    pub drift: BTreeMap<AgentId, BTreeMap<String, DriftRecord>>,
    /// Labels operators gave agents (`levee agents label`), kept for
    /// agents not yet connected too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub assigned_labels: BTreeMap<AgentId, BTreeMap<String, String>>,
}

/// Committed events: the recent ones, and what keeps every event committed once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventLog {
    /// Highest committed event sequence, per agent and boot epoch.
    pub event_cursors: BTreeMap<AgentId, BTreeMap<u64, u64>>,
    pub events: VecDeque<EventRecord>,
    pub events_committed: u64,
    /// Sequence of events the controllers raise themselves (`host.lost`...).
    #[serde(default)]
    pub controller_events: u64,
    /// Controller events dropped by `MAX_RAISED_PER_ENTRY`.
    #[serde(default)]
    pub raised_dropped: u64,
    /// Agents' events refused for their type (a reserved namespace the
    /// agent may not use): acknowledged, never committed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub events_refused: u64,
    /// Recent sender ids of inbound events, per source, so a retried
    /// webhook or a redelivered MQTT message is committed once.
    #[serde(default)]
    pub inbound_seen: BTreeMap<String, inbound::SeenIds>,
}

/// Desired state: the specs, their versions and replica targets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub specs: SpecSet,
    pub spec_version: u64,
    /// Recent spec versions, oldest first, the current one included.
    #[serde(default)]
    pub versions: BTreeMap<u64, SpecVersion>,
    /// Replica targets set by `levee scale`, per service.
    #[serde(default)]
    pub targets: BTreeMap<String, u32>,
}

/// Where services are placed and the plans and tasks that put them there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Work {
    pub placements: BTreeMap<String, BTreeSet<AgentId>>,
    /// What each agent runs or is being asked to run, per service.
    #[serde(default)]
    pub deployments: BTreeMap<AgentId, BTreeMap<String, Deployment>>,
    pub plans: BTreeMap<PlanId, PlanRecord>,
    pub tasks: BTreeMap<TaskId, TaskRecord>,
}

/// What rules and timers did, for their guardrails and approvals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleBook {
    /// What each rule did recently, for its guardrails.
    #[serde(default)]
    pub rule_state: BTreeMap<String, RuleState>,
    /// The last scheduled time each timer fired for.
    #[serde(default)]
    pub timers_fired: BTreeMap<String, i64>,
    /// Rule actions waiting for `levee approve`, by id.
    #[serde(default)]
    pub approvals: BTreeMap<String, PendingApproval>,
    /// How many approvals were ever asked for: the next id.
    #[serde(default)]
    pub approvals_asked: u64,
    /// When each service was last scaled up and down.
    #[serde(default)]
    pub scaling: BTreeMap<String, ScalingRecord>,
    /// Services last found short of replicas (no agent with room), and by
    /// how many, so `levee.service.unplaced` is raised once per change.
    #[serde(default)]
    pub shortfalls: BTreeMap<String, u32>,
}

/// Effects outside the fleet: hosts asked of provisioners and webhook calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Effects {
    /// Hosts asked of provisioners, by id.
    #[serde(default)]
    pub provisions: BTreeMap<String, records::ProvisionRecord>,
    /// How many provisions were ever asked for: the next id.
    #[serde(default)]
    pub provisions_asked: u64,
    /// Rules' webhook calls, pending and recent, by id.
    #[serde(default)]
    pub notifications: BTreeMap<String, records::NotificationRecord>,
    /// How many webhook calls were ever made: the next id.
    #[serde(default)]
    pub notifications_made: u64,
}

/// The controller cluster itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Members {
    /// Controller node ids removed from the cluster, never to be reused.
    #[serde(default)]
    pub removed_nodes: BTreeSet<u64>,
    /// Certificate names of removed controllers: a removed host may not
    /// come back under a new id either.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub removed_names: BTreeSet<String>,
}

/// Which part each field belongs to, for reading states that earlier
/// releases wrote with every field at the top level.
const PART_OF: &[(&str, &str)] = &[
    ("agents", "fleet"),
    ("drift", "fleet"),
    ("assigned_labels", "fleet"),
    ("event_cursors", "event_log"),
    ("events", "event_log"),
    ("events_committed", "event_log"),
    ("controller_events", "event_log"),
    ("raised_dropped", "event_log"),
    ("events_refused", "event_log"),
    ("inbound_seen", "event_log"),
    ("specs", "desired"),
    ("spec_version", "desired"),
    ("versions", "desired"),
    ("targets", "desired"),
    ("placements", "work"),
    ("deployments", "work"),
    ("plans", "work"),
    ("tasks", "work"),
    ("rule_state", "rule_book"),
    ("timers_fired", "rule_book"),
    ("approvals", "rule_book"),
    ("approvals_asked", "rule_book"),
    ("scaling", "rule_book"),
    ("shortfalls", "rule_book"),
    ("provisions", "effects"),
    ("provisions_asked", "effects"),
    ("notifications", "effects"),
    ("notifications_made", "effects"),
    ("removed_nodes", "members"),
    ("removed_names", "members"),
];

/// The parts as serialised: what `ClusterState` reads once regrouped.
#[derive(Deserialize)]
struct Parts {
    #[serde(default)]
    fleet: Fleet,
    #[serde(default)]
    event_log: EventLog,
    #[serde(default)]
    desired: Desired,
    #[serde(default)]
    work: Work,
    #[serde(default)]
    rule_book: RuleBook,
    #[serde(default)]
    effects: Effects,
    #[serde(default)]
    members: Members,
}

/// Moves top-level fields of the flat form into their parts; a state
/// already in parts is left as it is.
fn regroup(value: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Object(fields) = value else {
        return value;
    };
    let mut grouped = serde_json::Map::new();
    for (name, field) in fields {
        match PART_OF.iter().find(|(field_name, _)| *field_name == name) {
            Some((_, part)) => {
                let part = grouped
                    .entry(part.to_string())
                    .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
                if let serde_json::Value::Object(part) = part {
                    part.insert(name, field);
                }
            }
            None => {
                grouped.insert(name, field);
            }
        }
    }
    serde_json::Value::Object(grouped)
}

impl TryFrom<serde_json::Value> for super::ClusterState {
    type Error = serde_json::Error;

    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        let parts: Parts = serde_json::from_value(regroup(value))?;
        Ok(Self {
            fleet: parts.fleet,
            event_log: parts.event_log,
            desired: parts.desired,
            work: parts.work,
            rule_book: parts.rule_book,
            effects: parts.effects,
            members: parts.members,
        })
    }
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

#[cfg(test)]
mod tests {
    use super::super::ClusterState;
    use super::*;

    #[test]
    fn every_field_is_mapped_to_the_part_that_holds_it() {
        // Fields left out while empty are filled, so every one shows.
        let mut state = ClusterState::default();
        state
            .fleet
            .assigned_labels
            .insert("a1".into(), [("role".to_owned(), "web".to_owned())].into());
        state.event_log.events_refused = 1;
        state.members.removed_names.insert("node-3".into());
        let state = serde_json::to_value(state).unwrap();
        let mut held: Vec<(String, String)> = Vec::new();
        for (part, fields) in state.as_object().unwrap() {
            for field in fields.as_object().unwrap().keys() {
                held.push((field.clone(), part.clone()));
            }
        }
        held.sort();
        let mut mapped: Vec<(String, String)> = PART_OF
            .iter()
            .map(|(field, part)| (field.to_string(), part.to_string()))
            .collect();
        mapped.sort();
        assert_eq!(held, mapped);
    }

    #[test]
    fn a_state_written_flat_by_an_earlier_release_reads_the_same() {
        let mut state = ClusterState::default();
        state.desired.spec_version = 7;
        state.event_log.events_committed = 42;
        state.members.removed_nodes.insert(3);
        let nested = serde_json::to_value(&state).unwrap();
        let mut flat = serde_json::Map::new();
        for (_, fields) in nested.as_object().unwrap() {
            flat.extend(fields.as_object().unwrap().clone());
        }
        let read: ClusterState = serde_json::from_value(serde_json::Value::Object(flat)).unwrap();
        assert_eq!(read, state);
        let again: ClusterState = serde_json::from_value(nested).unwrap();
        assert_eq!(again, state);
    }
}
