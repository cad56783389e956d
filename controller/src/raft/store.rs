//! The node's embedded store: one redb file holding the Raft log, the vote,
//! and the latest state-machine snapshot.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, TableDefinition};
use thiserror::Error;

/// Log entries by index, JSON-encoded.
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Small records: the vote, the committed and last purged log ids.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// The latest snapshot: its metadata and its data.
pub const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

pub const VOTE_KEY: &str = "vote";
pub const COMMITTED_KEY: &str = "committed";
pub const PURGED_KEY: &str = "last_purged";
pub const SNAPSHOT_META_KEY: &str = "meta";
pub const SNAPSHOT_DATA_KEY: &str = "data";

#[derive(Debug, Error)]
#[error("cannot open the store at {path}: {source}")]
pub struct StoreError {
    path: String,
    #[source]
    source: redb::Error,
}

/// Opens (or creates) the store file and makes sure every table exists,
/// so readers never meet a missing table.
pub fn open(path: &Path) -> Result<Arc<Database>, StoreError> {
    let error = |source: redb::Error| StoreError {
        path: path.display().to_string(),
        source,
    };
    let db = Database::create(path).map_err(|err| error(err.into()))?;
    let txn = db.begin_write().map_err(|err| error(err.into()))?;
    txn.open_table(LOG).map_err(|err| error(err.into()))?;
    txn.open_table(META).map_err(|err| error(err.into()))?;
    txn.open_table(SNAPSHOT).map_err(|err| error(err.into()))?;
    txn.commit().map_err(|err| error(err.into()))?;
    Ok(Arc::new(db))
}

/// redb's errors as the `io::Error` openraft's storage traits expect.
pub fn io_error(err: impl Into<redb::Error>) -> std::io::Error {
    std::io::Error::other(err.into())
}

/// Runs blocking store work off the async runtime.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, std::io::Error> + Send + 'static,
) -> Result<T, std::io::Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}
