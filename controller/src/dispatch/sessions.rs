//! The registry of live agent sessions on this node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use levee_common::ids::{AgentId, TaskId};
use levee_common::pb::ControllerMessage;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// The sending half of an agent's stream.
pub type Outbound = mpsc::Sender<Result<ControllerMessage, Status>>;

/// Live sessions by agent. A newer session of the same agent replaces the
/// older one.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    next_session_id: u64,
    by_agent: HashMap<AgentId, Session>,
}

struct Session {
    session_id: u64,
    outbound: Outbound,
    /// Ends the session's reader task, which closes the stream.
    cancel: CancellationToken,
    /// Tasks already sent on this session; a new session starts empty, so
    /// a reconnect gets every pending task again.
    sent: HashSet<TaskId>,
}

/// Removes its session from the registry when dropped, unless a newer
/// session of the same agent replaced it.
pub struct SessionGuard {
    sessions: Sessions,
    agent_id: AgentId,
    session_id: u64,
}

impl Sessions {
    /// Registers a session; `cancel` ends it. A previous session of the
    /// same agent is ended.
    pub fn register(
        &self,
        agent_id: AgentId,
        outbound: Outbound,
        cancel: CancellationToken,
    ) -> SessionGuard {
        let session_id = {
            let mut inner = self.lock();
            inner.next_session_id += 1;
            let session_id = inner.next_session_id;
            let session = Session {
                session_id,
                outbound,
                cancel,
                sent: HashSet::new(),
            };
            if let Some(previous) = inner.by_agent.insert(agent_id.clone(), session) {
                previous.cancel.cancel();
            }
            session_id
        };
        self.changed.notify_one();
        SessionGuard {
            sessions: self.clone(),
            agent_id,
            session_id,
        }
    }

    pub fn connected(&self) -> Vec<AgentId> {
        let mut agents: Vec<AgentId> = self.lock().by_agent.keys().cloned().collect();
        agents.sort();
        agents
    }

    /// Waits until a session is added or removed.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Calls `send` for each session with the set of tasks it was already
    /// sent; `send` returns the tasks it sent now.
    pub fn for_each(
        &self,
        mut send: impl FnMut(&AgentId, &Outbound, &HashSet<TaskId>) -> Vec<TaskId>,
    ) {
        let mut inner = self.lock();
        for (agent_id, session) in inner.by_agent.iter_mut() {
            let sent_now = send(agent_id, &session.outbound, &session.sent);
            session.sent.extend(sent_now);
        }
    }

    /// Ends every session: their streams close and agents reconnect
    /// (to the new leader, when leadership moved).
    pub fn close_all(&self) {
        for (_, session) in self.lock().by_agent.drain() {
            session.cancel.cancel();
        }
        self.changed.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section here is a few map operations that cannot
        // panic halfway, so a poisoned lock still holds a consistent map.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut inner = self.sessions.lock();
        if inner
            .by_agent
            .get(&self.agent_id)
            .is_some_and(|session| session.session_id == self.session_id)
        {
            inner.by_agent.remove(&self.agent_id);
        }
        drop(inner);
        self.sessions.changed.notify_one();
    }
}
