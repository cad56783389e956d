//! The durable outbox: every event is on disk before the agent tries to
//! send it, and leaves only when a controller acknowledged its commit.

use std::sync::Arc;

use levee_common::pb;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::warn;

use crate::store::{META, OUTBOX, StoreError};

const EPOCH_KEY: &str = "boot_epoch";
const NEXT_SEQ_KEY: &str = "next_seq";
const DROPPED_KEY: &str = "dropped_events";

/// An event as kept in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredEvent {
    event_type: String,
    subject: String,
    time_unix_ms: i64,
    data_json: String,
}

#[derive(Clone)]
pub struct Outbox {
    db: Arc<Database>,
    boot_epoch: u64,
    capacity: u64,
    /// Woken when an event is appended.
    appended: Arc<Notify>,
}

impl Outbox {
    /// Opens the outbox and starts a new boot epoch. Events of earlier
    /// epochs stay and are delivered first.
    ///
    /// The epoch is at least `epoch_floor` (the agent passes the wall clock
    /// in milliseconds): if the store is lost or restored from a backup, the
    /// new epochs still differ from every epoch the cluster has seen, whose
    /// sequence cursors would otherwise swallow the new events as repeats.
    pub fn open(db: Arc<Database>, capacity: u64, epoch_floor: u64) -> Result<Self, StoreError> {
        let txn = db.begin_write()?;
        let boot_epoch = {
            let mut meta = txn.open_table(META)?;
            let next = meta.get(EPOCH_KEY)?.map_or(0, |value| value.value()) + 1;
            let epoch = next.max(epoch_floor);
            meta.insert(EPOCH_KEY, epoch)?;
            meta.insert(NEXT_SEQ_KEY, 1)?;
            epoch
        };
        txn.commit()?;
        Ok(Self {
            db,
            boot_epoch,
            capacity,
            appended: Arc::default(),
        })
    }

    pub fn boot_epoch(&self) -> u64 {
        self.boot_epoch
    }

    /// Durably appends an event; returns its sequence number. When the
    /// outbox is full the oldest event is dropped and counted.
    pub fn append(
        &self,
        event_type: &str,
        subject: &str,
        data: &serde_json::Value,
        time_unix_ms: i64,
    ) -> Result<u64, StoreError> {
        let stored = StoredEvent {
            event_type: event_type.to_owned(),
            subject: subject.to_owned(),
            time_unix_ms,
            data_json: data.to_string(),
        };
        let bytes = serde_json::to_vec(&stored)?;
        let txn = self.db.begin_write()?;
        let seq = {
            let mut meta = txn.open_table(META)?;
            let seq = meta.get(NEXT_SEQ_KEY)?.map_or(1, |value| value.value());
            meta.insert(NEXT_SEQ_KEY, seq + 1)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            outbox.insert((self.boot_epoch, seq), bytes.as_slice())?;
            if outbox.len()? > self.capacity {
                outbox.pop_first()?;
                let dropped = meta.get(DROPPED_KEY)?.map_or(0, |value| value.value()) + 1;
                meta.insert(DROPPED_KEY, dropped)?;
                warn!(
                    dropped_total = dropped,
                    "outbox full: dropped the oldest unacknowledged event"
                );
            }
            seq
        };
        txn.commit()?;
        // One permit is kept if the link is not waiting right now, so an
        // append between its read and its wait is not missed.
        self.appended.notify_one();
        Ok(seq)
    }

    /// Up to `limit` events after `after` (exclusive), oldest first.
    pub fn read_after(
        &self,
        after: Option<(u64, u64)>,
        limit: usize,
    ) -> Result<Vec<pb::Event>, StoreError> {
        self.read_batch(after, limit, usize::MAX)
    }

    /// As [`Outbox::read_after`], stopping before the events' encoded
    /// size passes `max_bytes`; the first event is always taken (one event
    /// is far smaller than any batch limit: its data is at most 64 KiB).
    pub fn read_batch(
        &self,
        after: Option<(u64, u64)>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<pb::Event>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OUTBOX)?;
        let range = match after {
            Some((epoch, seq)) => table.range((epoch, seq + 1)..)?,
            None => table.range::<(u64, u64)>(..)?,
        };
        let mut events = Vec::new();
        let mut bytes = 0usize;
        for item in range.take(limit) {
            let (key, value) = item?;
            let (boot_epoch, seq) = key.value();
            let stored: StoredEvent = serde_json::from_slice(value.value())?;
            let event = pb::Event {
                id: String::new(),
                boot_epoch,
                seq,
                r#type: stored.event_type,
                subject: stored.subject,
                time_unix_ms: stored.time_unix_ms,
                data_json: stored.data_json,
            };
            // The event's share of the batch message: its bytes, a tag and
            // a length prefix.
            let size = prost::Message::encoded_len(&event) + 8;
            if !events.is_empty() && bytes.saturating_add(size) > max_bytes {
                break;
            }
            bytes += size;
            events.push(event);
        }
        Ok(events)
    }

    /// Forgets every event of `boot_epoch` up to `up_to_seq`, and every
    /// event of older epochs: acknowledgements arrive in order.
    pub fn acknowledge(&self, boot_epoch: u64, up_to_seq: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(OUTBOX)?
            .retain_in(..=(boot_epoch, up_to_seq), |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    /// How many events wait for an acknowledgement.
    pub fn unacknowledged(&self) -> Result<u64, StoreError> {
        Ok(self.db.begin_read()?.open_table(OUTBOX)?.len()?)
    }

    pub fn dropped(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .begin_read()?
            .open_table(META)?
            .get(DROPPED_KEY)?
            .map_or(0, |value| value.value()))
    }

    /// Resolves after the next append.
    pub async fn appended(&self) {
        self.appended.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn open(dir: &tempfile::TempDir, capacity: u64) -> Outbox {
        Outbox::open(
            crate::store::open(&dir.path().join("agent.redb")).unwrap(),
            capacity,
            0,
        )
        .unwrap()
    }

    #[test]
    fn epochs_never_repeat_even_when_the_store_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.redb");
        let first = Outbox::open(crate::store::open(&path).unwrap(), 10, 1_000)
            .unwrap()
            .boot_epoch();
        assert_eq!(first, 1_000);
        // The clock went back, but the stored epoch still moves forward.
        let second = Outbox::open(crate::store::open(&path).unwrap(), 10, 5)
            .unwrap()
            .boot_epoch();
        assert_eq!(second, 1_001);
        // The store is lost; the clock keeps the new epoch above the old ones.
        std::fs::remove_file(&path).unwrap();
        let after_loss = Outbox::open(crate::store::open(&path).unwrap(), 10, 2_000)
            .unwrap()
            .boot_epoch();
        assert!(after_loss > second);
    }

    #[test]
    fn batches_stop_at_their_byte_limit_but_always_carry_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(&dir, 1000);
        let big = "x".repeat(60 * 1024);
        for _ in 0..40 {
            outbox.append("app.big", "s", &json!(big), 0).unwrap();
        }
        let batch = outbox.read_batch(None, 500, 1024 * 1024).unwrap();
        let bytes: usize = batch
            .iter()
            .map(|event| prost::Message::encoded_len(event) + 8)
            .sum();
        assert!(bytes <= 1024 * 1024, "{bytes} bytes");
        let next = outbox
            .read_batch(Some((1, batch.last().unwrap().seq)), 500, 1024 * 1024)
            .unwrap();
        let next_size = prost::Message::encoded_len(&next[0]) + 8;
        assert!(bytes + next_size > 1024 * 1024, "as many as fit");
        assert_eq!(
            next[0].seq,
            batch.len() as u64 + 1,
            "the rest follows in order"
        );
        let tiny = outbox.read_batch(None, 500, 10).unwrap();
        assert_eq!(tiny.len(), 1, "one event even past the limit");
    }

    #[test]
    fn events_stay_until_acknowledged_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(&dir, 100);
        assert_eq!(outbox.boot_epoch(), 1);
        for n in 0..5 {
            outbox.append("t", "s", &json!({"n": n}), 0).unwrap();
        }
        outbox.acknowledge(1, 2).unwrap();
        let left: Vec<u64> = outbox
            .read_after(None, 10)
            .unwrap()
            .iter()
            .map(|event| event.seq)
            .collect();
        assert_eq!(left, [3, 4, 5]);
        drop(outbox);

        let reopened = open(&dir, 100);
        assert_eq!(reopened.boot_epoch(), 2, "each start is a new epoch");
        reopened.append("t", "s", &json!(null), 0).unwrap();
        let keys: Vec<(u64, u64)> = reopened
            .read_after(None, 10)
            .unwrap()
            .iter()
            .map(|event| (event.boot_epoch, event.seq))
            .collect();
        assert_eq!(
            keys,
            [(1, 3), (1, 4), (1, 5), (2, 1)],
            "old epoch first, sequences restart"
        );
        assert_eq!(reopened.read_after(Some((1, 4)), 10).unwrap().len(), 2);
        reopened.acknowledge(2, 1).unwrap();
        assert_eq!(
            reopened.unacknowledged().unwrap(),
            0,
            "an ack of a newer epoch covers older ones"
        );
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(&dir, 3);
        for _ in 0..5 {
            outbox.append("t", "s", &json!(null), 0).unwrap();
        }
        let seqs: Vec<u64> = outbox
            .read_after(None, 10)
            .unwrap()
            .iter()
            .map(|event| event.seq)
            .collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert_eq!(outbox.dropped().unwrap(), 2);
    }
}
