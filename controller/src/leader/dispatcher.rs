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
use levee_common::secret::SecretSource;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::sessions::Sessions;
use super::sleep_until;
use crate::convert::task_message;
use crate::raft::fresh_tasks::Since;
use crate::raft::state_machine::SharedState;
use crate::secrets::SecretsDir;
use crate::state::ClusterState;
use crate::state::records::{TaskRecord, TaskState};

/// How long a session whose stream was full waits before it is tried again.
const RETRY_FULL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Dispatcher {
    pub state: SharedState,
    pub sessions: Sessions,
    /// Where the values of secrets that tasks name are read.
    pub secrets: SecretsDir,
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
        // are never held together, so no lock order can deadlock. Secrets
        // are read from disk after the state lock is released.
        let tasks = self
            .state
            .read(|state| to_send(state, &wanting_all, &fresh));
        let outgoing = outgoing(tasks, term, &self.secrets);
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

/// The tasks to send: every pending task of the sessions that want all,
/// and the fresh ones still pending, oldest first per agent.
fn to_send(
    state: &ClusterState,
    wanting_all: &HashSet<AgentId>,
    fresh: &[(AgentId, TaskId)],
) -> Vec<TaskRecord> {
    let mut tasks: Vec<TaskRecord> = Vec::new();
    for agent_id in wanting_all {
        tasks.extend(state.pending_tasks_for(agent_id).cloned());
    }
    // Still pending: a later command of the same entry may have
    // superseded it.
    tasks.extend(
        fresh
            .iter()
            .filter_map(|(_, task_id)| state.work.tasks.get(task_id))
            .filter(|task| task.state == TaskState::Pending)
            .cloned(),
    );
    tasks
}

/// The messages to send, per agent, in the order of `tasks`.
fn outgoing(
    tasks: Vec<TaskRecord>,
    term: u64,
    secrets: &dyn SecretSource,
) -> BTreeMap<AgentId, Vec<(TaskId, ControllerMessage)>> {
    let mut outgoing: BTreeMap<AgentId, Vec<(TaskId, ControllerMessage)>> = BTreeMap::new();
    for task in tasks {
        match task_message(&task, term, secrets) {
            Ok(message) => outgoing
                .entry(task.agent_id.clone())
                .or_default()
                .push((task.task_id.clone(), message)),
            // Sent again with every full send (a new session, a new
            // leader), so fixing the secrets directory is enough.
            Err(err) => error!(
                task_id = %task.task_id,
                agent_id = %task.agent_id,
                error = %err,
                "cannot send a task: a secret it needs is missing on this controller"
            ),
        }
    }
    outgoing
}

#[cfg(test)]
mod tests {
    use levee_common::pb;

    use super::*;
    use crate::state::test_log::Log;

    const NO_SECRETS: SecretsDir = SecretsDir::none();

    /// A state with `agents` and a service placed on each of them.
    fn fleet(agents: &[&str]) -> ClusterState {
        let mut log = Log::new();
        for agent in agents {
            log.hello(agent, 1);
        }
        log.put_specs(&format!(
            "kind: Service\nname: web\nreplicas: {}\nprocess: {{ argv: [/bin/web] }}\n",
            agents.len()
        ));
        log.state
    }

    fn pending(state: &ClusterState) -> Vec<(AgentId, TaskId)> {
        state
            .work
            .tasks
            .values()
            .filter(|task| task.state == TaskState::Pending)
            .map(|task| (task.agent_id.clone(), task.task_id.clone()))
            .collect()
    }

    fn sent_to(
        outgoing: &BTreeMap<AgentId, Vec<(TaskId, ControllerMessage)>>,
    ) -> Vec<(String, String)> {
        outgoing
            .iter()
            .flat_map(|(agent, messages)| {
                messages
                    .iter()
                    .map(|(task_id, _)| (agent.to_string(), task_id.to_string()))
            })
            .collect()
    }

    #[test]
    fn fresh_tasks_still_pending_go_out_and_finished_ones_do_not() {
        let mut state = fleet(&["a1", "a2"]);
        let fresh = pending(&state);
        assert_eq!(fresh.len(), 2, "one task per agent");
        let all = outgoing(to_send(&state, &HashSet::new(), &fresh), 3, &NO_SECRETS);
        assert_eq!(sent_to(&all).len(), 2);
        // A later command of the same entry superseded one of them.
        let (_, superseded) = fresh[0].clone();
        state.work.tasks.get_mut(&superseded).unwrap().state = TaskState::Superseded;
        let left = sent_to(&outgoing(
            to_send(&state, &HashSet::new(), &fresh),
            3,
            &NO_SECRETS,
        ));
        assert_eq!(left, [(fresh[1].0.to_string(), fresh[1].1.to_string())]);
    }

    #[test]
    fn a_session_wanting_all_gets_every_pending_task_of_its_agent_only() {
        let state = fleet(&["a1", "a2", "a3"]);
        let wanting: HashSet<AgentId> = [AgentId::from("a2")].into();
        let sent = sent_to(&outgoing(to_send(&state, &wanting, &[]), 3, &NO_SECRETS));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "a2");
        // The term the task is stamped with is the leader's, not the
        // term that made it.
        let messages = outgoing(to_send(&state, &wanting, &[]), 9, &NO_SECRETS);
        let (_, message) = &messages[&AgentId::from("a2")][0];
        let Some(pb::controller_message::Body::Task(task)) = &message.body else {
            panic!("a task message: {message:?}");
        };
        assert_eq!(task.term, 9);
    }

    #[test]
    fn a_task_goes_out_with_its_secret_s_value_or_not_at_all() {
        let mut log = Log::new();
        log.hello("a1", 1);
        log.put_specs(
            "kind: Service\nname: db\nprocess:\n  argv: [/bin/db]\n  env: { PASSWORD: { secret: db-password } }\n",
        );
        let fresh = pending(&log.state);
        let tasks = to_send(&log.state, &HashSet::new(), &fresh);
        assert!(
            outgoing(tasks.clone(), 3, &NO_SECRETS).is_empty(),
            "a task whose secret is missing is not sent"
        );
        let secrets = levee_common::secret::InMemory(
            [("db-password".to_owned(), "hunter2".to_owned())].into(),
        );
        let messages = outgoing(tasks, 3, &secrets);
        let (_, message) = &messages[&AgentId::from("a1")][0];
        let Some(pb::controller_message::Body::Task(task)) = &message.body else {
            panic!("a task message: {message:?}");
        };
        let process = task
            .resources
            .iter()
            .find_map(|resource| match &resource.kind {
                Some(pb::resource::Kind::Process(process)) => Some(process),
                _ => None,
            })
            .expect("a process");
        assert_eq!(process.env["PASSWORD"], "hunter2");
        let stored = serde_json::to_string(&log.state).unwrap();
        assert!(!stored.contains("hunter2") && stored.contains("db-password"));
    }
}
