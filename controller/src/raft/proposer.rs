//! Writing commands through Raft. A write returns only once the command is
//! committed on a majority and applied.

use openraft::async_runtime::WatchReceiver;
use thiserror::Error;

use super::leadership::Leadership;
use super::{LeveeRaft, LogId};
use crate::state::command::{Command, Proposal, Response};

#[derive(Debug, Error)]
pub enum ProposeError {
    /// This node is not the leader; `leader_addr` says where to go, when known.
    #[error("not the leader (leader: {})", leader_addr.as_deref().unwrap_or("unknown"))]
    NotLeader { leader_addr: Option<String> },
    /// Raft stopped or failed; the write's fate is unknown.
    #[error("raft is unavailable: {0}")]
    Unavailable(String),
    /// The state answered a command with another command's kind of reply:
    /// a defect, never the caller's fault.
    #[error("the state answered `{command}` with {answer}")]
    WrongReply { command: String, answer: String },
}

#[derive(Clone)]
pub struct Proposer {
    raft: LeveeRaft,
    leadership: Leadership,
}

impl Proposer {
    /// A proposer for `raft`; it follows `raft`'s leadership from now on
    /// (so it must be made inside the runtime).
    pub fn new(raft: LeveeRaft) -> Self {
        let leadership = Leadership::follow(&raft);
        Self { raft, leadership }
    }

    /// This node's leadership, as a watch.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    pub fn raft(&self) -> &LeveeRaft {
        &self.raft
    }

    pub async fn propose(&self, command: Command) -> Result<(LogId, Response), ProposeError> {
        match self.raft.client_write(command).await {
            Ok(written) => Ok((written.log_id, written.data)),
            Err(err) => match err.forward_to_leader() {
                Some(forward) => Err(ProposeError::NotLeader {
                    leader_addr: forward.leader_node.as_ref().map(|node| node.addr.clone()),
                }),
                None => Err(ProposeError::Unavailable(err.to_string())),
            },
        }
    }

    /// Proposes `proposal` and returns its own kind of reply: `Err(reason)`
    /// inside when the state refused it.
    pub async fn propose_for<P: Proposal>(
        &self,
        proposal: P,
    ) -> Result<(LogId, Result<P::Reply, String>), ProposeError> {
        let command: Command = proposal.into();
        let name = command.to_string();
        let (log_id, response) = self.propose(command).await?;
        let answer = format!("{response:?}");
        match P::reply(response) {
            Some(reply) => Ok((log_id, reply)),
            None => Err(ProposeError::WrongReply {
                command: name,
                answer,
            }),
        }
    }

    /// The leader's advertised address, when one is known.
    pub fn leader_addr(&self) -> Option<String> {
        let metrics = self.raft.server_metrics().borrow_watched().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|node| node.addr.clone())
    }

    /// The current term if this node leads, else `None`.
    pub fn leader_term(&self) -> Option<u64> {
        self.leadership.term()
    }
}
