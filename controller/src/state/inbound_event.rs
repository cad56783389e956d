//! An event from outside the fleet as a source parsed it, and which types
//! outsiders may not send. Plain data: the command that carries it and the
//! state that commits it both depend on this, not on each other.

use levee_common::event::{MAX_EVENT_DATA_BYTES, MAX_EVENT_FIELD_BYTES};
use levee_common::namespace::{self, Raiser};
use serde::{Deserialize, Serialize};

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

pub use levee_common::namespace::RESERVED_PREFIXES;

/// Whether `event_type` falls in a namespace outsiders may not use.
pub fn is_reserved_type(event_type: &str) -> bool {
    levee_common::namespace::reserved_prefix(event_type).is_some()
}

impl InboundEvent {
    /// Why the state would refuse this event, if it would: sources check
    /// first and answer the sender; apply checks again, so no path (a
    /// forwarded call, a future source) can slip one in.
    pub fn problem(&self) -> Option<String> {
        if self.event_type.is_empty() {
            return Some("the event type is empty".into());
        }
        if let Err(reserved) = namespace::check(Raiser::Outside, &self.event_type) {
            return Some(reserved.to_string());
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
