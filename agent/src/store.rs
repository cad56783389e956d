//! The agent's embedded store: one redb file with the outbox, the task
//! journal, the last assigned desired state, the one-shot commands that
//! ran and the controllers it trusts. Every write commits with
//! fsync before the agent acts on it or acknowledges it.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, TableDefinition};
use thiserror::Error;

/// Unacknowledged events by (boot epoch, sequence number).
pub const OUTBOX: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("outbox");
/// Counters: boot epoch, next sequence, highest term seen, dropped events.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Tasks by id: started, or finished with the update sent.
pub const JOURNAL: TableDefinition<&str, &[u8]> = TableDefinition::new("journal");
/// The last assigned resources of each service on this host.
pub const DESIRED: TableDefinition<&str, &[u8]> = TableDefinition::new("desired");
/// Per service, the commands without guards that ran, by name: such a
/// command runs again only when the task's version differs.
pub const COMMANDS_RAN: TableDefinition<&str, &[u8]> = TableDefinition::new("commands_ran");
/// The certificate names of the cluster's controllers, as the last
/// welcome listed them: the only controllers the agent accepts.
pub const CONTROLLERS: TableDefinition<&str, ()> = TableDefinition::new("controllers");
/// Process groups of running workloads, so a restarted agent can stop
/// what a crashed one left behind.
pub const WORKLOADS: TableDefinition<&str, u64> = TableDefinition::new("workloads");

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("agent store: {0}")]
    Db(#[from] redb::Error),
    #[error("agent store record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("agent store record is corrupt: {0}")]
    Outcome(#[from] crate::wire::WireError),
}

macro_rules! impl_from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(err: $error) -> Self {
                StoreError::Db(err.into())
            }
        }
    )*};
}

impl_from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Opens the store, creating every table.
pub fn open(path: &Path) -> Result<Arc<Database>, StoreError> {
    let db = Database::create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(OUTBOX)?;
    txn.open_table(META)?;
    txn.open_table(JOURNAL)?;
    txn.open_table(DESIRED)?;
    txn.open_table(COMMANDS_RAN)?;
    txn.open_table(WORKLOADS)?;
    txn.open_table(CONTROLLERS)?;
    txn.commit()?;
    Ok(Arc::new(db))
}
