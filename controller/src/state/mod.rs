//! The replicated state and its transitions: a pure function of the
//! committed log. Every controller applies the same commands in the same
//! order and so holds the same `ClusterState`.
//!
//! Planning happens here, inside apply: a committed event or spec change is
//! turned into plans and tasks by the deterministic planner, using only the
//! command and its log position. So every node derives the same plans, and
//! a new leader finds every task its predecessor created.

pub mod command;
pub mod records;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use levee_common::event::Event;
use levee_common::ids::{AgentId, PlanId, TaskId};
use levee_common::spec::{RuleAction, SpecSet};
use serde::{Deserialize, Serialize};

use self::command::{Command, Response};
use self::records::{
    AgentRecord, Cause, EventRecord, LogPosition, PlanRecord, TaskRecord, TaskReport, TaskState,
};
use crate::engine::planner::{self, Draft, PlanInput, Trigger};
use crate::engine::rules;

/// How many recent events the state keeps for `levee events`. Dedup does
/// not depend on this: it keeps a per-(agent, epoch) cursor forever.
pub const EVENT_HISTORY: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub agents: BTreeMap<AgentId, AgentRecord>,
    /// Highest committed event sequence, per agent and boot epoch.
    pub event_cursors: BTreeMap<AgentId, BTreeMap<u64, u64>>,
    pub events: VecDeque<EventRecord>,
    pub events_committed: u64,
    pub specs: SpecSet,
    pub spec_version: u64,
    pub placements: BTreeMap<String, BTreeSet<AgentId>>,
    pub plans: BTreeMap<PlanId, PlanRecord>,
    pub tasks: BTreeMap<TaskId, TaskRecord>,
    /// Controller node ids removed from the cluster, never to be reused.
    #[serde(default)]
    pub removed_nodes: BTreeSet<u64>,
}

impl ClusterState {
    /// Applies one committed command. Must stay deterministic: no clock,
    /// no randomness, no iteration over unordered collections.
    pub fn apply(&mut self, at: LogPosition, command: Command) -> Response {
        match command {
            Command::AgentHello {
                agent_id,
                boot_epoch,
                labels,
                cpu_millis,
                memory_bytes,
                at_ms,
            } => {
                let is_new = !self.agents.contains_key(&agent_id);
                let record = self
                    .agents
                    .entry(agent_id.clone())
                    .or_insert_with(|| AgentRecord {
                        agent_id: agent_id.clone(),
                        boot_epoch,
                        labels: BTreeMap::new(),
                        cpu_millis,
                        memory_bytes,
                        first_seen_ms: at_ms,
                        last_hello_ms: at_ms,
                        events_committed: 0,
                    });
                let labels_changed = record.labels != labels;
                record.boot_epoch = boot_epoch;
                record.labels = labels;
                record.cpu_millis = cpu_millis;
                record.memory_bytes = memory_bytes;
                record.last_hello_ms = at_ms;
                let reconcile_plans = if is_new || labels_changed {
                    let cause = Cause {
                        reason: format!("agent {agent_id} joined"),
                        event_id: None,
                        rule: None,
                    };
                    self.plan(
                        at,
                        at_ms,
                        0,
                        cause,
                        &Trigger::Reconcile {
                            changed_services: BTreeSet::new(),
                        },
                    )
                    .into_iter()
                    .collect()
                } else {
                    Vec::new()
                };
                Response::AgentRegistered { reconcile_plans }
            }
            Command::RecordEvents {
                agent_id,
                events,
                at_ms,
            } => self.record_events(at, &agent_id, events, at_ms),
            Command::PutSpecs {
                specs,
                reason,
                applied_by,
                at_ms,
            } => {
                let changed_services: BTreeSet<String> = specs
                    .services
                    .iter()
                    .filter(|(name, spec)| self.specs.services.get(*name) != Some(spec))
                    .map(|(name, _)| name.clone())
                    .collect();
                self.specs = specs;
                self.spec_version += 1;
                let cause = Cause {
                    reason: format!(
                        "spec version {} applied by {applied_by}: {reason}",
                        self.spec_version
                    ),
                    event_id: None,
                    rule: None,
                };
                let plan_ids = self
                    .plan(
                        at,
                        at_ms,
                        0,
                        cause,
                        &Trigger::Reconcile { changed_services },
                    )
                    .into_iter()
                    .collect();
                Response::SpecsApplied {
                    version: self.spec_version,
                    plan_ids,
                }
            }
            Command::RecordTaskReport { agent_id, report } => {
                self.record_task_report(&agent_id, report)
            }
            Command::NodeRemoved { node_id, .. } => {
                self.removed_nodes.insert(node_id);
                Response::Nothing
            }
        }
    }

    fn record_events(
        &mut self,
        at: LogPosition,
        agent_id: &AgentId,
        events: Vec<Event>,
        at_ms: i64,
    ) -> Response {
        let mut accepted = 0;
        let mut duplicates = 0;
        let mut acks: BTreeMap<u64, u64> = BTreeMap::new();
        // Plan ordinals must be unique within this log entry; 0 is left for
        // the reconcile plans of other commands.
        let mut next_plan_ordinal = 1;
        for event in events {
            let epoch = event.key.boot_epoch;
            let cursor = self
                .event_cursors
                .entry(agent_id.clone())
                .or_default()
                .entry(epoch)
                .or_insert(0);
            if event.key.seq <= *cursor {
                duplicates += 1;
            } else {
                *cursor = event.key.seq;
                accepted += 1;
                self.commit_event(at, &mut next_plan_ordinal, event, at_ms);
            }
            acks.insert(epoch, self.event_cursors[agent_id][&epoch]);
        }
        if let Some(record) = self.agents.get_mut(agent_id) {
            record.events_committed += u64::from(accepted);
        }
        self.events_committed += u64::from(accepted);
        Response::EventsRecorded {
            accepted,
            duplicates,
            acks: acks.into_iter().collect(),
        }
    }

    fn commit_event(
        &mut self,
        at: LogPosition,
        next_plan_ordinal: &mut usize,
        event: Event,
        at_ms: i64,
    ) {
        let matched: Vec<(String, RuleAction)> = rules::matching_rules(&self.specs, &event)
            .into_iter()
            .map(|rule| (rule.name.clone(), rule.action.clone()))
            .collect();
        let mut plan_ids = Vec::new();
        for (rule, action) in &matched {
            let RuleAction::Repair { service } = action;
            let trigger = Trigger::Repair {
                service: service.clone(),
                agent: event.key.agent_id.clone(),
            };
            let cause = Cause {
                reason: format!("rule {rule}"),
                event_id: Some(event.id()),
                rule: Some(rule.clone()),
            };
            let plan_id = self.plan(at, at_ms, *next_plan_ordinal, cause, &trigger);
            if plan_id.is_some() {
                *next_plan_ordinal += 1;
            }
            plan_ids.extend(plan_id);
        }
        self.events.push_back(EventRecord {
            event,
            log_index: at.index,
            rules: matched.into_iter().map(|(rule, _)| rule).collect(),
            plan_ids,
        });
        while self.events.len() > EVENT_HISTORY {
            self.events.pop_front();
        }
    }

    /// Runs the planner and records its plan and tasks. Returns the plan id,
    /// or `None` when there is nothing to do.
    fn plan(
        &mut self,
        at: LogPosition,
        at_ms: i64,
        ordinal: usize,
        cause: Cause,
        trigger: &Trigger,
    ) -> Option<PlanId> {
        let Draft { placements, steps } = planner::plan(
            &PlanInput {
                specs: &self.specs,
                agents: &self.agents,
                placements: &self.placements,
            },
            trigger,
        );
        self.placements = placements;
        if steps.is_empty() {
            return None;
        }
        let plan_id = PlanId::at(at.index, ordinal);
        let mut task_ids = Vec::with_capacity(steps.len());
        for (step_index, step) in steps.into_iter().enumerate() {
            let task_id = TaskId::of_plan(&plan_id, step_index);
            self.supersede_pending(&step.agent, &step.service);
            self.tasks.insert(
                task_id.clone(),
                TaskRecord {
                    task_id: task_id.clone(),
                    plan_id: plan_id.clone(),
                    agent_id: step.agent,
                    service: step.service,
                    resources: step.resources,
                    state: TaskState::Pending,
                    created: at,
                    created_ms: at_ms,
                    cause: cause.clone(),
                    outcomes: Vec::new(),
                    error: String::new(),
                    finished_ms: 0,
                },
            );
            task_ids.push(task_id);
        }
        self.plans.insert(
            plan_id.clone(),
            PlanRecord {
                plan_id: plan_id.clone(),
                cause,
                task_ids,
                created: at,
                created_ms: at_ms,
            },
        );
        Some(plan_id)
    }

    fn supersede_pending(&mut self, agent: &AgentId, service: &str) {
        for task in self.tasks.values_mut() {
            if task.state == TaskState::Pending
                && &task.agent_id == agent
                && task.service == service
            {
                task.state = TaskState::Superseded;
            }
        }
    }

    fn record_task_report(&mut self, agent_id: &AgentId, report: TaskReport) -> Response {
        let Some(task) = self.tasks.get_mut(&report.task_id) else {
            return Response::TaskReportRecorded { known: false };
        };
        // Only the task's own agent may report on it, and the first
        // report wins: a redelivered report changes nothing.
        if &task.agent_id != agent_id
            || (task.state.is_finished() && task.state != TaskState::Superseded)
        {
            return Response::TaskReportRecorded { known: true };
        }
        task.state = report.state;
        task.outcomes = report.outcomes;
        task.error = report.error;
        task.finished_ms = report.finished_ms;
        Response::TaskReportRecorded { known: true }
    }

    /// Pending tasks for one agent, oldest first: what the dispatcher sends.
    pub fn pending_tasks_for<'a>(
        &'a self,
        agent_id: &'a AgentId,
    ) -> impl Iterator<Item = &'a TaskRecord> + 'a {
        let mut pending: Vec<&TaskRecord> = self
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
