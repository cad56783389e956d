//! Events from outside the fleet: webhooks and MQTT messages received by
//! the leader and committed like an agent's events, so rules, `levee
//! events` and `levee why` see them the same way.

use std::collections::BTreeSet;

use super::ClusterState;
use super::command::Response;
pub use super::inbound_event::{InboundEvent, RESERVED_PREFIXES, is_reserved_type};
use crate::state::Entry;
use crate::state::command as cmd;

/// The kinds of source events from outside come from: a webhook endpoint
/// or an MQTT subscription. Anything else (`agent/...`, the controllers'
/// own) would let a source speak for someone else.
pub const INBOUND_SOURCE_KINDS: [&str; 2] = ["webhook/", "mqtt/"];

/// Why `source` may not bring events from outside, if it may not. The
/// receiver checks first (a forwarded call too); apply checks again.
pub fn source_problem(source: &str) -> Option<String> {
    let named = INBOUND_SOURCE_KINDS.iter().any(|kind| {
        source
            .strip_prefix(kind)
            .is_some_and(|name| !name.is_empty())
    });
    (!named).then(|| {
        format!(
            "`{source}` is not a source of events from outside (`webhook/<endpoint>` or `mqtt/<subscription>`)"
        )
    })
}

mod seen_ids;

pub use seen_ids::{INBOUND_DEDUP_FLOOR, INBOUND_DEDUP_LIMIT, INBOUND_DEDUP_MS, SeenIds};

impl ClusterState {
    /// Commits events from outside the fleet, skipping those whose sender
    /// id was committed before. When the source's remembered ids cannot
    /// take this batch's new ones (`INBOUND_DEDUP_LIMIT`), nothing of it
    /// is committed and the reply says so: the sender retries later,
    /// rather than an id being forgotten while a replay could be fresh.
    pub(super) fn record_inbound(
        &mut self,
        entry: &mut Entry,
        source: &str,
        events: Vec<InboundEvent>,
    ) -> Response {
        if let Some(reason) = source_problem(source) {
            return Response::Rejected(cmd::Rejected { reason });
        }
        if let Some(seen) = self.event_log.inbound_seen.get_mut(source) {
            seen.forget_expired(entry.at_ms);
            if seen.len() + new_ids(seen, &events) > INBOUND_DEDUP_LIMIT {
                return Response::InboundRecorded(cmd::InboundRecorded {
                    at_limit: true,
                    ..cmd::InboundRecorded::default()
                });
            }
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
                    .insert(id, entry.at_ms)
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
                    .insert(key, entry.at_ms);
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
            at_limit: false,
        })
    }
}

/// How many ids committing `events` would add to `seen`: those of events
/// the state accepts, not yet remembered, each counted once.
fn new_ids(seen: &SeenIds, events: &[InboundEvent]) -> usize {
    let ids: BTreeSet<&str> = events
        .iter()
        .filter(|event| event.problem().is_none())
        .flat_map(|event| event.dedup_id.iter().chain(&event.remember))
        .map(String::as_str)
        .filter(|id| !seen.contains(id))
        .collect();
    ids.len()
}

#[cfg(test)]
mod tests;
