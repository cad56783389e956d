//! Tasks finished by this agent process, by outcome, for `/metrics`.
//! Counted in memory: they start at zero when the agent starts.

use std::sync::atomic::{AtomicU64, Ordering};

use levee_common::pb;

/// The running counts, shared by every clone of the applier.
#[derive(Debug, Default)]
pub(super) struct TaskCounters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
}

/// The counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskTotals {
    pub succeeded: u64,
    pub failed: u64,
    pub refused: u64,
}

impl TaskCounters {
    /// Counts one task whose outcome was just recorded, by its state.
    pub(super) fn record(&self, state: i32) {
        let counter = match pb::TaskState::try_from(state) {
            Ok(pb::TaskState::Succeeded) => &self.succeeded,
            Ok(pb::TaskState::Refused) => &self.refused,
            // Every finished outcome is one of the three; anything else
            // would be a bug, and counts as not succeeded.
            _ => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn totals(&self) -> TaskTotals {
        TaskTotals {
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_own_count() {
        let counters = TaskCounters::default();
        for state in [
            pb::TaskState::Succeeded,
            pb::TaskState::Succeeded,
            pb::TaskState::Failed,
            pb::TaskState::Refused,
        ] {
            counters.record(state as i32);
        }
        assert_eq!(
            counters.totals(),
            TaskTotals {
                succeeded: 2,
                failed: 1,
                refused: 1
            }
        );
    }
}
