//! The work only the leader does. Each job runs under [`run_while_leader`]:
//! started when this node becomes leader, cancelled when it stops leading
//! (or shuts down), and woken by what it waits for (leadership, applied
//! entries, sessions, its own deadlines), never by polling.
//!
//! - [`sessions`]: the agents connected to this node, each with the sender
//!   half of its stream.
//! - [`dispatcher`]: sends the tasks each applied entry made pending to
//!   their agents' sessions (every pending one on a new session or term),
//!   stamped with the leader's term.
//! - [`lost`]: declares agents lost after `[agents] lost_after_ms` without
//!   a session to the leader.
//! - [`timers`]: fires `Timer`s on their cron schedule.
//! - [`silence`]: reports rules whose signal went silent.
//! - [`notifier`]: delivers rules' webhook calls, at least once.
//! - [`provisioner`]: runs provisioners for the hosts rules asked for, at
//!   most once each.

pub mod dispatcher;
mod http_client;
pub mod lost;
pub mod notifier;
pub mod provisioner;
pub mod sessions;
pub mod silence;
pub mod timers;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

use crate::raft::leadership::Leadership;

/// Runs `job(term, stepped_down)` each time this node becomes leader, until
/// `shutdown`. `stepped_down` is cancelled when the node stops leading that
/// term (or shuts down); the job must then return promptly, and the next
/// term starts it afresh, with no state carried over.
pub async fn run_while_leader<Job, Run>(
    name: &'static str,
    leadership: Leadership,
    shutdown: CancellationToken,
    mut job: Job,
) where
    Job: FnMut(u64, CancellationToken) -> Run,
    Run: Future<Output = ()>,
{
    let mut watch = leadership.subscribe();
    loop {
        let term = loop {
            if let Some(term) = *watch.borrow_and_update() {
                break term;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = watch.changed() => if changed.is_err() { return },
            }
        };
        let stepped_down = shutdown.child_token();
        let span = info_span!("leader_job", job = name, term);
        debug!(parent: &span, "leader job starting");
        let run = job(term, stepped_down.clone()).instrument(span.clone());
        tokio::pin!(run);
        let mut finished = false;
        while !finished {
            tokio::select! {
                () = &mut run => finished = true,
                changed = watch.changed() => {
                    if changed.is_err() {
                        // Raft is gone: stop this job and the loop.
                        stepped_down.cancel();
                        run.as_mut().await;
                        return;
                    }
                    if *watch.borrow_and_update() != Some(term) {
                        stepped_down.cancel();
                    }
                }
                () = shutdown.cancelled() => stepped_down.cancel(),
            }
            if stepped_down.is_cancelled() && !finished {
                run.as_mut().await;
                finished = true;
            }
        }
        debug!(parent: &span, "leader job ended");
        if shutdown.is_cancelled() {
            return;
        }
        if !stepped_down.is_cancelled() {
            // The job ended by itself while still leading: wait for the
            // next term rather than start it again at once.
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = watch.wait_for(|now| *now != Some(term)) => {}
            }
        }
    }
}

/// Sleeps until `deadline`; forever when there is none.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The longest a job sleeps towards a wall-clock deadline before it reads
/// the clock again, so a clock stepped by hand is noticed within a minute.
const MAX_WALL_SLEEP: Duration = Duration::from_secs(60);

/// Sleeps until the wall-clock time `deadline_ms` (or at most
/// [`MAX_WALL_SLEEP`]); forever when there is none.
pub(crate) async fn sleep_until_wall(deadline_ms: Option<i64>) {
    match deadline_ms {
        Some(deadline_ms) => {
            let wait = u64::try_from(deadline_ms - crate::clock::now_ms()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(wait).min(MAX_WALL_SLEEP)).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
