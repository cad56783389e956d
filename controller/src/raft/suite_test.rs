//! openraft's storage conformance suite, run against the real redb store.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

use super::TypeConfig;
use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::store;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = store::open(&dir.path().join("levee.redb")).expect("open store");
        let state_machine = StateMachine::open(db.clone())
            .await
            .expect("open state machine");
        Ok((dir, LogStore::new(db), state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_passes_the_openraft_storage_suite() {
    Suite::test_all(RedbBuilder).await.expect("storage suite");
}
