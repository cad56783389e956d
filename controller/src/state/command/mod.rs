//! Commands: the only way the replicated state changes. Each is one Raft
//! log entry. Each command is a struct in the file of its family and says
//! which reply it gets ([`Proposal`]), so a caller gets that reply typed
//! and never matches on another command's answer.
//!
//! The log stores a `Command` as `{"Variant": {fields}}`, the same for a
//! newtype variant holding a struct as for the struct variants earlier
//! releases used, so recorded logs read the same.

use std::fmt;

use levee_common::ids::PlanId;
use serde::{Deserialize, Serialize};

pub use self::approvals::*;
pub use self::desired::*;
pub use self::effects::*;
pub use self::events::*;
pub use self::fleet::*;
pub use self::tasks::*;

/// A command and the reply the state gives it.
pub trait Proposal: Into<Command> {
    type Reply;

    /// The reply in `response`: `Err` with the reason when the state
    /// refused the command, `None` when `response` is not this command's
    /// kind of answer (a defect, reported as such by the proposer).
    fn reply(response: Response) -> Option<Result<Self::Reply, String>>;
}

/// Implements `Proposal` and `From<$command> for Command`.
macro_rules! proposal {
    ($command:ident => $reply:ty, Response::Nothing) => {
        impl From<$command> for super::Command {
            fn from(command: $command) -> Self {
                super::Command::$command(command)
            }
        }
        impl super::Proposal for $command {
            type Reply = $reply;
            fn reply(response: Response) -> Option<Result<(), String>> {
                match response {
                    Response::Nothing => Some(Ok(())),
                    Response::Rejected(rejected) => Some(Err(rejected.reason)),
                    _ => None,
                }
            }
        }
    };
    ($command:ident => $reply:ty, Response::$variant:ident) => {
        impl From<$command> for super::Command {
            fn from(command: $command) -> Self {
                super::Command::$command(command)
            }
        }
        impl super::Proposal for $command {
            type Reply = $reply;
            fn reply(response: Response) -> Option<Result<$reply, String>> {
                match response {
                    Response::$variant(reply) => Some(Ok(reply)),
                    Response::Rejected(rejected) => Some(Err(rejected.reason)),
                    _ => None,
                }
            }
        }
    };
}

mod approvals;
mod desired;
mod effects;
mod events;
mod fleet;
mod tasks;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// An agent opened a session (a new boot epoch or a reconnect).
    AgentHello(AgentHello),
    /// A batch of validated events from one agent.
    RecordEvents(RecordEvents),
    /// Events from outside the fleet, received by the leader from the
    /// named source (`webhook/<endpoint>`, `mqtt/<subscription>`).
    RecordInbound(RecordInbound),
    /// A new desired-state version.
    PutSpecs(PutSpecs),
    /// Apply an earlier version's specs again, as a new version.
    Rollback(Rollback),
    /// Set a service's replica target, within its `min..=max`.
    Scale(Scale),
    /// An agent's report on a task it was sent.
    RecordTaskReport(RecordTaskReport),
    /// An operator approves or rejects a rule action awaiting approval.
    Answer(Answer),
    /// A timer's scheduled time came (the leader's clock decided).
    TimerFired(TimerFired),
    /// The leader has not heard from an agent for too long.
    AgentLost(AgentLost),
    /// The leader found a rule's signal silent since `last_signal_ms`.
    SignalSilent(SignalSilent),
    /// The leader of `term` is about to run a provision's command.
    ProvisionStarted(ProvisionStarted),
    /// A provision's command ended: its output, or why it failed.
    ProvisionFinished(ProvisionFinished),
    /// The leader delivered a rule's webhook call (the HTTP status), or
    /// gave up on it.
    NotificationDone(NotificationDone),
    /// The leader of `term` found a provision started by an older term.
    ProvisionAbandoned(ProvisionAbandoned),
    /// An operator says what became of a provision whose outcome is
    /// unknown: a host was made (it keeps counting against `max_hosts`)
    /// or not (it stops counting).
    ProvisionResolved(ProvisionResolved),
    /// Keep `service` (or, without one, everything) off an agent.
    Drain(Drain),
    /// Let a drained agent take work again.
    Undrain(Undrain),
    /// An operator sets or removes an agent's labels.
    LabelAgent(LabelAgent),
    /// A controller node is being removed; its id may never be reused.
    NodeRemoved(NodeRemoved),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Blank and membership entries, and commands with nothing to say.
    #[default]
    Nothing,
    AgentRegistered(AgentRegistered),
    /// For each boot epoch in the batch, the highest sequence number now
    /// committed: the acknowledgement to send back.
    EventsRecorded(EventsRecorded),
    /// Inbound events committed, and repeats of ones already committed
    /// (by their sender's id) skipped.
    InboundRecorded(InboundRecorded),
    SpecsApplied(SpecsApplied),
    TaskReportRecorded(TaskReportRecorded),
    /// What an approved (or rejected) rule action did.
    Answered(Answered),
    /// A drain or undrain, and its plan if it moved anything.
    Drained(Drained),
    Scaled(Scaled),
    /// An agent's labels after a `LabelAgent`.
    AgentLabelled(AgentLabelled),
    /// The command was valid Raft-wise but refused by the state: nothing
    /// changed. The reason is shown to the caller.
    Rejected(Rejected),
}

/// An agent's hello committed, and the plans it caused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRegistered {
    pub reconcile_plans: Vec<PlanId>,
}

/// For each boot epoch in the batch, the highest sequence number now
/// committed: the acknowledgement to send back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventsRecorded {
    pub accepted: u32,
    pub duplicates: u32,
    pub acks: Vec<(u64, u64)>,
    /// Events refused for their type, acknowledged all the same so the
    /// agent's outbox moves on; the first one's reason.
    #[serde(default)]
    pub refused: u32,
    #[serde(default)]
    pub refusal: Option<String>,
}

/// Inbound events committed, and repeats of ones already committed
/// (by their sender's id) skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InboundRecorded {
    pub accepted: u32,
    pub duplicates: u32,
    /// Events the state refused (reserved type, too large); sources
    /// check before proposing, so this stays 0 unless one does not.
    #[serde(default)]
    pub refused: u32,
    /// Nothing was committed: the source already remembers
    /// `INBOUND_DEDUP_LIMIT` ids from the last `INBOUND_DEDUP_MS`. The
    /// sender should retry once older ids are forgotten.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub at_limit: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecsApplied {
    pub version: u64,
    pub plan_ids: Vec<PlanId>,
    /// False when the specs equalled the current version's: no new
    /// version was made.
    #[serde(default)]
    pub new_version: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskReportRecorded {
    pub known: bool,
}

/// What an approved (or rejected) rule action did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    pub outcome: String,
    pub plan_id: Option<PlanId>,
}

/// A drain or undrain, and its plan if it moved anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Drained {
    pub plan_id: Option<PlanId>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scaled {
    pub from: u32,
    pub to: u32,
    pub plan_id: Option<PlanId>,
}

/// An agent's labels after a `LabelAgent`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentLabelled {
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The command was valid Raft-wise but refused by the state: nothing
/// changed. The reason is shown to the caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub reason: String,
}

impl Command {
    /// The time the command carries: when its proposer's clock read it,
    /// or, for a task report, when the agent finished the task.
    pub fn at_ms(&self) -> i64 {
        match self {
            Command::RecordTaskReport(RecordTaskReport { report, .. }) => report.finished_ms,
            Command::AgentHello(AgentHello { at_ms, .. })
            | Command::RecordEvents(RecordEvents { at_ms, .. })
            | Command::RecordInbound(RecordInbound { at_ms, .. })
            | Command::PutSpecs(PutSpecs { at_ms, .. })
            | Command::Rollback(Rollback { at_ms, .. })
            | Command::Scale(Scale { at_ms, .. })
            | Command::Answer(Answer { at_ms, .. })
            | Command::TimerFired(TimerFired { at_ms, .. })
            | Command::AgentLost(AgentLost { at_ms, .. })
            | Command::SignalSilent(SignalSilent { at_ms, .. })
            | Command::ProvisionStarted(ProvisionStarted { at_ms, .. })
            | Command::ProvisionFinished(ProvisionFinished { at_ms, .. })
            | Command::NotificationDone(NotificationDone { at_ms, .. })
            | Command::ProvisionAbandoned(ProvisionAbandoned { at_ms, .. })
            | Command::ProvisionResolved(ProvisionResolved { at_ms, .. })
            | Command::Drain(Drain { at_ms, .. })
            | Command::Undrain(Undrain { at_ms, .. })
            | Command::LabelAgent(LabelAgent { at_ms, .. })
            | Command::NodeRemoved(NodeRemoved { at_ms, .. }) => *at_ms,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::AgentHello(AgentHello {
                agent_id,
                boot_epoch,
                ..
            }) => write!(f, "agent-hello({agent_id}, epoch {boot_epoch})"),
            Command::RecordEvents(RecordEvents {
                agent_id, events, ..
            }) => write!(f, "record-events({agent_id}, {})", events.len()),
            Command::RecordInbound(RecordInbound { source, events, .. }) => {
                write!(f, "record-inbound({source}, {})", events.len())
            }
            Command::PutSpecs(PutSpecs { specs, .. }) => {
                write!(
                    f,
                    "put-specs({} services, {} rules)",
                    specs.services.len(),
                    specs.rules.len()
                )
            }
            Command::Rollback(Rollback { version, .. }) => write!(f, "rollback({version})"),
            Command::Scale(Scale {
                service, replicas, ..
            }) => write!(f, "scale({service}, {replicas})"),
            Command::RecordTaskReport(RecordTaskReport { report, .. }) => {
                write!(f, "task-report({})", report.task_id)
            }
            Command::NodeRemoved(NodeRemoved { node_id, .. }) => {
                write!(f, "node-removed({node_id})")
            }
            Command::AgentLost(AgentLost { agent_id, .. }) => write!(f, "agent-lost({agent_id})"),
            Command::TimerFired(TimerFired { timer, .. }) => write!(f, "timer-fired({timer})"),
            Command::Answer(Answer { id, approve, .. }) => write!(f, "answer({id}, {approve})"),
            Command::SignalSilent(SignalSilent { rule, .. }) => write!(f, "signal-silent({rule})"),
            Command::ProvisionStarted(ProvisionStarted { id, .. }) => {
                write!(f, "provision-started({id})")
            }
            Command::ProvisionFinished(ProvisionFinished { id, result, .. }) => {
                write!(f, "provision-finished({id}, {})", result.is_ok())
            }
            Command::Drain(Drain {
                agent_id, service, ..
            }) => write!(
                f,
                "drain({agent_id}, {})",
                service.as_deref().unwrap_or("*")
            ),
            Command::Undrain(Undrain { agent_id, .. }) => write!(f, "undrain({agent_id})"),
            Command::LabelAgent(LabelAgent { agent_id, .. }) => write!(f, "label({agent_id})"),
            Command::ProvisionAbandoned(ProvisionAbandoned { id, .. }) => {
                write!(f, "provision-abandoned({id})")
            }
            Command::ProvisionResolved(ProvisionResolved { id, host_made, .. }) => {
                write!(f, "provision-resolved({id}, {host_made})")
            }
            Command::NotificationDone(NotificationDone { id, .. }) => {
                write!(f, "notification-done({id})")
            }
        }
    }
}
