//! Events: from agents, from outside, and raised by the leader's clock.

use levee_common::event::Event;
use levee_common::ids::AgentId;
use serde::{Deserialize, Serialize};

use super::Response;
use crate::state::inbound_event::InboundEvent;

/// A batch of validated events from one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordEvents {
    pub agent_id: AgentId,
    pub events: Vec<Event>,
    pub at_ms: i64,
    /// The agent's events are held to its trust boundaries: reserved
    /// types refused, `agent_from` acting on the sender only. Entries of
    /// earlier releases lack it and replay as those releases decided, so
    /// nodes restoring from snapshots taken at different points agree;
    /// rule trials leave it off, standing for any sender.
    #[serde(default)]
    pub strict: bool,
}

/// Events from outside the fleet, received by the leader from the
/// named source (`webhook/<endpoint>`, `mqtt/<subscription>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordInbound {
    pub source: String,
    pub events: Vec<InboundEvent>,
    pub at_ms: i64,
    /// The source's endpoint may name hosts for rules' `agent_from`.
    /// Entries of the previous release lack it and are replayed as it
    /// decided, when any inbound event could.
    #[serde(default = "names_hosts_before")]
    pub names_hosts: bool,
}

fn names_hosts_before() -> bool {
    true
}

/// A timer's scheduled time came (the leader's clock decided).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerFired {
    pub timer: String,
    pub scheduled_ms: i64,
    pub at_ms: i64,
}

/// The leader found a rule's signal silent since `last_signal_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalSilent {
    pub rule: String,
    pub last_signal_ms: i64,
    pub at_ms: i64,
}

proposal!(RecordEvents => super::EventsRecorded, Response::EventsRecorded);
proposal!(RecordInbound => super::InboundRecorded, Response::InboundRecorded);
proposal!(TimerFired => (), Response::Nothing);
proposal!(SignalSilent => (), Response::Nothing);
