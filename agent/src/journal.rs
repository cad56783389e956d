//! The task journal: which tasks this agent started and finished, the
//! highest term it has seen, and the desired state it was last given.
//!
//! It is what makes tasks idempotent across reconnects and restarts: a task
//! id is applied at most once, and a task from an older term than one
//! already seen is refused.

use std::sync::Arc;

use levee_common::pb;
use levee_common::resource::Resource;
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::store::{DESIRED, JOURNAL, META, StoreError};

const HIGHEST_TERM_KEY: &str = "highest_term";
/// Marks a task started but not finished (a crash happened in between).
const STARTED: &[u8] = b"";

/// What the journal knows of a task id.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalEntry {
    Started,
    Finished(pb::TaskUpdate),
}

/// How finishing a task changes a service's desired state.
#[derive(Debug, Clone)]
pub enum DesiredChange {
    /// The task failed or was refused: what was desired before still is.
    Keep,
    /// The task succeeded: these are now the service's resources.
    Set(String, Vec<Resource>),
    /// The service was taken off this host: nothing to converge on restart.
    Remove(String),
}

#[derive(Clone)]
pub struct Journal {
    db: Arc<Database>,
}

impl Journal {
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    pub fn highest_term(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .begin_read()?
            .open_table(META)?
            .get(HIGHEST_TERM_KEY)?
            .map_or(0, |value| value.value()))
    }

    /// Records `term` if it is the highest seen. Returns false when `term`
    /// is older than one already seen: the sender is a deposed leader.
    pub fn observe_term(&self, term: u64) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let current = {
            let mut meta = txn.open_table(META)?;
            let current = meta.get(HIGHEST_TERM_KEY)?.map_or(0, |value| value.value());
            if term > current {
                meta.insert(HIGHEST_TERM_KEY, term)?;
            }
            current
        };
        txn.commit()?;
        Ok(term >= current)
    }

    pub fn get(&self, task_id: &str) -> Result<Option<JournalEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOURNAL)?;
        let Some(value) = table.get(task_id)? else {
            return Ok(None);
        };
        if value.value() == STARTED {
            return Ok(Some(JournalEntry::Started));
        }
        let update = pb::TaskUpdate::decode(value.value()).map_err(|err| {
            StoreError::Corrupt(serde_json::Error::io(std::io::Error::other(err)))
        })?;
        Ok(Some(JournalEntry::Finished(update)))
    }

    pub fn start(&self, task_id: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOURNAL)?.insert(task_id, STARTED)?;
        txn.commit()?;
        Ok(())
    }

    /// Records the outcome and the change to the service's desired state
    /// in one transaction.
    pub fn finish(
        &self,
        task_id: &str,
        update: &pb::TaskUpdate,
        desired: DesiredChange,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOURNAL)?
            .insert(task_id, update.encode_to_vec().as_slice())?;
        match desired {
            DesiredChange::Keep => {}
            DesiredChange::Set(service, resources) => {
                let bytes = serde_json::to_vec(&resources)?;
                txn.open_table(DESIRED)?
                    .insert(service.as_str(), bytes.as_slice())?;
            }
            DesiredChange::Remove(service) => {
                txn.open_table(DESIRED)?.remove(service.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// One service's last assigned resources, if it has any here.
    pub fn desired_of(&self, service: &str) -> Result<Option<Vec<Resource>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DESIRED)?;
        let Some(bytes) = table.get(service)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(bytes.value())?))
    }

    /// Every service's last assigned resources.
    pub fn desired(&self) -> Result<Vec<(String, Vec<Resource>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DESIRED)?;
        let mut services = Vec::new();
        for item in table.iter()? {
            let (service, bytes) = item?;
            services.push((
                service.value().to_owned(),
                serde_json::from_slice(bytes.value())?,
            ));
        }
        Ok(services)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_only_move_forward_and_tasks_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(crate::store::open(&dir.path().join("a.redb")).unwrap());
        assert!(journal.observe_term(3).unwrap());
        assert!(journal.observe_term(3).unwrap(), "the same term is fine");
        assert!(!journal.observe_term(2).unwrap(), "an older term is stale");
        assert_eq!(journal.highest_term().unwrap(), 3);

        assert_eq!(journal.get("t1").unwrap(), None);
        journal.start("t1").unwrap();
        assert_eq!(journal.get("t1").unwrap(), Some(JournalEntry::Started));
        let update = pb::TaskUpdate {
            task_id: "t1".into(),
            term: 3,
            state: pb::TaskState::Succeeded as i32,
            ..Default::default()
        };
        journal
            .finish("t1", &update, DesiredChange::Set("clock".into(), vec![]))
            .unwrap();
        assert_eq!(
            journal.get("t1").unwrap(),
            Some(JournalEntry::Finished(update.clone()))
        );
        assert_eq!(journal.desired().unwrap(), [("clock".to_string(), vec![])]);
        assert_eq!(journal.desired_of("clock").unwrap(), Some(vec![]));

        journal.finish("t2", &update, DesiredChange::Keep).unwrap();
        assert_eq!(journal.desired_of("clock").unwrap(), Some(vec![]));
        journal
            .finish("t3", &update, DesiredChange::Remove("clock".into()))
            .unwrap();
        assert_eq!(journal.desired_of("clock").unwrap(), None);
        assert!(journal.desired().unwrap().is_empty());
    }
}
