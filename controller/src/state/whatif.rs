//! `levee rules test`: recorded events run through the rules and the
//! planner against a copy of the state, to see what would have changed.
//! The copy is thrown away; nothing is proposed, so nothing changes.

use std::collections::BTreeMap;

use levee_common::event::Event;
use levee_common::ids::{AgentId, EventKey};
use levee_common::spec::SpecSet;
use serde::Serialize;

use super::ClusterState;
use super::command::Command;
use super::records::LogPosition;
use crate::engine::planner;
use crate::state::command as cmd;

/// One recorded or made-up event to try.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialEvent {
    pub agent_id: AgentId,
    pub event_type: String,
    pub subject: String,
    pub data: serde_json::Value,
    pub time_ms: i64,
}

/// What the rules would have done with one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialOutcome {
    pub event_type: String,
    pub agent_id: String,
    pub rules: Vec<String>,
    pub outcomes: Vec<String>,
    /// `action service on agent` for each task the plans would send.
    pub changes: Vec<String>,
}

/// The whole trial: per event, and each service's target before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    pub events: Vec<TrialOutcome>,
    pub targets: BTreeMap<String, (u32, u32)>,
}

/// A boot epoch no agent uses, so trial events are never taken for
/// repeats of real ones.
const TRIAL_EPOCH: u64 = u64::MAX;

impl ClusterState {
    /// Runs `events` in order through the rules (of `specs`, if given, or
    /// the current ones) on a copy of this state.
    pub fn trial(
        &self,
        specs: Option<SpecSet>,
        events: Vec<TrialEvent>,
        after: LogPosition,
    ) -> Trial {
        self.clone().into_trial(specs, events, after)
    }

    /// As [`ClusterState::trial`], on this state itself (already a copy).
    pub fn into_trial(
        self,
        specs: Option<SpecSet>,
        events: Vec<TrialEvent>,
        after: LogPosition,
    ) -> Trial {
        let mut copy = self;
        if let Some(specs) = specs {
            copy.desired.specs = specs;
        }
        let targets_of = |state: &ClusterState| -> BTreeMap<String, u32> {
            state
                .desired
                .specs
                .services
                .values()
                .map(|spec| {
                    (
                        spec.name.clone(),
                        planner::target_of(spec, &state.desired.targets),
                    )
                })
                .collect()
        };
        let before = targets_of(&copy);
        let mut outcomes = Vec::with_capacity(events.len());
        for (index, trial) in events.into_iter().enumerate() {
            let seq = index as u64 + 1;
            let event = Event {
                key: EventKey {
                    agent_id: trial.agent_id.clone(),
                    boot_epoch: TRIAL_EPOCH,
                    seq,
                },
                source: format!("agent/{}", trial.agent_id),
                event_type: trial.event_type.clone(),
                subject: trial.subject,
                time_unix_ms: trial.time_ms,
                data: trial.data,
            };
            let at = LogPosition {
                index: after.index + seq,
                term: after.term,
            };
            copy.apply(
                at,
                Command::RecordEvents(cmd::RecordEvents {
                    agent_id: trial.agent_id.clone(),
                    events: vec![event],
                    at_ms: trial.time_ms,
                    // A trial stands for any sender, the controllers
                    // included: `timer.fired` or `host.lost` can be tried.
                    strict: false,
                }),
            );
            // The trial event, then any the controllers raised in reply
            // (a shortfall the change left), in commit order.
            for record in copy
                .event_log
                .events
                .iter()
                .filter(|record| record.log_index == at.index)
            {
                let changes = record
                    .plan_ids
                    .iter()
                    .filter_map(|plan| copy.work.plans.get(plan))
                    .flat_map(|plan| plan.task_ids.iter())
                    .filter_map(|task| copy.work.tasks.get(task))
                    .map(|task| {
                        format!(
                            "{} {} on {}",
                            task.action.as_str(),
                            task.service,
                            task.agent_id
                        )
                    })
                    .collect();
                outcomes.push(TrialOutcome {
                    event_type: record.event.event_type.clone(),
                    agent_id: record.event.key.agent_id.to_string(),
                    rules: record.rules.clone(),
                    outcomes: record.outcomes.clone(),
                    changes,
                });
            }
        }
        let after_targets = targets_of(&copy);
        let targets = before
            .into_iter()
            .filter_map(|(service, from)| {
                let to = after_targets.get(&service).copied().unwrap_or(from);
                (to != from).then_some((service, (from, to)))
            })
            .collect();
        Trial {
            events: outcomes,
            targets,
        }
    }
}
