//! The registry of live agent sessions on this node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use levee_common::ids::{AgentId, TaskId};
use levee_common::pb::ControllerMessage;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// The sending half of an agent's stream.
pub type Outbound = mpsc::Sender<Result<ControllerMessage, Status>>;

/// Live sessions by agent. A newer session of the same agent replaces the
/// older one.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Mutex<Inner>>,
    /// Bumped on every session added or removed, so jobs wait on change.
    changes: watch::Sender<u64>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            changes: watch::Sender::new(0),
        }
    }
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
    /// The session should be sent every pending task of its agent: it is
    /// new, its stream was full, or a new leadership term began.
    wants_all: bool,
}

/// What became of tasks handed to [`Sessions::deliver`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub sent: Vec<TaskId>,
    /// The agent's stream was full: the rest wait for its next full send.
    pub full: bool,
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
                wants_all: true,
            };
            if let Some(previous) = inner.by_agent.insert(agent_id.clone(), session) {
                previous.cancel.cancel();
            }
            session_id
        };
        self.changes.send_modify(|generation| *generation += 1);
        SessionGuard {
            sessions: self.clone(),
            agent_id,
            session_id,
        }
    }

    /// Marks a session attempt: whenever the returned guard is dropped
    /// (registered or not), watchers are woken, so an agent whose hello
    /// committed without a session is looked at again.
    pub fn attempt(&self) -> SessionAttempt {
        SessionAttempt {
            changes: self.changes.clone(),
        }
    }

    pub fn connected(&self) -> Vec<AgentId> {
        let mut agents: Vec<AgentId> = self.lock().by_agent.keys().cloned().collect();
        agents.sort();
        agents
    }

    pub fn is_connected(&self, agent_id: &AgentId) -> bool {
        self.lock().by_agent.contains_key(agent_id)
    }

    /// A receiver that wakes whenever a session is added or removed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Asks for every pending task to be sent again to every session
    /// (those not sent on it yet).
    pub fn want_all_everywhere(&self) {
        for session in self.lock().by_agent.values_mut() {
            session.wants_all = true;
        }
    }

    /// The agents whose sessions want every pending task, clearing the
    /// mark.
    pub fn take_wanting_all(&self) -> Vec<AgentId> {
        let mut inner = self.lock();
        inner
            .by_agent
            .iter_mut()
            .filter_map(|(agent_id, session)| {
                std::mem::take(&mut session.wants_all).then(|| agent_id.clone())
            })
            .collect()
    }

    /// Sends `messages` (task id and message, in order) on `agent_id`'s
    /// session, skipping tasks already sent on it, without waiting: a full
    /// stream stops the delivery and marks the session for a full send.
    pub fn deliver(
        &self,
        agent_id: &AgentId,
        messages: impl IntoIterator<Item = (TaskId, ControllerMessage)>,
    ) -> Delivery {
        let mut inner = self.lock();
        let Some(session) = inner.by_agent.get_mut(agent_id) else {
            return Delivery::default();
        };
        let mut delivery = Delivery::default();
        for (task_id, message) in messages {
            if session.sent.contains(&task_id) {
                continue;
            }
            match session.outbound.try_send(Ok(message)) {
                Ok(()) => {
                    session.sent.insert(task_id.clone());
                    delivery.sent.push(task_id);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    session.wants_all = true;
                    delivery.full = true;
                    break;
                }
                // The session is ending; its guard removes it.
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        delivery
    }

    /// Ends every session: their streams close and agents reconnect
    /// (to the new leader, when leadership moved).
    pub fn close_all(&self) {
        for (_, session) in self.lock().by_agent.drain() {
            session.cancel.cancel();
        }
        self.changes.send_modify(|generation| *generation += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section here is a few map operations that cannot
        // panic halfway, so a poisoned lock still holds a consistent map.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Wakes session watchers when dropped: see [`Sessions::attempt`].
pub struct SessionAttempt {
    changes: watch::Sender<u64>,
}

impl Drop for SessionAttempt {
    fn drop(&mut self) {
        self.changes.send_modify(|generation| *generation += 1);
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
        self.sessions
            .changes
            .send_modify(|generation| *generation += 1);
    }
}

#[cfg(test)]
mod tests {
    use levee_common::pb::{self, controller_message};

    use super::*;

    fn message(n: u32) -> (TaskId, ControllerMessage) {
        let task = pb::Task {
            task_id: format!("t{n}"),
            ..Default::default()
        };
        let message = ControllerMessage {
            body: Some(controller_message::Body::Task(task)),
        };
        (TaskId::new(format!("t{n}")), message)
    }

    #[test]
    fn a_full_stream_stops_the_delivery_and_asks_for_a_full_send_later() {
        let sessions = Sessions::default();
        let (outbound, mut inbound) = mpsc::channel(2);
        let _guard = sessions.register("a1".into(), outbound, CancellationToken::new());
        assert_eq!(
            sessions.take_wanting_all(),
            [AgentId::from("a1")],
            "a new session"
        );
        assert!(
            sessions.take_wanting_all().is_empty(),
            "taking clears the mark"
        );

        let first = sessions.deliver(&"a1".into(), (1..=3).map(message));
        assert_eq!(first.sent, [TaskId::new("t1"), TaskId::new("t2")]);
        assert!(first.full);
        assert_eq!(sessions.take_wanting_all(), [AgentId::from("a1")]);

        // Room again: what was sent is skipped, the rest goes.
        inbound.try_recv().unwrap().unwrap();
        inbound.try_recv().unwrap().unwrap();
        let second = sessions.deliver(&"a1".into(), (1..=3).map(message));
        assert_eq!(second.sent, [TaskId::new("t3")]);
        assert!(!second.full);
    }

    #[test]
    fn a_session_attempt_and_a_dropped_session_wake_watchers() {
        let sessions = Sessions::default();
        let mut changes = sessions.subscribe();
        drop(sessions.attempt());
        assert!(changes.has_changed().unwrap(), "an attempt that ends");
        changes.mark_unchanged();
        let (outbound, _inbound) = mpsc::channel(1);
        let guard = sessions.register("a1".into(), outbound, CancellationToken::new());
        changes.mark_unchanged();
        drop(guard);
        assert!(changes.has_changed().unwrap(), "a session that ends");
        assert!(!sessions.is_connected(&"a1".into()));
    }
}
