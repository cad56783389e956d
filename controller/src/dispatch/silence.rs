//! The leader's watch on rule signals: a rule with `signal` whose events
//! stopped coming for its `silent_after_ms` is reported as `SignalSilent`.
//! The state acts once per silence (a repeated proposal is void).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::now_ms;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;
use crate::state::command::Command;

const TICK: Duration = Duration::from_millis(250);

pub struct SilenceWatch {
    pub state: SharedState,
    pub proposer: Proposer,
}

impl SilenceWatch {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
            if self.proposer.leader_term().is_none() {
                continue;
            }
            let now = now_ms();
            let overdue = self.state.read(|state| state.overdue_signals(now));
            for (rule, last_signal_ms) in overdue {
                info!(%rule, silent_ms = now - last_signal_ms, "rule signal went silent");
                let command = Command::SignalSilent {
                    rule: rule.clone(),
                    last_signal_ms,
                    at_ms: now,
                };
                if let Err(err) = self.proposer.propose(command).await {
                    warn!(%rule, error = %err, "could not report a silent signal");
                }
            }
        }
    }
}
