//! The replicated state and its transitions: a pure function of the
//! committed log. Every controller applies the same commands in the same
//! order and so holds the same `ClusterState`.
//!
//! Planning happens here, inside apply: a committed event or spec change is
//! turned into plans and tasks by the deterministic planner, using only the
//! command and its log position. So every node derives the same plans, and
//! a new leader finds every task its predecessor created.

pub mod agents;
pub mod command;
mod digest;
mod entry;
pub mod hosts;
pub mod inbound;
mod inbound_event;
mod notifications;
mod parts;
mod planning;
mod provisions;
pub mod reactions;
pub mod records;
mod retention;
mod rollout;
#[cfg(test)]
pub(crate) mod test_log;
pub mod whatif;
pub mod why;

use std::collections::{BTreeMap, BTreeSet};

use levee_common::event::Event;
use levee_common::event::types::{DRIFT_DETECTED, DRIFT_RESOLVED};
use levee_common::ids::AgentId;
use levee_common::namespace::{self, Raiser};
use serde::{Deserialize, Serialize};

use self::command::{Command, Response};
pub use self::entry::Entry;
pub use self::parts::{Desired, Effects, EventLog, Fleet, Members, RuleBook, Work};
use self::records::{DriftRecord, EventRecord, LogPosition, TaskRecord, TaskState, VersionOrigin};
use crate::state::command as cmd;

/// How many recent events the state keeps for `levee events`. Dedup does
/// not depend on this: it keeps a per-(agent, epoch) cursor forever.
pub const EVENT_HISTORY: usize = 10_000;
/// How many spec versions `levee history` and `levee rollback` can reach.
pub const SPEC_HISTORY: usize = 100;

/// The replicated state: a thin front over its parts. It reads the flat
/// form earlier releases wrote too (see `parts::regroup`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct ClusterState {
    pub fleet: Fleet,
    pub event_log: EventLog,
    pub desired: Desired,
    pub work: Work,
    pub rule_book: RuleBook,
    pub effects: Effects,
    pub members: Members,
}

impl ClusterState {
    /// Applies one committed command. Must stay deterministic: no clock,
    /// no randomness, no iteration over unordered collections.
    pub fn apply(&mut self, at: LogPosition, command: Command) -> Response {
        let mut entry = Entry::new(at, command.at_ms());
        self.apply_entry(&mut entry, command)
    }

    /// Applies one committed command as `entry`, which keeps what applying
    /// it produced beside the state (the tasks it made pending).
    pub fn apply_entry(&mut self, entry: &mut Entry, command: Command) -> Response {
        let response = self.apply_command(entry, command);
        self.prune_history();
        response
    }

    fn apply_command(&mut self, entry: &mut Entry, command: Command) -> Response {
        match command {
            Command::AgentHello(hello) => self.agent_hello(entry, hello),
            Command::LabelAgent(cmd::LabelAgent {
                agent_id,
                set,
                remove,
                by,
                at_ms: _,
            }) => self.label_agent(entry, &agent_id, set, remove, &by),
            Command::RecordEvents(cmd::RecordEvents {
                agent_id,
                events,
                at_ms: _,
                strict,
            }) => {
                entry.unchecked_sender = !strict;
                let response = self.record_events(entry, &agent_id, events);
                entry.unchecked_sender = false;
                response
            }
            Command::RecordInbound(cmd::RecordInbound {
                source,
                events,
                at_ms: _,
                names_hosts,
            }) => {
                entry.outside_names_hosts = names_hosts;
                let response = self.record_inbound(entry, &source, events);
                entry.outside_names_hosts = false;
                response
            }
            Command::PutSpecs(cmd::PutSpecs {
                specs,
                reason,
                applied_by,
                at_ms: _,
            }) => self.put_specs(entry, specs, reason, applied_by, VersionOrigin::Apply),
            Command::Rollback(cmd::Rollback {
                version,
                reason,
                requested_by,
                at_ms: _,
            }) => match self.desired.versions.get(&version) {
                Some(old) => {
                    let specs = old.specs.clone();
                    let reason = if reason.is_empty() {
                        format!("rollback to version {version}")
                    } else {
                        reason
                    };
                    self.put_specs(
                        entry,
                        specs,
                        reason,
                        requested_by,
                        VersionOrigin::Rollback { to: version },
                    )
                }
                None => Response::Rejected(cmd::Rejected {
                    reason: format!(
                        "version {version} is not in the history (it keeps versions {})",
                        self.version_range()
                    ),
                }),
            },
            Command::Scale(cmd::Scale {
                service,
                replicas,
                reason,
                requested_by,
                at_ms: _,
            }) => self.scale(entry, &service, replicas, reason, requested_by),
            Command::RecordTaskReport(cmd::RecordTaskReport { agent_id, report }) => {
                self.record_task_report(entry, &agent_id, report)
            }
            Command::AgentLost(cmd::AgentLost {
                agent_id,
                silent_ms,
                last_hello_ms,
                at_ms: _,
            }) => self.agent_lost(entry, &agent_id, silent_ms, last_hello_ms),
            Command::TimerFired(cmd::TimerFired {
                timer,
                scheduled_ms,
                at_ms: _,
            }) => self.timer_fired(entry, &timer, scheduled_ms),
            Command::Answer(cmd::Answer {
                id,
                approve,
                by,
                at_ms: _,
            }) => self.answer_approval(entry, &id, approve, &by),
            Command::SignalSilent(cmd::SignalSilent {
                rule,
                last_signal_ms,
                at_ms: _,
            }) => self.signal_silent(entry, &rule, last_signal_ms),
            Command::ProvisionStarted(cmd::ProvisionStarted { id, term, .. }) => {
                self.provision_started(&id, term, entry)
            }
            Command::ProvisionFinished(cmd::ProvisionFinished { id, result, .. }) => {
                self.provision_finished(&id, result, entry)
            }
            Command::ProvisionResolved(cmd::ProvisionResolved {
                id,
                host_made,
                by,
                at_ms: _,
            }) => self.provision_resolved(&id, host_made, &by, entry),
            Command::ProvisionAbandoned(cmd::ProvisionAbandoned { id, term, .. }) => {
                self.provision_abandoned(&id, term, entry)
            }
            Command::NotificationDone(cmd::NotificationDone {
                id,
                result,
                attempts,
                at_ms: _,
            }) => self.notification_done(&id, result, attempts, entry),
            Command::Drain(cmd::Drain {
                agent_id,
                service,
                by,
                at_ms: _,
            }) => self.drain(entry, &agent_id, service.as_deref(), &by),
            Command::Undrain(cmd::Undrain {
                agent_id,
                by,
                at_ms: _,
            }) => self.undrain(entry, &agent_id, &by),
            Command::NodeRemoved(cmd::NodeRemoved { node_id, name, .. }) => {
                self.members.removed_nodes.insert(node_id);
                if !name.is_empty() {
                    self.members.removed_names.insert(name);
                }
                Response::Nothing
            }
        }
    }

    pub(super) fn version_range(&self) -> String {
        match (
            self.desired.versions.keys().next(),
            self.desired.versions.keys().last(),
        ) {
            (Some(first), Some(last)) => format!("{first} to {last}"),
            _ => "none yet".into(),
        }
    }

    fn record_events(
        &mut self,
        entry: &mut Entry,
        agent_id: &AgentId,
        events: Vec<Event>,
    ) -> Response {
        let mut accepted = 0;
        let mut duplicates = 0;
        let mut refused = 0;
        let mut refusal = None;
        let mut acks: BTreeMap<u64, u64> = BTreeMap::new();
        for mut event in events {
            // Who sent it is the session's certificate, whatever the
            // command says.
            event.key.agent_id = agent_id.clone();
            event.source = format!("agent/{agent_id}");
            let epoch = event.key.boot_epoch;
            let cursor = self
                .event_log
                .event_cursors
                .entry(agent_id.clone())
                .or_default()
                .entry(epoch)
                .or_insert(0);
            if event.key.seq <= *cursor {
                duplicates += 1;
            } else if let Err(reserved) = namespace::check(Raiser::Agent, &event.event_type)
                && !entry.unchecked_sender
            {
                *cursor = event.key.seq;
                refused += 1;
                refusal.get_or_insert_with(|| format!("event {}: {reserved}", event.id()));
            } else {
                *cursor = event.key.seq;
                accepted += 1;
                self.commit_event(entry, event);
            }
            acks.insert(epoch, self.event_log.event_cursors[agent_id][&epoch]);
        }
        if let Some(record) = self.fleet.agents.get_mut(agent_id) {
            record.events_committed += u64::from(accepted);
        }
        self.event_log.events_committed += u64::from(accepted);
        self.event_log.events_refused += u64::from(refused);
        Response::EventsRecorded(cmd::EventsRecorded {
            accepted,
            duplicates,
            acks: acks.into_iter().collect(),
            refused,
            refusal,
        })
    }

    /// Records a committed event and lets the rules react to it.
    pub(super) fn commit_event(&mut self, entry: &mut Entry, event: Event) {
        self.track_drift(&event, entry);
        // Recorded before the rules react, so an event a reaction raises
        // (a shortfall) comes after the event that caused it.
        let key = event.key.clone();
        self.event_log.events.push_back(EventRecord {
            event: event.clone(),
            log_index: entry.at.index,
            rules: Vec::new(),
            plan_ids: Vec::new(),
            outcomes: Vec::new(),
        });
        while self.event_log.events.len() > EVENT_HISTORY {
            self.event_log.events.pop_front();
        }
        let reaction = self.react(entry, &event);
        if let Some(record) = self
            .event_log
            .events
            .iter_mut()
            .rev()
            .find(|record| record.event.key == key)
        {
            record.rules = reaction.rules;
            record.plan_ids = reaction.plan_ids;
            record.outcomes = reaction.outcomes;
        }
    }

    /// Keeps `drift` in step with the agents' drift events, for
    /// `levee status`.
    fn track_drift(&mut self, event: &Event, entry: &mut Entry) {
        let agent = &event.key.agent_id;
        let field = |name: &str| {
            event
                .data
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        // Resource keys are relative to their service, so the record is
        // keyed by both.
        if event.event_type == DRIFT_DETECTED {
            self.fleet.drift.entry(agent.clone()).or_default().insert(
                format!("{}/{}", field("service"), field("resource")),
                DriftRecord {
                    service: field("service"),
                    detail: field("detail"),
                    since_ms: entry.at_ms,
                    event_id: event.id(),
                },
            );
        } else if event.event_type == DRIFT_RESOLVED {
            let service = field("service");
            let resources: BTreeSet<String> = event
                .data
                .get("resources")
                .and_then(|v| v.as_array())
                .map(|keys| {
                    keys.iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(records) = self.fleet.drift.get_mut(agent) {
                records.retain(|key, record| {
                    let resource = key.strip_prefix(&format!("{service}/")).unwrap_or_default();
                    record.service != service
                        || !(resources.is_empty() || resources.contains(resource))
                });
                if records.is_empty() {
                    self.fleet.drift.remove(agent);
                }
            }
        }
    }

    /// Pending tasks for one agent, oldest first: what the dispatcher sends.
    pub fn pending_tasks_for<'a>(
        &'a self,
        agent_id: &'a AgentId,
    ) -> impl Iterator<Item = &'a TaskRecord> + 'a {
        let mut pending: Vec<&TaskRecord> = self
            .work
            .tasks
            .values()
            .filter(|task| task.state == TaskState::Pending && &task.agent_id == agent_id)
            .collect();
        pending.sort_by_key(|task| (task.created.index, task.task_id.clone()));
        pending.into_iter()
    }
}

#[cfg(test)]
mod tests;
