//! Cluster membership: initialising, adding and removing controller nodes.
//!
//! Changes are serialised (openraft supports one joint-consensus change at
//! a time), new nodes join as learners and become voters only once they
//! have caught up, and a removed node's id is recorded so it is never
//! reused: a recycled id could form two quorums. Each member is recorded
//! with its certificate name, and a name belongs to one node id.

use std::collections::{BTreeMap, BTreeSet};

use openraft::ChangeMembers;
use openraft::TryAsRef;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ForwardToLeader, RaftError};
use thiserror::Error;
use tokio::sync::Mutex;
use tracing::info;

use super::node::{ControllerNode, member_named};
use super::proposer::{ProposeError, Proposer};
use super::state_machine::SharedState;
use super::{LeveeRaft, TypeConfig};
use crate::clock::now_ms;
use crate::state::command as cmd;
use crate::state::command::Command;

#[derive(Debug, Error)]
pub enum MembershipError {
    #[error(transparent)]
    Propose(#[from] ProposeError),
    #[error(
        "node id {0} was removed from this cluster and may not rejoin; give the node a new id and an empty data directory"
    )]
    RemovedId(u64),
    #[error(
        "the controller named `{0}` was removed from this cluster and may not rejoin under any id; issue the host a certificate with a new name"
    )]
    RemovedName(String),
    #[error("node {node_id} is already a member at {existing}, not {requested}")]
    AddressConflict {
        node_id: u64,
        existing: String,
        requested: String,
    },
    #[error("controller `{name}` is already node {node_id}; one certificate name is one node")]
    NameTaken { name: String, node_id: u64 },
    #[error("node {node_id} is controller `{existing}`, not `{requested}`")]
    NameConflict {
        node_id: u64,
        existing: String,
        requested: String,
    },
    #[error("node {0} is not a member")]
    NotMember(u64),
    #[error("refusing to remove the last voter")]
    LastVoter,
    #[error("this node already belongs to a cluster")]
    AlreadyInitialized,
    #[error("membership change failed: {0}")]
    Failed(String),
}

/// The voters and learners after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
}

pub struct Membership {
    proposer: Proposer,
    state: SharedState,
    /// This node's id and record, for initialising a cluster.
    node_id: u64,
    own: ControllerNode,
    /// One change at a time.
    changing: Mutex<()>,
}

impl Membership {
    /// `own` carries this node's advertised address and the name its own
    /// certificate states.
    pub fn new(proposer: Proposer, state: SharedState, node_id: u64, own: ControllerNode) -> Self {
        Self {
            proposer,
            state,
            node_id,
            own,
            changing: Mutex::new(()),
        }
    }

    fn raft(&self) -> &LeveeRaft {
        self.proposer.raft()
    }

    /// Makes this pristine node a one-node cluster.
    pub async fn initialize(&self) -> Result<Members, MembershipError> {
        let node_id = self.node_id;
        let _guard = self.changing.lock().await;
        if self
            .raft()
            .is_initialized()
            .await
            .map_err(|err| MembershipError::Failed(err.to_string()))?
        {
            return Err(MembershipError::AlreadyInitialized);
        }
        let members = BTreeMap::from([(node_id, self.own.clone())]);
        self.raft()
            .initialize(members)
            .await
            .map_err(|err| MembershipError::Failed(err.to_string()))?;
        info!(node_id, "initialised a new cluster");
        Ok(self.members())
    }

    /// Adds `node_id` at `addr`, whose verified certificate is `name`: as
    /// a learner, then as a voter. Idempotent for a node that is already a
    /// voter at the same address under the same name; names a member an
    /// earlier release recorded without one.
    pub async fn join(
        &self,
        node_id: u64,
        addr: &str,
        name: &str,
    ) -> Result<Members, MembershipError> {
        let _guard = self.changing.lock().await;
        self.require_leader()?;
        // A new leader may not have applied everything committed yet; read
        // the removed ids only once it has.
        self.raft()
            .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
            .await
            .map_err(change_error)?;
        let (removed_id, removed_name) = self.state.read(|state| {
            (
                state.members.removed_nodes.contains(&node_id),
                state.members.removed_names.contains(name),
            )
        });
        if removed_id {
            return Err(MembershipError::RemovedId(node_id));
        }
        if removed_name {
            return Err(MembershipError::RemovedName(name.to_owned()));
        }
        let current = self
            .raft()
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        if let Some(holder) = member_named(current.membership(), name)
            && holder != node_id
        {
            return Err(MembershipError::NameTaken {
                name: name.to_owned(),
                node_id: holder,
            });
        }
        if let Some(node) = current.membership().get_node(&node_id) {
            if node.addr != addr {
                return Err(MembershipError::AddressConflict {
                    node_id,
                    existing: node.addr.clone(),
                    requested: addr.to_owned(),
                });
            }
            if !node.name.is_empty() && node.name != name {
                return Err(MembershipError::NameConflict {
                    node_id,
                    existing: node.name.clone(),
                    requested: name.to_owned(),
                });
            }
            if node.name.is_empty() {
                info!(node_id, %name, "naming a member recorded without its certificate name");
                let named = BTreeMap::from([(node_id, ControllerNode::new(addr, name))]);
                self.raft()
                    .change_membership(ChangeMembers::SetNodes(named), false)
                    .await
                    .map_err(change_error)?;
            }
            if current
                .membership()
                .voter_ids()
                .any(|voter| voter == node_id)
            {
                return Ok(self.members());
            }
        }
        info!(node_id, %addr, %name, "adding a learner; waiting for it to catch up");
        self.raft()
            .add_learner(node_id, ControllerNode::new(addr, name), true)
            .await
            .map_err(change_error)?;
        info!(node_id, "learner caught up; promoting it to voter");
        self.raft()
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
            .await
            .map_err(change_error)?;
        Ok(self.members())
    }

    /// Removes `node_id` from the cluster and records that its id is spent.
    pub async fn leave(&self, node_id: u64) -> Result<Members, MembershipError> {
        let _guard = self.changing.lock().await;
        self.require_leader()?;
        let current = self
            .raft()
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        let voters: BTreeSet<u64> = current.membership().voter_ids().collect();
        let Some(node) = current.membership().get_node(&node_id) else {
            return Err(MembershipError::NotMember(node_id));
        };
        let name = node.name.clone();
        if voters.len() == 1 && voters.contains(&node_id) {
            return Err(MembershipError::LastVoter);
        }
        self.proposer
            .propose(Command::NodeRemoved(cmd::NodeRemoved {
                node_id,
                name,
                at_ms: now_ms(),
            }))
            .await?;
        if voters.contains(&node_id) {
            self.raft()
                .change_membership(
                    ChangeMembers::RemoveVoters(BTreeSet::from([node_id])),
                    false,
                )
                .await
                .map_err(change_error)?;
        }
        self.raft()
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([node_id])), false)
            .await
            .map_err(change_error)?;
        info!(node_id, "node removed from the cluster");
        Ok(self.members())
    }

    pub fn members(&self) -> Members {
        let metrics = self.raft().metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners = membership
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| !voters.contains(id))
            .collect();
        Members { voters, learners }
    }

    fn require_leader(&self) -> Result<(), MembershipError> {
        if self.proposer.leader_term().is_some() {
            return Ok(());
        }
        Err(ProposeError::NotLeader {
            leader_addr: self.proposer.leader_addr(),
        }
        .into())
    }
}

/// A Raft API error as a membership error: not-leader with the leader's
/// address when openraft names one, a failure otherwise.
fn change_error<E>(err: RaftError<TypeConfig, E>) -> MembershipError
where
    E: TryAsRef<ForwardToLeader<TypeConfig>> + std::error::Error,
{
    match err.forward_to_leader() {
        Some(forward) => MembershipError::Propose(ProposeError::NotLeader {
            leader_addr: forward.leader_node.as_ref().map(|node| node.addr.clone()),
        }),
        None => MembershipError::Failed(err.to_string()),
    }
}
