//! Events from outside the fleet: webhooks and MQTT messages received by
//! the leader and committed like an agent's events, so rules, `levee
//! events` and `levee why` see them the same way.

use std::collections::{BTreeSet, VecDeque};

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
        for inbound in events {
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
        }
    }
}
