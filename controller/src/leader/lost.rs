//! The leader's watch on its agents: an agent with no session to the
//! leader for `lost_after` is declared lost through Raft, so its replicas
//! are placed elsewhere and `host.lost` reaches the rules.
//!
//! The clock here is the leader's own and never replicated: the decision
//! enters the log as a command. Each term starts every agent's timer
//! afresh, so agents get a full `lost_after` to find a new leader. The job
//! wakes when sessions come or go and at the earliest deadline.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use levee_common::ids::AgentId;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::sessions::Sessions;
use super::sleep_until;
use crate::clock::now_ms;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;
use crate::state::command as cmd;
use crate::state::command::Command;

/// How soon a proposal that failed is tried again.
const RETRY: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct LostMonitor {
    pub state: SharedState,
    pub sessions: Sessions,
    pub proposer: Proposer,
    pub lost_after: Duration,
}

impl LostMonitor {
    pub async fn lead(self, _term: u64, stepped_down: CancellationToken) {
        let mut sessions_changed = self.sessions.subscribe();
        // Since when each agent has had no session here, in this term.
        let mut silent_since: HashMap<AgentId, Instant> = HashMap::new();
        loop {
            let next = self.declare_overdue(&mut silent_since).await;
            tokio::select! {
                () = stepped_down.cancelled() => break,
                _ = sessions_changed.changed() => {}
                () = sleep_until(next) => {}
            }
        }
    }

    /// Declares every agent silent for `lost_after` lost; returns when the
    /// next one would be.
    async fn declare_overdue(
        &self,
        silent_since: &mut HashMap<AgentId, Instant>,
    ) -> Option<Instant> {
        let connected: HashSet<AgentId> = self.sessions.connected().into_iter().collect();
        let watched: HashMap<AgentId, i64> = self.state.read(|state| {
            state
                .fleet
                .agents
                .values()
                .filter(|agent| !agent.lost && !connected.contains(&agent.agent_id))
                .map(|agent| (agent.agent_id.clone(), agent.last_hello_ms))
                .collect()
        });
        silent_since.retain(|agent, _| watched.contains_key(agent));
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for (agent, last_hello_ms) in watched {
            let since = *silent_since.entry(agent.clone()).or_insert(now);
            let silent = now.duration_since(since);
            if silent < self.lost_after {
                let due = since + self.lost_after;
                next = Some(next.map_or(due, |next| next.min(due)));
                continue;
            }
            info!(agent_id = %agent, silent_ms = silent.as_millis() as u64, "declaring an agent lost");
            let command = Command::AgentLost(cmd::AgentLost {
                agent_id: agent.clone(),
                silent_ms: silent.as_millis() as u64,
                last_hello_ms,
                at_ms: now_ms(),
            });
            match self.proposer.propose(command).await {
                Ok(_) => {
                    silent_since.remove(&agent);
                }
                Err(err) => {
                    warn!(agent_id = %agent, error = %err, "could not declare an agent lost");
                    let retry = Instant::now() + RETRY;
                    next = Some(next.map_or(retry, |next| next.min(retry)));
                }
            }
        }
        next
    }
}
