//! Agents saying hello, and the labels the cluster gives them.
//!
//! An agent's labels decide what it runs and which rules act for it, so
//! they belong to the cluster: an operator sets them (`levee agents
//! label`), before or after the agent first connects. What an agent says
//! about itself in its hello is kept apart as its facts.

use std::collections::{BTreeMap, BTreeSet};

use levee_common::event::types::{AGENT_LABELLED, HOST_RECOVERED};
use levee_common::ids::{AgentId, TaskId};

use super::ClusterState;
use super::command::Response;
use super::records::Cause;
use crate::engine::fleet::AgentRecord;
use crate::engine::planner::Trigger;
use crate::state::Entry;
use crate::state::command as cmd;

/// Most labels one agent may carry.
pub const MAX_LABELS: usize = 64;
/// Longest label key (a DNS label and then some).
pub const MAX_LABEL_KEY_BYTES: usize = 63;
/// Longest label value.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;

/// Why a label may not be set, if it may not.
pub fn label_problem(key: &str, value: &str) -> Option<String> {
    let key_ok = !key.is_empty()
        && key.len() <= MAX_LABEL_KEY_BYTES
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !key_ok {
        return Some(format!(
            "label key `{}` must be 1-{MAX_LABEL_KEY_BYTES} letters, digits, `-`, `_`, `.` or `/`",
            key.escape_debug()
        ));
    }
    if value.len() > MAX_LABEL_VALUE_BYTES || value.chars().any(char::is_control) {
        return Some(format!(
            "label `{key}`: the value must be at most {MAX_LABEL_VALUE_BYTES} bytes without control characters"
        ));
    }
    None
}

impl ClusterState {
    /// An agent opened a session: a new boot epoch or a reconnect.
    pub(super) fn agent_hello(&mut self, entry: &mut Entry, hello: cmd::AgentHello) -> Response {
        let cmd::AgentHello {
            agent_id,
            boot_epoch,
            labels: legacy_labels,
            facts,
            cpu_millis,
            memory_bytes,
            highest_term_seen,
            at_ms: _,
        } = hello;
        let is_new = !self.fleet.agents.contains_key(&agent_id);
        // An agent that remembers no task runs nothing, whatever the
        // cluster last heard: its store was lost. Forget what it ran so
        // the planner creates it all again.
        let forgot = highest_term_seen == 0 && self.work.deployments.remove(&agent_id).is_some();
        if forgot {
            // Its unfinished tasks are for a state it no longer has.
            let stale: Vec<TaskId> = self
                .work
                .tasks
                .values()
                .filter(|task| task.agent_id == agent_id && !task.state.is_finished())
                .map(|task| task.task_id.clone())
                .collect();
            for task_id in stale {
                self.supersede(entry, &task_id);
            }
        }
        // Hellos logged by the previous release carried labels the agent
        // chose; replaying them must decide as that release did.
        let labels = if legacy_labels.is_empty() {
            self.adopt_labels_from_before(&agent_id);
            self.fleet
                .assigned_labels
                .get(&agent_id)
                .cloned()
                .unwrap_or_default()
        } else {
            legacy_labels
        };
        let record = self
            .fleet
            .agents
            .entry(agent_id.clone())
            .or_insert_with(|| AgentRecord {
                agent_id: agent_id.clone(),
                boot_epoch,
                labels: BTreeMap::new(),
                facts: BTreeMap::new(),
                cpu_millis: 0,
                memory_bytes: 0,
                first_seen_ms: entry.at_ms,
                last_hello_ms: entry.at_ms,
                events_committed: 0,
                lost: false,
                avoid: Default::default(),
            });
        let recovered = std::mem::take(&mut record.lost);
        // A new agent, or one whose labels, facts or capacity changed, may
        // take or lose replicas.
        let changed = is_new
            || recovered
            || forgot
            || record.labels != labels
            || record.facts != facts
            || record.cpu_millis != cpu_millis
            || record.memory_bytes != memory_bytes;
        record.boot_epoch = boot_epoch;
        record.labels = labels;
        record.facts = facts;
        record.cpu_millis = cpu_millis;
        record.memory_bytes = memory_bytes;
        record.last_hello_ms = entry.at_ms;
        if recovered {
            let data = serde_json::json!({ "agent": agent_id.as_str() });
            self.raise_host_event(entry, HOST_RECOVERED, &agent_id, data);
        }
        let reconcile_plans = if changed {
            let cause = Cause {
                reason: format!("agent {agent_id} joined"),
                event_id: None,
                rule: None,
                depth: 0,
            };
            self.plan(entry, cause, &Trigger::Reconcile)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        Response::AgentRegistered(cmd::AgentRegistered { reconcile_plans })
    }

    /// An agent the previous release labelled from its own hello keeps
    /// those labels, now as the cluster's, at its first hello after the
    /// upgrade: otherwise upgrading would empty every agent's labels and
    /// move every selected service off the fleet. Once only: from then on
    /// its labels are in `assigned_labels` (or were removed by an
    /// operator, which empties the record's too).
    fn adopt_labels_from_before(&mut self, agent_id: &AgentId) {
        if self.fleet.assigned_labels.contains_key(agent_id) {
            return;
        }
        if let Some(record) = self.fleet.agents.get(agent_id)
            && !record.labels.is_empty()
        {
            self.fleet
                .assigned_labels
                .insert(agent_id.clone(), record.labels.clone());
        }
    }

    /// An operator sets or removes labels of an agent, known yet or not.
    /// The change is raised as `levee.agent.labelled` (who, what) and
    /// re-plans like any other change.
    pub(super) fn label_agent(
        &mut self,
        entry: &mut Entry,
        agent_id: &AgentId,
        set: BTreeMap<String, String>,
        remove: BTreeSet<String>,
        by: &str,
    ) -> Response {
        let problem = set
            .iter()
            .find_map(|(key, value)| label_problem(key, value))
            .or_else(|| remove.iter().find_map(|key| label_problem(key, "")));
        if let Some(reason) = problem {
            return Response::Rejected(cmd::Rejected { reason });
        }
        let mut labels = self
            .fleet
            .assigned_labels
            .get(agent_id)
            .cloned()
            .unwrap_or_default();
        let before = labels.clone();
        labels.retain(|key, _| !remove.contains(key));
        labels.extend(set);
        if labels.len() > MAX_LABELS {
            return Response::Rejected(cmd::Rejected {
                reason: format!(
                    "agent {agent_id} would have {} labels, more than {MAX_LABELS}",
                    labels.len()
                ),
            });
        }
        if labels == before {
            return Response::AgentLabelled(cmd::AgentLabelled { labels });
        }
        if labels.is_empty() {
            self.fleet.assigned_labels.remove(agent_id);
        } else {
            self.fleet
                .assigned_labels
                .insert(agent_id.clone(), labels.clone());
        }
        let data = serde_json::json!({
            "agent": agent_id.as_str(),
            "labels": labels,
            "previous": before,
            "by": by,
        });
        let known = match self.fleet.agents.get_mut(agent_id) {
            Some(record) => {
                record.labels = labels.clone();
                true
            }
            None => false,
        };
        // Raised once the record has its labels, so a rule reacting to it
        // sees them.
        self.raise_host_event(entry, AGENT_LABELLED, agent_id, data);
        if known {
            let cause = Cause {
                reason: format!("{by} labelled agent {agent_id}"),
                event_id: None,
                rule: None,
                depth: 0,
            };
            self.plan(entry, cause, &Trigger::Reconcile);
        }
        Response::AgentLabelled(cmd::AgentLabelled { labels })
    }
}
