//! Tasks finished by this agent process, by outcome, for `/metrics`.
//! Counted in memory: they start at zero when the agent starts.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::task::TaskState;

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
    pub(super) fn record(&self, state: TaskState) {
        let counter = match state {
            TaskState::Succeeded => &self.succeeded,
            TaskState::Failed => &self.failed,
            TaskState::Refused => &self.refused,
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
            TaskState::Succeeded,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Refused,
        ] {
            counters.record(state);
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
