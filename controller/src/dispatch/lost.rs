//! The leader's watch on its agents: an agent with no session to the
//! leader for `lost_after` is declared lost through Raft, so its replicas
//! are placed elsewhere and `host.lost` reaches the rules.
//!
//! The clock here is the leader's own and never replicated: the decision
//! enters the log as a command. A node that becomes leader starts every
//! agent's timer afresh, so agents get a full `lost_after` to find it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use levee_common::ids::AgentId;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::sessions::Sessions;
use crate::clock::now_ms;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;
use crate::state::command::Command;

pub struct LostMonitor {
    pub state: SharedState,
    pub sessions: Sessions,
    pub proposer: Proposer,
    pub lost_after: Duration,
}

impl LostMonitor {
    pub async fn run(self, shutdown: CancellationToken) {
        let tick = (self.lost_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        // Since when each agent has had no session here, while we lead.
        let mut silent_since: HashMap<AgentId, Instant> = HashMap::new();
        let mut led_in: Option<u64> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(tick) => {}
            }
            let term = self.proposer.leader_term();
            if term != led_in {
                silent_since.clear();
                led_in = term;
            }
            if term.is_none() {
                continue;
            }
            let connected: std::collections::HashSet<AgentId> =
                self.sessions.connected().into_iter().collect();
            let watched: HashMap<AgentId, i64> = self.state.read(|state| {
                state
                    .agents
                    .values()
                    .filter(|agent| !agent.lost)
                    .map(|agent| (agent.agent_id.clone(), agent.last_hello_ms))
                    .collect()
            });
            silent_since
                .retain(|agent, _| watched.contains_key(agent) && !connected.contains(agent));
            let now = Instant::now();
            let silent_agents = watched
                .into_iter()
                .filter(|(agent, _)| !connected.contains(agent));
            for (agent, last_hello_ms) in silent_agents {
                let since = *silent_since.entry(agent.clone()).or_insert(now);
                let silent = now.duration_since(since);
                if silent < self.lost_after {
                    continue;
                }
                info!(agent_id = %agent, silent_ms = silent.as_millis() as u64, "declaring an agent lost");
                let command = Command::AgentLost {
                    agent_id: agent.clone(),
                    silent_ms: silent.as_millis() as u64,
                    last_hello_ms,
                    at_ms: now_ms(),
                };
                match self.proposer.propose(command).await {
                    Ok(_) => {
                        silent_since.remove(&agent);
                    }
                    Err(err) => {
                        warn!(agent_id = %agent, error = %err, "could not declare an agent lost")
                    }
                }
            }
        }
    }
}
