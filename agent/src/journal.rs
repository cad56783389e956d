//! The task journal: which tasks this agent started and finished, the
//! highest term it has seen, the desired state it was last given, which
//! commands without guards ran for it, and which controllers it trusts.
//!
//! It is what makes tasks idempotent across reconnects and restarts: a task
//! id is applied at most once, and a task from an older term than one
//! already seen is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use levee_common::resource::{CommandResource, Resource};
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::store::{COMMANDS_RAN, CONTROLLERS, DESIRED, JOURNAL, META, StoreError};
use crate::task::TaskOutcome;
use crate::wire::{decode_outcome, encode_outcome};

const HIGHEST_TERM_KEY: &str = "highest_term";
/// Marks a task started but not finished (a crash happened in between).
const STARTED: &[u8] = b"";

/// What the journal knows of a task id.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalEntry {
    Started,
    Finished(TaskOutcome),
}

/// How finishing a task changes a service's desired state.
#[derive(Debug, Clone)]
pub enum DesiredChange {
    /// The task was refused (nothing was applied), or was a run task (a
    /// command, which is no desired state): what was desired before still
    /// is.
    Keep,
    /// The task was applied, wholly or in part: these are now the
    /// service's resources, what drift, prune and remove work from.
    Set(String, Vec<Resource>),
    /// The service was taken off this host: nothing to converge on restart.
    Remove(String),
}

/// Commands without guards that ran, by name.
type Ran = BTreeMap<String, CommandResource>;

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

    /// The controllers' certificate names the last welcome listed; empty
    /// before the first.
    pub fn trusted_controllers(&self) -> Result<BTreeSet<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CONTROLLERS)?;
        let mut names = BTreeSet::new();
        for entry in table.iter()? {
            names.insert(entry?.0.value().to_owned());
        }
        Ok(names)
    }

    /// Replaces the trusted controllers' names with `names`.
    pub fn trust_controllers(&self, names: &BTreeSet<String>) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(CONTROLLERS)?;
            table.retain(|_, ()| false)?;
            for name in names {
                table.insert(name.as_str(), ())?;
            }
        }
        txn.commit()?;
        Ok(())
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
        Ok(Some(JournalEntry::Finished(decode_outcome(value.value())?)))
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
        outcome: &TaskOutcome,
        desired: DesiredChange,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOURNAL)?
            .insert(task_id, encode_outcome(outcome).as_slice())?;
        match desired {
            DesiredChange::Keep => {}
            DesiredChange::Set(service, resources) => {
                let bytes = serde_json::to_vec(&resources)?;
                txn.open_table(DESIRED)?
                    .insert(service.as_str(), bytes.as_slice())?;
                // A command the service no longer lists is new if it comes
                // back.
                let listed: BTreeSet<&str> = resources
                    .iter()
                    .filter_map(|resource| match resource {
                        Resource::Command(command) => Some(command.name.as_str()),
                        _ => None,
                    })
                    .collect();
                let mut table = txn.open_table(COMMANDS_RAN)?;
                let mut ran = read_ran(&table, &service)?;
                let before = ran.len();
                ran.retain(|name, _| listed.contains(name.as_str()));
                if ran.len() != before {
                    write_ran(&mut table, &service, &ran)?;
                }
            }
            DesiredChange::Remove(service) => {
                txn.open_table(DESIRED)?.remove(service.as_str())?;
                txn.open_table(COMMANDS_RAN)?.remove(service.as_str())?;
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

    /// The version of command `name` of `service` that last ran, if it is
    /// a command without guards that ran.
    pub fn ran_command(
        &self,
        service: &str,
        name: &str,
    ) -> Result<Option<CommandResource>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(COMMANDS_RAN)?;
        Ok(read_ran(&table, service)?.remove(name))
    }

    /// Records that `command`, which has no guards, ran to success for
    /// `service`. Committed at once, so a task interrupted after it does
    /// not run it again when it is resent.
    pub fn record_ran(&self, service: &str, command: &CommandResource) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(COMMANDS_RAN)?;
            let mut ran = read_ran(&table, service)?;
            ran.insert(command.name.clone(), command.clone());
            write_ran(&mut table, service, &ran)?;
        }
        txn.commit()?;
        Ok(())
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

fn read_ran(
    table: &impl redb::ReadableTable<&'static str, &'static [u8]>,
    service: &str,
) -> Result<Ran, StoreError> {
    match table.get(service)? {
        Some(bytes) => Ok(serde_json::from_slice(bytes.value())?),
        None => Ok(Ran::new()),
    }
}

fn write_ran(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    service: &str,
    ran: &Ran,
) -> Result<(), StoreError> {
    if ran.is_empty() {
        table.remove(service)?;
    } else {
        table.insert(service, serde_json::to_vec(ran)?.as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskState;

    fn outcome(task_id: &str, term: u64) -> TaskOutcome {
        TaskOutcome {
            task_id: task_id.into(),
            term,
            state: TaskState::Succeeded,
            outcomes: Vec::new(),
            error: String::new(),
            finished_unix_ms: 0,
        }
    }

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
        let update = outcome("t1", 3);
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

    #[test]
    fn commands_that_ran_are_kept_while_their_service_lists_them() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(crate::store::open(&dir.path().join("a.redb")).unwrap());
        let command = |name: &str| CommandResource {
            name: name.into(),
            argv: vec!["/bin/true".into()],
            env: BTreeMap::new(),
            working_dir: None,
            creates: None,
            unless: None,
            timeout_ms: 1_000,
        };
        let update = outcome("", 0);
        assert_eq!(journal.ran_command("web", "setup").unwrap(), None);
        journal.record_ran("web", &command("setup")).unwrap();
        journal.record_ran("web", &command("seed")).unwrap();
        assert_eq!(
            journal.ran_command("web", "setup").unwrap(),
            Some(command("setup"))
        );
        assert_eq!(journal.ran_command("api", "setup").unwrap(), None);

        // Refused: nothing changes. Set: only what is still listed stays.
        journal.finish("t1", &update, DesiredChange::Keep).unwrap();
        assert!(journal.ran_command("web", "seed").unwrap().is_some());
        let listed = vec![Resource::Command(command("setup"))];
        journal
            .finish("t2", &update, DesiredChange::Set("web".into(), listed))
            .unwrap();
        assert!(journal.ran_command("web", "setup").unwrap().is_some());
        assert_eq!(journal.ran_command("web", "seed").unwrap(), None);
        journal
            .finish("t3", &update, DesiredChange::Remove("web".into()))
            .unwrap();
        assert_eq!(journal.ran_command("web", "setup").unwrap(), None);
    }

    #[test]
    fn the_trusted_controllers_are_replaced_as_a_whole_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        let journal = Journal::new(crate::store::open(&path).unwrap());
        assert!(journal.trusted_controllers().unwrap().is_empty());
        let names = |list: &[&str]| list.iter().map(|name| name.to_string()).collect();
        journal
            .trust_controllers(&names(&["c1", "c2", "c3"]))
            .unwrap();
        journal.trust_controllers(&names(&["c2", "c4"])).unwrap();
        drop(journal);
        let reopened = Journal::new(crate::store::open(&path).unwrap());
        assert_eq!(
            reopened.trusted_controllers().unwrap(),
            names(&["c2", "c4"])
        );
    }
}
