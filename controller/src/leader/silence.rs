//! The leader's watch on rule signals: a rule with `signal` whose events
//! stopped coming for its `silent_after_ms` is reported as `SignalSilent`.
//! The state acts once per silence (a repeated proposal is void). The job
//! sleeps until the earliest signal could go silent, waking early when an
//! entry moves a deadline.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::sleep_until_wall;
use crate::clock::now_ms;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;
use crate::state::command as cmd;
use crate::state::command::Command;

#[derive(Clone)]
pub struct SilenceWatch {
    pub state: SharedState,
    pub proposer: Proposer,
}

impl SilenceWatch {
    pub async fn lead(self, _term: u64, stepped_down: CancellationToken) {
        let mut applied = self.state.subscribe();
        loop {
            let now = now_ms();
            let (overdue, next) = self
                .state
                .read(|state| (state.overdue_signals(now), state.next_signal_deadline()));
            let reported = !overdue.is_empty();
            for (rule, last_signal_ms) in overdue {
                info!(%rule, silent_ms = now - last_signal_ms, "rule signal went silent");
                let command = Command::SignalSilent(cmd::SignalSilent {
                    rule: rule.clone(),
                    last_signal_ms,
                    at_ms: now,
                });
                if let Err(err) = self.proposer.propose(command).await {
                    warn!(%rule, error = %err, "could not report a silent signal");
                }
            }
            // A report that could not commit is due again at once: look
            // again after a short pause rather than spin.
            let next = if reported {
                next.map(|next| next.max(now_ms() + 250))
            } else {
                next
            };
            tokio::select! {
                () = stepped_down.cancelled() => break,
                _ = applied.changed() => {}
                () = sleep_until_wall(next) => {}
            }
        }
    }
}
