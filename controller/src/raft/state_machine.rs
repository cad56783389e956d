//! The openraft state machine: applies committed entries to the in-memory
//! [`ClusterState`] and persists snapshots in the store.
//!
//! The state lives in memory and is rebuilt on start from the latest
//! snapshot plus the committed log after it (openraft replays from
//! `read_committed`). So `applied_state` reports only what a restart can
//! rebuild.

use std::io;
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::watch;

use super::fresh_tasks::{FreshTasks, Since};
use super::store::{SNAPSHOT, SNAPSHOT_DATA_KEY, SNAPSHOT_META_KEY, blocking, io_error};
use super::{LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig};
use crate::state::command::Response;
use crate::state::records::LogPosition;
use crate::state::{ClusterState, Entry};

/// What has been applied, shared with the API and the dispatcher.
#[derive(Debug, Default)]
pub struct Applied {
    pub state: ClusterState,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// Tasks recent entries made pending, for the leader's dispatcher.
    fresh_tasks: FreshTasks,
}

/// A read handle on the applied state plus a watch that ticks with the
/// last applied index, so readers wait on change instead of polling.
#[derive(Clone)]
pub struct SharedState {
    applied: Arc<RwLock<Applied>>,
    changes: watch::Sender<u64>,
}

impl SharedState {
    /// Reads the state. The lock is never held across an await.
    /// Reads the state with the log position it reflects, under one lock.
    pub fn read_at<R>(&self, read: impl FnOnce(&ClusterState, LogPosition) -> R) -> R {
        let applied = self
            .applied
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = LogPosition {
            index: applied.last_applied.map(|id| id.index).unwrap_or_default(),
            term: applied
                .last_applied
                .map(|id| id.leader_id.term)
                .unwrap_or_default(),
        };
        read(&applied.state, at)
    }

    pub fn read<R>(&self, read: impl FnOnce(&ClusterState) -> R) -> R {
        // A poisoned lock means a panic while applying; the node is broken
        // either way, and reading what is there is the most useful answer.
        let applied = self
            .applied
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        read(&applied.state)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        let applied = self
            .applied
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        applied.last_applied.map_or(0, |id| id.index)
    }

    /// The tasks made pending by entries after `cursor`, and the index
    /// read up to (the next cursor), under one lock.
    pub fn fresh_tasks_since(&self, cursor: u64) -> (Since, u64) {
        let applied = self
            .applied
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let index = applied.last_applied.map_or(0, |id| id.index);
        (applied.fresh_tasks.since(cursor), index)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Applied> {
        self.applied
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct StateMachine {
    db: Arc<Database>,
    shared: SharedState,
}

impl StateMachine {
    /// Opens the state machine, starting from the stored snapshot if any.
    pub async fn open(db: Arc<Database>) -> io::Result<Self> {
        let mut applied = Applied::default();
        if let Some((meta, data)) = read_snapshot(db.clone()).await? {
            applied.state = serde_json::from_slice(&data).map_err(io::Error::other)?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership;
        }
        let index = applied
            .last_applied
            .as_ref()
            .map_or(0, |log_id| log_id.index);
        let (changes, _) = watch::channel(index);
        Ok(Self {
            db,
            shared: SharedState {
                applied: Arc::new(RwLock::new(applied)),
                changes,
            },
        })
    }

    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }
}

async fn read_snapshot(db: Arc<Database>) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
    blocking(move || {
        let txn = db.begin_read().map_err(io_error)?;
        let table = txn.open_table(SNAPSHOT).map_err(io_error)?;
        let meta = table.get(SNAPSHOT_META_KEY).map_err(io_error)?;
        let data = table.get(SNAPSHOT_DATA_KEY).map_err(io_error)?;
        match (meta, data) {
            (Some(meta), Some(data)) => {
                let meta: SnapshotMeta =
                    serde_json::from_slice(meta.value()).map_err(io::Error::other)?;
                Ok(Some((meta, data.value().to_vec())))
            }
            _ => Ok(None),
        }
    })
    .await
}

/// Meta and data go in one transaction: a crash leaves the old snapshot
/// or the new one, never half of each.
///
/// Snapshots are built in the background while others may be installed, so
/// a build that finishes late must not replace a newer snapshot (the log
/// before the newer one may already be purged): the older write is skipped.
async fn write_snapshot(db: Arc<Database>, meta: &SnapshotMeta, data: Vec<u8>) -> io::Result<()> {
    let last_log_id = meta.last_log_id;
    let meta = serde_json::to_vec(meta).map_err(io::Error::other)?;
    blocking(move || {
        let txn = db.begin_write().map_err(io_error)?;
        {
            let mut table = txn.open_table(SNAPSHOT).map_err(io_error)?;
            let stored: Option<SnapshotMeta> =
                match table.get(SNAPSHOT_META_KEY).map_err(io_error)? {
                    Some(bytes) => {
                        Some(serde_json::from_slice(bytes.value()).map_err(io::Error::other)?)
                    }
                    None => None,
                };
            if stored.is_some_and(|stored| stored.last_log_id > last_log_id) {
                return Ok(());
            }
            table
                .insert(SNAPSHOT_META_KEY, meta.as_slice())
                .map_err(io_error)?;
            table
                .insert(SNAPSHOT_DATA_KEY, data.as_slice())
                .map_err(io_error)?;
        }
        txn.commit().map_err(io_error)
    })
    .await
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let (meta, data) = {
            let applied = self
                .shared
                .applied
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let data = serde_json::to_vec(&applied.state).map_err(io::Error::other)?;
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
            };
            (meta, data)
        };
        write_snapshot(self.db.clone(), &meta, data.clone()).await?;
        Ok(Snapshot {
            meta,
            snapshot: SnapshotData::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let applied = self
            .shared
            .applied
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let mut last_index = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = {
                let mut applied = self.shared.write();
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Nothing,
                    EntryPayload::Normal(command) => {
                        let at = LogPosition {
                            index: entry.log_id.index,
                            term: entry.log_id.leader_id.term,
                        };
                        let mut applying = Entry::new(at, command.at_ms());
                        let response = applied.state.apply_entry(&mut applying, command);
                        applied.fresh_tasks.push(at.index, applying.now_pending);
                        response
                    }
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Response::Nothing
                    }
                };
                last_index = Some(entry.log_id.index);
                applied.last_applied = Some(entry.log_id);
                response
            };
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        if let Some(index) = last_index {
            self.shared.changes.send_replace(index);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Self {
            db: self.db.clone(),
            shared: self.shared.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> io::Result<()> {
        let data = snapshot.into_inner();
        let state: ClusterState = serde_json::from_slice(&data).map_err(io::Error::other)?;
        // Persist first: if we crash after, the restart starts from here.
        write_snapshot(self.db.clone(), meta, data).await?;
        let index = {
            let mut applied = self.shared.write();
            applied.state = state;
            let index = meta.last_log_id.as_ref().map_or(0, |log_id| log_id.index);
            applied.fresh_tasks.forget_through(index);
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            applied
                .last_applied
                .as_ref()
                .map_or(0, |log_id| log_id.index)
        };
        self.shared.changes.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        Ok(read_snapshot(self.db.clone())
            .await?
            .map(|(meta, data)| Snapshot {
                meta,
                snapshot: SnapshotData::new(data),
            }))
    }
}
