//! The Raft log on redb. Every write is one redb transaction committed with
//! fsync before openraft hears it succeeded: an entry Raft counts toward a
//! commit is on disk.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::store::{COMMITTED_KEY, LOG, META, PURGED_KEY, VOTE_KEY, blocking, io_error};
use super::{Entry, LogId, TypeConfig, Vote};

/// Shared by the store and its readers, so a reader sees every append.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    async fn read_meta<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> io::Result<Option<T>> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read().map_err(io_error)?;
            let table = txn.open_table(META).map_err(io_error)?;
            match table.get(key).map_err(io_error)? {
                Some(bytes) => Ok(Some(
                    serde_json::from_slice(bytes.value()).map_err(io::Error::other)?,
                )),
                None => Ok(None),
            }
        })
        .await
    }

    async fn write_meta<T: Serialize>(&self, key: &'static str, value: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(io_error)?;
            txn.open_table(META)
                .map_err(io_error)?
                .insert(key, bytes.as_slice())
                .map_err(io_error)?;
            txn.commit().map_err(io_error)
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read().map_err(io_error)?;
            let table = txn.open_table(LOG).map_err(io_error)?;
            let mut entries = Vec::new();
            for item in table.range::<u64>(bounds).map_err(io_error)? {
                let (_, bytes) = item.map_err(io_error)?;
                entries.push(serde_json::from_slice(bytes.value()).map_err(io::Error::other)?);
            }
            Ok(entries)
        })
        .await
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.read_meta(VOTE_KEY).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.read_meta(PURGED_KEY).await?;
        let db = self.db.clone();
        let last_entry: Option<Entry> = blocking(move || {
            let txn = db.begin_read().map_err(io_error)?;
            let table = txn.open_table(LOG).map_err(io_error)?;
            match table.last().map_err(io_error)? {
                Some((_, bytes)) => Ok(Some(
                    serde_json::from_slice(bytes.value()).map_err(io::Error::other)?,
                )),
                None => Ok(None),
            }
        })
        .await?;
        let last_log_id = last_entry.map(|entry| entry.log_id).or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.write_meta(VOTE_KEY, vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        self.write_meta(COMMITTED_KEY, &committed).await
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self
            .read_meta::<Option<LogId>>(COMMITTED_KEY)
            .await?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|entry| {
                Ok((
                    entry.log_id.index,
                    serde_json::to_vec(&entry).map_err(io::Error::other)?,
                ))
            })
            .collect::<io::Result<_>>()?;
        let db = self.db.clone();
        let result = blocking(move || {
            let txn = db.begin_write().map_err(io_error)?;
            {
                let mut table = txn.open_table(LOG).map_err(io_error)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice()).map_err(io_error)?;
                }
            }
            // redb's default durability fsyncs on commit.
            txn.commit().map_err(io_error)
        })
        .await;
        let reported = result
            .as_ref()
            .map(|_| ())
            .map_err(|err| io::Error::new(err.kind(), err.to_string()));
        callback.io_completed(reported);
        result
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let keep_through = last_log_id.map(|log_id| log_id.index);
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(io_error)?;
            {
                let mut table = txn.open_table(LOG).map_err(io_error)?;
                match keep_through {
                    Some(index) => table
                        .retain_in::<u64, _>((index + 1).., |_, _| false)
                        .map_err(io_error)?,
                    None => table.retain(|_, _| false).map_err(io_error)?,
                }
            }
            txn.commit().map_err(io_error)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let bytes = serde_json::to_vec(&log_id).map_err(io::Error::other)?;
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(io_error)?;
            {
                // Record the purge point first within the same transaction:
                // the log is never shorter than what get_log_state reports.
                txn.open_table(META)
                    .map_err(io_error)?
                    .insert(PURGED_KEY, bytes.as_slice())
                    .map_err(io_error)?;
                let mut table = txn.open_table(LOG).map_err(io_error)?;
                table
                    .retain_in::<u64, _>(..=log_id.index, |_, _| false)
                    .map_err(io_error)?;
            }
            txn.commit().map_err(io_error)
        })
        .await
    }
}
