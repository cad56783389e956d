//! The ids a source's events were committed under, remembered for a time
//! rather than a count, so no volume of deliveries pushes an id out while
//! a replay of it could still be fresh.
//!
//! Times are the committing entries' `at_ms` (the leader's clock when it
//! proposed), so every node forgets the same ids at the same entry.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

/// How long an id is remembered after the entry that committed it: longer
/// than any replay window lets a request through (15 minutes at most,
/// plus a minute ahead and the controllers' clock differences; see
/// `sources::webhook::freshness`), so every replay a window admits is a
/// repeat.
pub const INBOUND_DEDUP_MS: i64 = 20 * 60 * 1000;

/// Ids a source keeps however old: its latest, so a quiet source's ids
/// last far longer than the window (an Alertmanager re-notification hours
/// later, an MQTT retained message on the next subscription), as before
/// ids had times.
pub const INBOUND_DEDUP_FLOOR: usize = 10_000;

/// Most ids one source may remember. Reached only by more than a million
/// new ids within 20 minutes (over 800 a second, sustained), far beyond
/// what webhook senders and MQTT sites send; it bounds what a flood (or a
/// leaked key) can make every controller hold: about 130 MB in memory and
/// 60 MB in each snapshot for CloudEvents ids of 37 bytes (measured: 128
/// and 60 bytes an id), at most about 350 MB with ids of the longest kept
/// as sent (256 bytes). Past it, new deliveries are refused (retry
/// later), never ids forgotten early.
pub const INBOUND_DEDUP_LIMIT: usize = 1_000_000;

/// A source's remembered ids, oldest first, each with the time of the
/// entry that committed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeenIds {
    order: VecDeque<(i64, Arc<str>)>,
    ids: BTreeSet<Arc<str>>,
}

impl SeenIds {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Forgets ids committed `INBOUND_DEDUP_MS` or more before `now_ms`,
    /// oldest first, keeping the latest `INBOUND_DEDUP_FLOOR`. An entry's
    /// time may be earlier than the one before it (a new leader's clock):
    /// such an id waits behind the older ones, remembered a little longer.
    pub fn forget_expired(&mut self, now_ms: i64) {
        while self.order.len() > INBOUND_DEDUP_FLOOR
            && let Some((at_ms, _)) = self.order.front()
            && at_ms.saturating_add(INBOUND_DEDUP_MS) <= now_ms
            && let Some((_, id)) = self.order.pop_front()
        {
            self.ids.remove(&id);
        }
    }

    /// Remembers `id`, committed at `at_ms`; false if it was remembered.
    pub fn insert(&mut self, id: &str, at_ms: i64) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        let id: Arc<str> = Arc::from(id);
        self.ids.insert(Arc::clone(&id));
        self.order.push_back((at_ms, id));
        true
    }
}

/// Stored as `{"remembered": [[at_ms, id], ...]}`, oldest first.
impl Serialize for SeenIds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Remembered<'a>(&'a VecDeque<(i64, Arc<str>)>);
        impl Serialize for Remembered<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(|(at_ms, id)| (at_ms, &**id)))
            }
        }
        let mut fields = serializer.serialize_struct("SeenIds", 1)?;
        fields.serialize_field("remembered", &Remembered(&self.order))?;
        fields.end()
    }
}

/// Also reads what earlier releases stored: `{"order": [id, ...], "ids":
/// [...]}`, ids without times, which are taken as committed at time 0 and
/// so are forgotten first, once the source has more than the floor.
#[derive(Deserialize)]
struct StoredSeenIds {
    #[serde(default)]
    remembered: Vec<(i64, String)>,
    #[serde(default)]
    order: Vec<String>,
}

impl<'de> Deserialize<'de> for SeenIds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredSeenIds::deserialize(deserializer)?;
        let untimed = stored.order.into_iter().map(|id| (0, id));
        let mut seen = SeenIds::default();
        for (at_ms, id) in untimed.chain(stored.remembered) {
            seen.insert(&id, at_ms);
        }
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const MINUTE_MS: i64 = 60_000;

    /// `count` ids `"<prefix>-<n>"`, all at `at_ms`.
    fn fill(seen: &mut SeenIds, prefix: &str, count: usize, at_ms: i64) {
        for n in 0..count {
            assert!(seen.insert(&format!("{prefix}-{n}"), at_ms));
        }
    }

    #[test]
    fn an_id_is_remembered_whatever_came_after_it_within_the_time() {
        let mut seen = SeenIds::default();
        assert!(seen.insert("first", 0));
        // Twice the old count bound, all within the time.
        fill(&mut seen, "other", 2 * INBOUND_DEDUP_FLOOR, MINUTE_MS);
        seen.forget_expired(INBOUND_DEDUP_MS - 1);
        assert!(!seen.insert("first", INBOUND_DEDUP_MS - 1));
        assert_eq!(seen.len(), 2 * INBOUND_DEDUP_FLOOR + 1);
    }

    #[test]
    fn ids_past_the_time_are_forgotten_down_to_the_floor() {
        let mut seen = SeenIds::default();
        fill(&mut seen, "old", INBOUND_DEDUP_FLOOR, 0);
        fill(&mut seen, "new", 100, 10 * MINUTE_MS);
        seen.forget_expired(INBOUND_DEDUP_MS);
        // The first 100 "old" ids are past the time and beyond the floor.
        assert_eq!(seen.len(), INBOUND_DEDUP_FLOOR);
        assert!(!seen.contains("old-99"));
        assert!(seen.contains("old-100"));
        assert!(seen.insert("old-0", INBOUND_DEDUP_MS), "forgotten");
        // Past the time of the newer ones too: still the latest floor kept.
        seen.forget_expired(i64::MAX);
        assert_eq!(seen.len(), INBOUND_DEDUP_FLOOR);
        assert!(seen.contains("new-99"));
    }

    #[test]
    fn a_quiet_source_keeps_its_ids_however_old() {
        let mut seen = SeenIds::default();
        fill(&mut seen, "alert", 5, 0);
        seen.forget_expired(30 * 24 * 60 * MINUTE_MS);
        assert_eq!(seen.len(), 5);
        assert!(!seen.insert("alert-4", 30 * 24 * 60 * MINUTE_MS));
    }

    #[test]
    fn the_time_edge_is_exact() {
        let mut seen = SeenIds::default();
        assert!(seen.insert("edge", 1_000));
        fill(&mut seen, "young", INBOUND_DEDUP_FLOOR, 5 * MINUTE_MS);
        seen.forget_expired(1_000 + INBOUND_DEDUP_MS - 1);
        assert!(seen.contains("edge"), "one ms before its time");
        seen.forget_expired(1_000 + INBOUND_DEDUP_MS);
        assert!(!seen.contains("edge"), "at its time");
    }

    #[test]
    fn stored_as_times_and_ids_and_read_back() {
        let mut seen = SeenIds::default();
        seen.insert("b", 7);
        seen.insert("a", 9);
        let stored = serde_json::to_value(&seen).unwrap();
        assert_eq!(stored, json!({ "remembered": [[7, "b"], [9, "a"]] }));
        let read: SeenIds = serde_json::from_value(stored).unwrap();
        assert_eq!(read, seen);
    }

    #[test]
    fn the_shape_earlier_releases_stored_still_reads() {
        let earlier = json!({ "order": ["f2", "f1"], "ids": ["f1", "f2"] });
        let read: SeenIds = serde_json::from_value(earlier).unwrap();
        assert!(read.contains("f1") && read.contains("f2"));
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            json!({ "remembered": [[0, "f2"], [0, "f1"]] })
        );
        let empty: SeenIds = serde_json::from_value(json!({})).unwrap();
        assert!(empty.is_empty());
    }
}
