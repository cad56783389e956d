//! Hosts coming and going: an agent declared lost by the leader, and the
//! events the controllers raise about hosts themselves.

use levee_common::event::Event;
use levee_common::event::types::{HOST_LOST, TIMER_FIRED};
use levee_common::ids::{AgentId, EventKey};
use serde_json::{Value, json};

use super::ClusterState;
use super::command::Response;
use super::records::Cause;
use crate::engine::planner::Trigger;
use crate::state::Entry;
use crate::state::command as cmd;

/// Most events the controllers raise while applying one log entry; more
/// means reactions feeding each other, and the rest are dropped (counted
/// in `raised_dropped`).
pub const MAX_RAISED_PER_ENTRY: usize = 1000;

/// The identity controller-raised events carry in their key and source.
pub const CONTROLLER_SOURCE: &str = "controller";

impl ClusterState {
    /// Marks an agent lost: it takes no replicas until it says hello again,
    /// so its replicas are placed on other matching agents; `host.lost` is
    /// raised for the rules.
    pub(super) fn agent_lost(
        &mut self,
        entry: &mut Entry,
        agent_id: &AgentId,
        silent_ms: u64,
        last_hello_ms: i64,
    ) -> Response {
        let Some(record) = self.fleet.agents.get_mut(agent_id) else {
            return Response::Rejected(cmd::Rejected {
                reason: format!("no agent {agent_id}"),
            });
        };
        if record.lost || record.last_hello_ms > last_hello_ms {
            return Response::Nothing;
        }
        record.lost = true;
        let labels = record.labels.clone();
        let data = json!({ "agent": agent_id.as_str(), "silent_ms": silent_ms, "labels": labels });
        self.raise_host_event(entry, HOST_LOST, agent_id, data);
        let cause = Cause {
            reason: format!("agent {agent_id} lost after {silent_ms} ms without a session"),
            event_id: None,
            rule: None,
            depth: 0,
        };
        // Its unfinished tasks cannot be delivered; its replicas are
        // placed elsewhere below, so they are superseded (and a rollout
        // waiting on them goes on).
        let stranded: Vec<levee_common::ids::TaskId> = self
            .work
            .tasks
            .values()
            .filter(|task| &task.agent_id == agent_id && !task.state.is_finished())
            .map(|task| task.task_id.clone())
            .collect();
        for task_id in stranded {
            self.supersede(entry, &task_id);
        }
        self.plan(entry, cause, &Trigger::Reconcile);
        Response::Nothing
    }

    /// Raises `timer.fired` once per scheduled time of a declared timer:
    /// a repeated or late proposal (a new leader, a retry) changes nothing.
    pub(super) fn timer_fired(
        &mut self,
        entry: &mut Entry,
        timer: &str,
        scheduled_ms: i64,
    ) -> Response {
        let Some(spec) = self.desired.specs.timers.get(timer) else {
            return Response::Nothing;
        };
        if self
            .rule_book
            .timers_fired
            .get(timer)
            .is_some_and(|last| *last >= scheduled_ms)
        {
            return Response::Nothing;
        }
        self.rule_book
            .timers_fired
            .insert(timer.to_owned(), scheduled_ms);
        let data = json!({ "timer": timer, "scheduled_ms": scheduled_ms, "data": spec.data });
        self.raise_event(entry, TIMER_FIRED, timer, data);
        Response::Nothing
    }

    /// Commits an event raised by the controllers about `agent` (its
    /// subject), so rules and `levee events` see it like any other.
    pub(super) fn raise_host_event(
        &mut self,
        entry: &mut Entry,
        event_type: &str,
        agent: &AgentId,
        data: Value,
    ) {
        self.raise_event(entry, event_type, agent.as_str(), data);
    }

    /// Commits an event the controllers raise, about `subject`.
    fn raise_event(&mut self, entry: &mut Entry, event_type: &str, subject: &str, data: Value) {
        self.raise_from(
            entry,
            CONTROLLER_SOURCE,
            event_type,
            subject,
            data,
            entry.at_ms,
        );
    }

    /// Commits an event that no agent sent: the controllers' own, or one
    /// received from outside (`source` names which). Keyed
    /// `controller/0/<seq>` in one sequence shared by all of them.
    pub(super) fn raise_from(
        &mut self,
        entry: &mut Entry,
        source: &str,
        event_type: &str,
        subject: &str,
        data: Value,
        time_unix_ms: i64,
    ) {
        // A runaway chain of reactions inside one entry stops here, the
        // same way on every node.
        entry.raised += 1;
        if entry.raised > MAX_RAISED_PER_ENTRY {
            self.event_log.raised_dropped += 1;
            return;
        }
        self.event_log.controller_events += 1;
        let event = Event {
            key: EventKey {
                agent_id: AgentId::from(CONTROLLER_SOURCE),
                boot_epoch: 0,
                seq: self.event_log.controller_events,
            },
            source: source.to_owned(),
            event_type: event_type.to_owned(),
            subject: subject.to_owned(),
            time_unix_ms,
            data,
        };
        self.commit_event(entry, event);
    }
}
