//! This node's leadership as a watch: `Some(term)` while it leads, `None`
//! otherwise. Leader-only work waits on it instead of polling Raft.
//!
//! It follows openraft's server metrics, which change only with votes,
//! server states and membership, never with each log entry.
//!
//! The follower also rests Raft's ticker while this node is the only
//! member and leads: with no one to send heartbeats to and no one to
//! elect, the ticker (about a hundred wake-ups a second with a 50 ms
//! heartbeat) would be all an idle one-node cluster does. Any change of
//! membership or leadership turns it back on at once.

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::vote::RaftLeaderId;
use tokio::sync::watch;

use super::LeveeRaft;

/// A handle on this node's leadership; cheap to clone and to read.
#[derive(Clone)]
pub struct Leadership {
    receiver: watch::Receiver<Option<u64>>,
}

impl Leadership {
    /// Starts following `raft`'s leadership. The follower task ends when
    /// Raft stops or when every handle is dropped.
    pub fn follow(raft: &LeveeRaft) -> Self {
        let mut metrics = raft.server_metrics();
        let (sender, receiver) = watch::channel(leading_term(&metrics));
        let raft = raft.clone();
        tokio::spawn(async move {
            let mut resting = false;
            loop {
                let alone = leads_alone(&metrics);
                if alone != resting {
                    raft.runtime_config().tick(!alone);
                    resting = alone;
                }
                tokio::select! {
                    () = sender.closed() => break,
                    changed = metrics.changed() => {
                        if changed.is_err() {
                            // Raft stopped: this node leads no more.
                            sender.send_replace(None);
                            break;
                        }
                    }
                }
                let term = leading_term(&metrics);
                sender.send_if_modified(|current| {
                    let modified = *current != term;
                    *current = term;
                    modified
                });
            }
        });
        Self { receiver }
    }

    /// A leadership that follows `receiver`, for tests of leader jobs.
    #[cfg(test)]
    pub fn from_watch(receiver: watch::Receiver<Option<u64>>) -> Self {
        Self { receiver }
    }

    /// The term this node leads in, if it leads.
    pub fn term(&self) -> Option<u64> {
        *self.receiver.borrow()
    }

    /// A receiver that wakes on every change of leadership.
    pub fn subscribe(&self) -> watch::Receiver<Option<u64>> {
        self.receiver.clone()
    }
}

type ServerMetricsWatch = openraft::type_config::alias::WatchReceiverOf<
    super::TypeConfig,
    openraft::metrics::RaftServerMetrics<super::TypeConfig>,
>;

/// Whether this node leads a membership of itself alone, with no change of
/// membership under way.
fn leads_alone(metrics: &ServerMetricsWatch) -> bool {
    let metrics = metrics.borrow_watched();
    let membership = metrics.membership_config.membership();
    let only_me = membership.voter_ids().eq([metrics.id])
        && membership.learner_ids().next().is_none()
        && metrics.membership_config == metrics.committed_membership_config;
    metrics.state == ServerState::Leader && metrics.current_leader == Some(metrics.id) && only_me
}

fn leading_term(metrics: &ServerMetricsWatch) -> Option<u64> {
    let metrics = metrics.borrow_watched();
    let leads = metrics.state == ServerState::Leader && metrics.current_leader == Some(metrics.id);
    leads.then(|| metrics.vote.leader_id().term())
}
