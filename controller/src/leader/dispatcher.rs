//! Sends pending tasks to connected agents while this node leads.
//!
//! After each applied entry it sends just the tasks that entry made
//! pending (the state machine keeps them by index); a session that is new
//! or whose stream was full is sent every pending task of its agent instead,
//! as is every session already registered when a term starts (sessions
//! end with the term, so only those that registered as it began).
//! Nothing is rescanned at rest.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use levee_common::ids::{AgentId, TaskId};
use levee_common::pb::ControllerMessage;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::sessions::Sessions;
use super::sleep_until;
use crate::convert::task_message;
use crate::raft::fresh_tasks::Since;
use crate::raft::state_machine::SharedState;
use crate::state::ClusterState;
use crate::state::records::{TaskRecord, TaskState};

/// How long a session whose stream was full waits before it is tried again.
const RETRY_FULL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Dispatcher {
    pub state: SharedState,
    pub sessions: Sessions,
}

impl Dispatcher {
    /// Dispatches while this node leads `term`; on stepping down, closes
    /// every session, since they now point at a follower.
    pub async fn lead(self, term: u64, stepped_down: CancellationToken) {
        let mut applied = self.state.subscribe();
        let mut sessions_changed = self.sessions.subscribe();
        // A new term: every session gets every pending task not yet sent.
        self.sessions.want_all_everywhere();
        let mut cursor = self.state.applied_index();
        let mut retry_at: Option<Instant> = None;
        loop {
            let (since, read_to) = self.state.fresh_tasks_since(cursor);
            cursor = read_to;
            if since == Since::Rescan {
                self.sessions.want_all_everywhere();
            }
            let fresh = match since {
                Since::Tasks(tasks) => tasks,
                Since::Rescan => Vec::new(),
            };
            if self.dispatch(term, fresh) {
                retry_at.get_or_insert_with(|| Instant::now() + RETRY_FULL);
            }
            tokio::select! {
                () = stepped_down.cancelled() => break,
                _ = applied.changed() => {}
                _ = sessions_changed.changed() => {}
                () = sleep_until(retry_at) => retry_at = None,
            }
        }
        info!(
            term,
            "no longer leading; closing agent sessions so agents follow the new leader"
        );
        self.sessions.close_all();
    }

    /// Sends `fresh` tasks, and every pending task to sessions that want
    /// all; says whether some stream was full.
    fn dispatch(&self, term: u64, fresh: Vec<(AgentId, TaskId)>) -> bool {
        let wanting_all: HashSet<AgentId> = self.sessions.take_wanting_all().into_iter().collect();
        let fresh: Vec<(AgentId, TaskId)> = fresh
            .into_iter()
            .filter(|(agent_id, _)| {
                !wanting_all.contains(agent_id) && self.sessions.is_connected(agent_id)
            })
            .collect();
        if fresh.is_empty() && wanting_all.is_empty() {
            return false;
        }
        // Read the state first, then take the sessions lock: the two locks
        // are never held together, so no lock order can deadlock.
        let outgoing = self
            .state
            .read(|state| outgoing(state, term, &wanting_all, &fresh));
        let mut full = false;
        for (agent_id, messages) in outgoing {
            let delivery = self.sessions.deliver(&agent_id, messages);
            for task_id in &delivery.sent {
                debug!(%task_id, %agent_id, term, "dispatched task");
            }
            full |= delivery.full;
        }
        full
    }
}

/// The messages to send, per agent, oldest task first.
fn outgoing(
    state: &ClusterState,
    term: u64,
    wanting_all: &HashSet<AgentId>,
    fresh: &[(AgentId, TaskId)],
) -> BTreeMap<AgentId, Vec<(TaskId, ControllerMessage)>> {
    let mut outgoing: BTreeMap<AgentId, Vec<(TaskId, ControllerMessage)>> = BTreeMap::new();
    let mut add = |task: &TaskRecord| {
        outgoing
            .entry(task.agent_id.clone())
            .or_default()
            .push((task.task_id.clone(), task_message(task, term)));
    };
    for agent_id in wanting_all {
        state.pending_tasks_for(agent_id).for_each(&mut add);
    }
    // Still pending: a later command of the same entry may have
    // superseded it.
    fresh
        .iter()
        .filter_map(|(_, task_id)| state.work.tasks.get(task_id))
        .filter(|task| task.state == TaskState::Pending)
        .for_each(add);
    outgoing
}
