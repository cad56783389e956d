//! The leader's timer clock: when a `Timer`'s scheduled time comes, it
//! proposes `TimerFired`; the state raises `timer.fired` once per
//! scheduled time, whoever proposes it and however often.
//!
//! A timer seen for the first time fires from then on, not for its past
//! times; after an outage only the latest missed time fires. The job
//! sleeps until the next scheduled time, waking early when the specs or
//! the timers' record change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::sleep_until_wall;
use crate::clock::now_ms;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;
use crate::state::command as cmd;
use crate::state::command::Command;

#[derive(Clone)]
pub struct TimerClock {
    pub state: SharedState,
    pub proposer: Proposer,
    /// When this node first saw each timer that has never fired, kept
    /// across its terms, so a time missed while it did not lead still
    /// fires when it leads again.
    pub first_seen: Arc<Mutex<HashMap<String, i64>>>,
}

impl TimerClock {
    pub async fn lead(self, _term: u64, stepped_down: CancellationToken) {
        let mut applied = self.state.subscribe();
        loop {
            let now = now_ms();
            let (due, next) = {
                let mut first_seen = self
                    .first_seen
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                self.state.read(|state| {
                    let mut due = Vec::new();
                    let mut next: Option<i64> = None;
                    for timer in state.desired.specs.timers.values() {
                        let after = match state.rule_book.timers_fired.get(&timer.name) {
                            Some(last) => *last,
                            None => *first_seen.entry(timer.name.clone()).or_insert(now),
                        };
                        if let Some(scheduled) = timer.due(after, now) {
                            due.push((timer.name.clone(), scheduled));
                        }
                        if let Some(at) = timer.next_after(now) {
                            next = Some(next.map_or(at, |next| next.min(at)));
                        }
                    }
                    (due, next)
                })
            };
            let mut next = next;
            for (timer, scheduled_ms) in due {
                info!(%timer, scheduled_ms, "timer due");
                let command = Command::TimerFired(cmd::TimerFired {
                    timer: timer.clone(),
                    scheduled_ms,
                    at_ms: now,
                });
                if let Err(err) = self.proposer.propose(command).await {
                    warn!(%timer, error = %err, "could not fire a timer");
                    // Try again shortly rather than at the next schedule.
                    next = Some(now_ms() + 250);
                }
            }
            tokio::select! {
                () = stepped_down.cancelled() => break,
                _ = applied.changed() => {}
                () = sleep_until_wall(next) => {}
            }
        }
    }
}
