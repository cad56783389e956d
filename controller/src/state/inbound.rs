//! Events from outside the fleet: webhooks and MQTT messages received by
//! the leader and committed like an agent's events, so rules, `levee
//! events` and `levee why` see them the same way.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::ClusterState;
use super::command::Response;
pub use super::inbound_event::{InboundEvent, RESERVED_PREFIXES, is_reserved_type};
use crate::state::Entry;
use crate::state::command as cmd;

/// The kinds of source events from outside come from.
pub const INBOUND_SOURCE_KINDS: [&str; 2] = ["webhook/", "mqtt/"];

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
        entry: &mut Entry,
        source: &str,
        events: Vec<InboundEvent>,
    ) -> Response {
        if !INBOUND_SOURCE_KINDS.iter().any(|kind| {
            source
                .strip_prefix(kind)
                .is_some_and(|name| !name.is_empty())
        }) {
            // Agents' and the controllers' events never come this way.
            return Response::Rejected(cmd::Rejected {
                reason: format!(
                    "`{source}` is not a source of events from outside (`webhook/<endpoint>` or `mqtt/<subscription>`)"
                ),
            });
        }
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
                    .event_log
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
                self.event_log
                    .inbound_seen
                    .entry(source.to_owned())
                    .or_default()
                    .insert(key);
            }
            let time = inbound.time_unix_ms.unwrap_or(entry.at_ms);
            self.raise_from(
                entry,
                source,
                &inbound.event_type,
                &inbound.subject,
                inbound.data,
                time,
            );
        }
        self.event_log.events_committed += u64::from(accepted);
        Response::InboundRecorded(cmd::InboundRecorded {
            accepted,
            duplicates,
            refused,
        })
    }
}
