//! Tasks that became pending, by the log index of the entry that made
//! them so: what the leader's dispatcher sends, instead of rescanning every
//! task after every entry.
//!
//! Every node keeps them (any node may lead next), so they are bounded:
//! past [`KEPT`] the oldest are forgotten, and a reader that had not seen
//! them is told to rescan the state instead.

use std::collections::VecDeque;

use levee_common::ids::{AgentId, TaskId};

/// How many fresh tasks are kept for a dispatcher that falls behind.
pub const KEPT: usize = 65_536;

#[derive(Debug, Default)]
pub struct FreshTasks {
    tasks: VecDeque<(u64, AgentId, TaskId)>,
    /// The highest log index whose fresh tasks may have been forgotten.
    forgotten_through: u64,
}

/// What a reader gets for its cursor.
#[derive(Debug, PartialEq, Eq)]
pub enum Since {
    /// Every task that became pending after the cursor, in log order.
    Tasks(Vec<(AgentId, TaskId)>),
    /// Some were forgotten: read every pending task from the state.
    Rescan,
}

impl FreshTasks {
    /// Records the tasks entry `index` made pending.
    pub fn push(&mut self, index: u64, tasks: Vec<(AgentId, TaskId)>) {
        for (agent_id, task_id) in tasks {
            if self.tasks.len() == KEPT
                && let Some((dropped, _, _)) = self.tasks.pop_front()
            {
                self.forgotten_through = self.forgotten_through.max(dropped);
            }
            self.tasks.push_back((index, agent_id, task_id));
        }
    }

    /// Forgets everything up to `index` (a snapshot replaced the state).
    pub fn forget_through(&mut self, index: u64) {
        self.tasks.clear();
        self.forgotten_through = self.forgotten_through.max(index);
    }

    /// The tasks made pending by entries after `cursor`.
    pub fn since(&self, cursor: u64) -> Since {
        if self.forgotten_through > cursor {
            return Since::Rescan;
        }
        let start = self.tasks.partition_point(|(index, _, _)| *index <= cursor);
        Since::Tasks(
            self.tasks
                .range(start..)
                .map(|(_, agent_id, task_id)| (agent_id.clone(), task_id.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(n: usize) -> (AgentId, TaskId) {
        (AgentId::from("a1"), TaskId::from(format!("t{n}").as_str()))
    }

    #[test]
    fn a_reader_gets_what_came_after_its_cursor() {
        let mut fresh = FreshTasks::default();
        fresh.push(3, vec![task(1), task(2)]);
        fresh.push(5, vec![task(3)]);
        assert_eq!(
            fresh.since(0),
            Since::Tasks(vec![task(1), task(2), task(3)])
        );
        assert_eq!(fresh.since(3), Since::Tasks(vec![task(3)]));
        assert_eq!(fresh.since(5), Since::Tasks(vec![]));
    }

    #[test]
    fn a_reader_behind_what_was_forgotten_rescans() {
        let mut fresh = FreshTasks::default();
        for n in 0..KEPT {
            fresh.push(1 + n as u64, vec![task(n)]);
        }
        assert!(matches!(fresh.since(0), Since::Tasks(tasks) if tasks.len() == KEPT));
        fresh.push(KEPT as u64 + 1, vec![task(KEPT)]);
        assert_eq!(
            fresh.since(0),
            Since::Rescan,
            "entry 1's task was forgotten"
        );
        assert!(matches!(fresh.since(1), Since::Tasks(tasks) if tasks.len() == KEPT));
        fresh.forget_through(KEPT as u64 + 10);
        assert_eq!(fresh.since(KEPT as u64 + 1), Since::Rescan);
        assert_eq!(fresh.since(KEPT as u64 + 10), Since::Tasks(vec![]));
    }
}
