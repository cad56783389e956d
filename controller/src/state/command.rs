//! Commands: the only way the replicated state changes. Each is one Raft
//! log entry.

use std::collections::BTreeMap;
use std::fmt;

use levee_common::event::Event;
use levee_common::ids::{AgentId, PlanId};
use levee_common::spec::SpecSet;
use serde::{Deserialize, Serialize};

use super::inbound_event::InboundEvent;
use super::records::TaskReport;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// An agent opened a session (a new boot epoch or a reconnect).
    AgentHello {
        agent_id: AgentId,
        boot_epoch: u64,
        labels: BTreeMap<String, String>,
        cpu_millis: u32,
        memory_bytes: u64,
        /// 0 when the agent has no memory of any task: a new host, or one
        /// whose store was lost.
        #[serde(default)]
        highest_term_seen: u64,
        at_ms: i64,
    },
    /// A batch of validated events from one agent.
    RecordEvents {
        agent_id: AgentId,
        events: Vec<Event>,
        at_ms: i64,
    },
    /// Events from outside the fleet, received by the leader from the
    /// named source (`webhook/<endpoint>`, `mqtt/<subscription>`).
    RecordInbound {
        source: String,
        events: Vec<InboundEvent>,
        at_ms: i64,
    },
    /// A new desired-state version.
    PutSpecs {
        specs: SpecSet,
        reason: String,
        applied_by: String,
        at_ms: i64,
    },
    /// Apply an earlier version's specs again, as a new version.
    Rollback {
        version: u64,
        reason: String,
        requested_by: String,
        at_ms: i64,
    },
    /// Set a service's replica target, within its `min..=max`.
    Scale {
        service: String,
        replicas: u32,
        reason: String,
        requested_by: String,
        at_ms: i64,
    },
    /// An agent's report on a task it was sent.
    RecordTaskReport {
        agent_id: AgentId,
        report: TaskReport,
    },
    /// An operator approves or rejects a rule action awaiting approval.
    Answer {
        id: String,
        approve: bool,
        by: String,
        at_ms: i64,
    },
    /// A timer's scheduled time came (the leader's clock decided).
    TimerFired {
        timer: String,
        scheduled_ms: i64,
        at_ms: i64,
    },
    /// The leader has not heard from an agent for too long.
    AgentLost {
        agent_id: AgentId,
        silent_ms: u64,
        /// The agent's last hello as the leader saw it when deciding; a
        /// later hello (it came back meanwhile) voids the decision.
        #[serde(default)]
        last_hello_ms: i64,
        at_ms: i64,
    },
    /// The leader found a rule's signal silent since `last_signal_ms`.
    SignalSilent {
        rule: String,
        last_signal_ms: i64,
        at_ms: i64,
    },
    /// The leader of `term` is about to run a provision's command.
    ProvisionStarted { id: String, term: u64, at_ms: i64 },
    /// A provision's command ended: its output, or why it failed.
    ProvisionFinished {
        id: String,
        result: Result<String, String>,
        at_ms: i64,
    },
    /// The leader delivered a rule's webhook call (the HTTP status), or
    /// gave up on it.
    NotificationDone {
        id: String,
        result: Result<u16, String>,
        attempts: u32,
        at_ms: i64,
    },
    /// The leader of `term` found a provision started by an older term.
    ProvisionAbandoned { id: String, term: u64, at_ms: i64 },
    /// An operator says what became of a provision whose outcome is
    /// unknown: a host was made (it keeps counting against `max_hosts`)
    /// or not (it stops counting).
    ProvisionResolved {
        id: String,
        host_made: bool,
        by: String,
        at_ms: i64,
    },
    /// Keep `service` (or, without one, everything) off an agent.
    Drain {
        agent_id: AgentId,
        service: Option<String>,
        by: String,
        at_ms: i64,
    },
    /// Let a drained agent take work again.
    Undrain {
        agent_id: AgentId,
        by: String,
        at_ms: i64,
    },
    /// A controller node is being removed; its id may never be reused.
    NodeRemoved { node_id: u64, at_ms: i64 },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Blank and membership entries.
    #[default]
    Nothing,
    AgentRegistered {
        reconcile_plans: Vec<PlanId>,
    },
    /// For each boot epoch in the batch, the highest sequence number now
    /// committed: the acknowledgement to send back.
    EventsRecorded {
        accepted: u32,
        duplicates: u32,
        acks: Vec<(u64, u64)>,
    },
    /// Inbound events committed, and repeats of ones already committed
    /// (by their sender's id) skipped.
    InboundRecorded {
        accepted: u32,
        duplicates: u32,
        /// Events the state refused (reserved type, too large); sources
        /// check before proposing, so this stays 0 unless one does not.
        #[serde(default)]
        refused: u32,
    },
    SpecsApplied {
        version: u64,
        plan_ids: Vec<PlanId>,
        /// False when the specs equalled the current version's: no new
        /// version was made.
        #[serde(default)]
        new_version: bool,
    },
    TaskReportRecorded {
        known: bool,
    },
    /// What an approved (or rejected) rule action did.
    Answered {
        outcome: String,
        plan_id: Option<PlanId>,
    },
    /// A drain or undrain, and its plan if it moved anything.
    Drained {
        plan_id: Option<PlanId>,
    },
    Scaled {
        from: u32,
        to: u32,
        plan_id: Option<PlanId>,
    },
    /// The command was valid Raft-wise but refused by the state: nothing
    /// changed. The reason is shown to the caller.
    Rejected {
        reason: String,
    },
}

impl Command {
    /// The time the command carries: when its proposer's clock read it,
    /// or, for a task report, when the agent finished the task.
    pub fn at_ms(&self) -> i64 {
        match self {
            Command::RecordTaskReport { report, .. } => report.finished_ms,
            Command::AgentHello { at_ms, .. }
            | Command::RecordEvents { at_ms, .. }
            | Command::RecordInbound { at_ms, .. }
            | Command::PutSpecs { at_ms, .. }
            | Command::Rollback { at_ms, .. }
            | Command::Scale { at_ms, .. }
            | Command::Answer { at_ms, .. }
            | Command::TimerFired { at_ms, .. }
            | Command::AgentLost { at_ms, .. }
            | Command::SignalSilent { at_ms, .. }
            | Command::ProvisionStarted { at_ms, .. }
            | Command::ProvisionFinished { at_ms, .. }
            | Command::NotificationDone { at_ms, .. }
            | Command::ProvisionAbandoned { at_ms, .. }
            | Command::ProvisionResolved { at_ms, .. }
            | Command::Drain { at_ms, .. }
            | Command::Undrain { at_ms, .. }
            | Command::NodeRemoved { at_ms, .. } => *at_ms,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::AgentHello {
                agent_id,
                boot_epoch,
                ..
            } => write!(f, "agent-hello({agent_id}, epoch {boot_epoch})"),
            Command::RecordEvents {
                agent_id, events, ..
            } => write!(f, "record-events({agent_id}, {})", events.len()),
            Command::RecordInbound { source, events, .. } => {
                write!(f, "record-inbound({source}, {})", events.len())
            }
            Command::PutSpecs { specs, .. } => {
                write!(
                    f,
                    "put-specs({} services, {} rules)",
                    specs.services.len(),
                    specs.rules.len()
                )
            }
            Command::Rollback { version, .. } => write!(f, "rollback({version})"),
            Command::Scale {
                service, replicas, ..
            } => write!(f, "scale({service}, {replicas})"),
            Command::RecordTaskReport { report, .. } => {
                write!(f, "task-report({})", report.task_id)
            }
            Command::NodeRemoved { node_id, .. } => write!(f, "node-removed({node_id})"),
            Command::AgentLost { agent_id, .. } => write!(f, "agent-lost({agent_id})"),
            Command::TimerFired { timer, .. } => write!(f, "timer-fired({timer})"),
            Command::Answer { id, approve, .. } => write!(f, "answer({id}, {approve})"),
            Command::SignalSilent { rule, .. } => write!(f, "signal-silent({rule})"),
            Command::ProvisionStarted { id, .. } => write!(f, "provision-started({id})"),
            Command::ProvisionFinished { id, result, .. } => {
                write!(f, "provision-finished({id}, {})", result.is_ok())
            }
            Command::Drain {
                agent_id, service, ..
            } => write!(
                f,
                "drain({agent_id}, {})",
                service.as_deref().unwrap_or("*")
            ),
            Command::Undrain { agent_id, .. } => write!(f, "undrain({agent_id})"),
            Command::ProvisionAbandoned { id, .. } => write!(f, "provision-abandoned({id})"),
            Command::ProvisionResolved { id, host_made, .. } => {
                write!(f, "provision-resolved({id}, {host_made})")
            }
            Command::NotificationDone { id, .. } => write!(f, "notification-done({id})"),
        }
    }
}
