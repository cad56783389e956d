//! Sends pending tasks to connected agents while this node leads.

use std::time::Duration;

use std::collections::HashMap;

use levee_common::ids::{AgentId, TaskId};
use levee_common::pb::{self, ControllerMessage, controller_message};
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::sessions::Sessions;
use crate::engine::planner::Action;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;
use crate::state::records::TaskRecord;

/// How often the dispatcher looks again even without a change, to retry a
/// send that found an agent's stream full.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);

pub struct Dispatcher {
    pub state: SharedState,
    pub sessions: Sessions,
    pub proposer: Proposer,
}

impl Dispatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut applied = self.state.subscribe();
        let mut was_leader = false;
        loop {
            let leader_term = self.proposer.leader_term();
            if was_leader && leader_term.is_none() {
                // Leadership moved: our sessions now point at a follower.
                info!("lost leadership; closing agent sessions so agents follow the new leader");
                self.sessions.close_all();
            }
            was_leader = leader_term.is_some();
            if let Some(term) = leader_term {
                self.dispatch_pending(term);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = applied.changed() => {}
                _ = self.sessions.changed() => {}
                _ = tokio::time::sleep(RETRY_INTERVAL) => {}
            }
        }
    }

    fn dispatch_pending(&self, term: u64) {
        // Read the state first, then take the sessions lock: the two locks
        // are never held together, so no lock order can deadlock.
        let connected = self.sessions.connected();
        let mut pending: HashMap<AgentId, Vec<TaskRecord>> = self.state.read(|state| {
            connected
                .into_iter()
                .map(|agent_id| {
                    let tasks = state.pending_tasks_for(&agent_id).cloned().collect();
                    (agent_id, tasks)
                })
                .collect()
        });
        self.sessions.for_each(|agent_id, outbound, already_sent| {
            let tasks = pending.remove(agent_id).unwrap_or_default();
            let mut sent: Vec<TaskId> = Vec::new();
            for task in tasks.into_iter().filter(|task| !already_sent.contains(&task.task_id)) {
                let message = ControllerMessage { body: Some(controller_message::Body::Task(to_wire(&task, term))) };
                match outbound.try_send(Ok(message)) {
                    Ok(()) => {
                        debug!(task_id = %task.task_id, plan_id = %task.plan_id, %agent_id, term, "dispatched task");
                        sent.push(task.task_id);
                    }
                    // Full: retry on the next pass. Closed: the session is ending.
                    Err(TrySendError::Full(_) | TrySendError::Closed(_)) => break,
                }
            }
            sent
        });
    }
}

fn to_wire(task: &TaskRecord, term: u64) -> pb::Task {
    pb::Task {
        task_id: task.task_id.to_string(),
        term,
        plan_id: task.plan_id.to_string(),
        service: task.service.clone(),
        resources: task.resources.iter().map(pb::Resource::from).collect(),
        remove: task.action == Action::Remove,
        run: task.run.as_ref().map(|run| pb::RunCommand {
            argv: run.argv.clone(),
            env: run.env.clone().into_iter().collect(),
            timeout_ms: run.timeout_ms,
        }),
    }
}
