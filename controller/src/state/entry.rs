//! The log entry being applied: where it sits in the log, the time its
//! command carries, and what applying it produced. Made afresh for every
//! entry and never part of the replicated state, so nothing transient can
//! leak into a snapshot or a digest.

use levee_common::ids::{AgentId, PlanId, TaskId};
use serde::{Deserialize, Serialize};

/// Where a command sits in the Raft log. Everything derived from a command
/// (ids, times, terms) comes from here or from the command itself, never
/// from the applying node's clock, so every node derives the same state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    pub index: u64,
    pub term: u64,
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Ids and terms derived from the command come from here.
    pub at: LogPosition,
    /// The command's time (the leader's clock when it proposed, or the
    /// agent's report time): apply never reads a clock.
    pub at_ms: i64,
    /// Plans made so far: each plan's id is `p<index>.<n>`, so every plan
    /// of an entry gets its own.
    plans: usize,
    /// Events the controllers raised so far: a bound on runaway reactions.
    pub(super) raised: usize,
    /// Tasks that became pending, by agent: what the leader sends next.
    pub now_pending: Vec<(AgentId, TaskId)>,
    /// The event from outside being committed comes from an endpoint the
    /// operator allowed to name hosts (`may_name_hosts`), so a rule's
    /// `agent_from` may act on the host it names.
    pub(super) outside_names_hosts: bool,
    /// The agent events being committed come from an entry of an earlier
    /// release (or a rule trial): no sender checks, as then.
    pub(super) unchecked_sender: bool,
}

impl Entry {
    pub fn new(at: LogPosition, at_ms: i64) -> Self {
        Self {
            at,
            at_ms,
            plans: 0,
            raised: 0,
            now_pending: Vec::new(),
            outside_names_hosts: false,
            unchecked_sender: false,
        }
    }

    /// The id of the next plan made while applying this entry.
    pub fn next_plan_id(&mut self) -> PlanId {
        let plan_id = PlanId::at(self.at.index, self.plans);
        self.plans += 1;
        plan_id
    }
}
