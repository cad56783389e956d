//! The leader's timer clock: when a `Timer`'s scheduled time comes, it
//! proposes `TimerFired`; the state raises `timer.fired` once per
//! scheduled time, whoever proposes it and however often.
//!
//! A timer seen for the first time fires from then on, not for its past
//! times; after an outage only the latest missed time fires.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::now_ms;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;
use crate::state::command::Command;

/// How often the leader looks at the clock: the precision of timers.
const TICK: Duration = Duration::from_millis(250);

pub struct TimerClock {
    pub state: SharedState,
    pub proposer: Proposer,
}

impl TimerClock {
    pub async fn run(self, shutdown: CancellationToken) {
        // When this node first saw each timer that has never fired.
        let mut first_seen: HashMap<String, i64> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
            if self.proposer.leader_term().is_none() {
                continue;
            }
            let now = now_ms();
            let due: Vec<(String, i64)> = self.state.read(|state| {
                state
                    .specs
                    .timers
                    .values()
                    .filter_map(|timer| {
                        let after = match state.timers_fired.get(&timer.name) {
                            Some(last) => *last,
                            None => *first_seen.entry(timer.name.clone()).or_insert(now),
                        };
                        timer
                            .due(after, now)
                            .map(|scheduled| (timer.name.clone(), scheduled))
                    })
                    .collect()
            });
            for (timer, scheduled_ms) in due {
                info!(%timer, scheduled_ms, "timer due");
                let command = Command::TimerFired {
                    timer: timer.clone(),
                    scheduled_ms,
                    at_ms: now,
                };
                if let Err(err) = self.proposer.propose(command).await {
                    warn!(%timer, error = %err, "could not fire a timer");
                }
            }
        }
    }
}
