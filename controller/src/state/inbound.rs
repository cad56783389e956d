//! Events from outside the fleet: webhooks and MQTT messages received by
//! the leader and committed like an agent's events, so rules, `levee
//! events` and `levee why` see them the same way.

use std::collections::{BTreeSet, VecDeque};

use levee_common::event::{MAX_EVENT_DATA_BYTES, MAX_EVENT_FIELD_BYTES};
use serde::{Deserialize, Serialize};

use super::ClusterState;
use super::command::Response;
use super::records::LogPosition;

/// One event as a source (webhook, MQTT) parsed it, before it is
/// committed. The source's name is stamped by the receiver, never taken
/// from the payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundEvent {
    /// E.g. `alert.firing`, `cloudwatch.alarm`, or a CloudEvent's `type`.
    pub event_type: String,
    /// What the event is about: an alert's name, an MQTT topic...
    pub subject: String,
    pub data: serde_json::Value,
    /// A sender's own id for the event (a CloudEvent's `source` + `id`, an
    /// SNS `MessageId`, an alert's fingerprint and state), so a retried
    /// delivery is committed once. `None` when the sender gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_id: Option<String>,
    /// When the sender says it happened; the commit time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_unix_ms: Option<i64>,
    /// An id to remember once this event is committed, without
    /// deduplicating it by that id: an MQTT message's content, so the same
    /// content replayed later as a retained message is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember: Option<String>,
}

/// Type prefixes of events raised inside the fleet (agents' `host.*`, the
/// controllers' `levee.*` and `timer.*`): an outsider claiming `host.lost`
/// or `timer.fired` could make rules act when nothing happened.
pub const RESERVED_PREFIXES: [&str; 3] = ["host.", "levee.", "timer."];

pub fn is_reserved_type(event_type: &str) -> bool {
    RESERVED_PREFIXES
        .iter()
        .any(|prefix| event_type.starts_with(prefix))
}

impl InboundEvent {
    /// Why the state would refuse this event, if it would: sources check
    /// first and answer the sender; apply checks again, so no path (a
    /// forwarded call, a future source) can slip one in.
    pub fn problem(&self) -> Option<String> {
        if self.event_type.is_empty() {
            return Some("the event type is empty".into());
        }
        if is_reserved_type(&self.event_type) {
            return Some(format!(
                "type `{}` is reserved for events from inside the fleet",
                self.event_type
            ));
        }
        for (field, value) in [("type", &self.event_type), ("subject", &self.subject)] {
            if value.len() > MAX_EVENT_FIELD_BYTES {
                return Some(format!(
                    "the {field} is {} bytes, more than {MAX_EVENT_FIELD_BYTES}",
                    value.len()
                ));
            }
        }
        let data = self.data.to_string().len();
        if data > MAX_EVENT_DATA_BYTES {
            return Some(format!(
                "the data is {data} bytes, more than {MAX_EVENT_DATA_BYTES}"
            ));
        }
        None
    }
}

/// How many sender ids per source are remembered for deduplication. A
/// sender retries within minutes; this covers far more than that.
pub const INBOUND_DEDUP: usize = 10_000;

/// A bounded set of sender ids, oldest dropped first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeenIds {
    order: VecDeque<String>,
    ids: BTreeSet<String>,
}

impl SeenIds {
    /// Remembers `id`; false if it was already remembered.
    pub fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        while self.order.len() > INBOUND_DEDUP {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

impl ClusterState {
    /// Commits events from outside the fleet, skipping those whose sender
    /// id was committed before.
    pub(super) fn record_inbound(
        &mut self,
        at: LogPosition,
        at_ms: i64,
        source: &str,
        events: Vec<InboundEvent>,
    ) -> Response {
        let mut accepted = 0;
        let mut duplicates = 0;
        let mut refused = 0;
        for inbound in events {
            if inbound.problem().is_some() {
                refused += 1;
                continue;
            }
            if let Some(id) = &inbound.dedup_id
                && !self
                    .inbound_seen
                    .entry(source.to_owned())
                    .or_default()
                    .insert(id)
            {
                duplicates += 1;
                continue;
            }
            accepted += 1;
            if let Some(key) = &inbound.remember {
                self.inbound_seen
                    .entry(source.to_owned())
                    .or_default()
                    .insert(key);
            }
            let time = inbound.time_unix_ms.unwrap_or(at_ms);
            self.raise_from(
                at,
                at_ms,
                source,
                &inbound.event_type,
                &inbound.subject,
                inbound.data,
                time,
            );
        }
        self.events_committed += u64::from(accepted);
        Response::InboundRecorded {
            accepted,
            duplicates,
            refused,
        }
    }
}
