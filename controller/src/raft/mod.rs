//! Consensus: openraft wired to a durable redb store and an mTLS gRPC
//! transport.
//!
//! - [`store`]: the one redb file per node and its tables.
//! - [`log_store`]: the Raft log and vote, fsynced before Raft is told.
//! - [`state_machine`]: applies committed commands to
//!   [`ClusterState`](crate::state::ClusterState) and
//!   keeps snapshots.
//! - [`fresh_tasks`]: the tasks recent entries made pending, for the
//!   leader's dispatcher.
//! - [`network`]: the sending end of the Raft transport (the receiving end
//!   is `api::raft_transport`).
//! - [`proposer`]: how the API writes a command and waits for it.
//! - [`leadership`]: this node's leadership as a watch.
//! - [`membership`]: init, join as learner then voter, leave.
//! - [`node`]: what the membership records of a controller (address and
//!   certificate name); [`admission`]: which certificates the transport
//!   serves.

pub mod admission;
pub mod fresh_tasks;
pub mod leadership;
pub mod log_store;
pub mod membership;
pub mod network;
pub mod node;
pub mod peer_name;
pub mod proposer;
pub mod state_machine;
pub mod store;

use std::io::Cursor;

use crate::state::command::{Command, Response};

openraft::declare_raft_types!(
    /// Levee's Raft types: commands in, responses out, nodes addressed by
    /// their advertised `host:port` and known by their certificate name.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = node::ControllerNode,
);

/// The snapshot payload: the serialized `ClusterState`.
pub type SnapshotData = Cursor<Vec<u8>>;

pub type LeveeRaft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A membership: voter configs and each node's record.
pub type ClusterMembership = openraft::Membership<u64, node::ControllerNode>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

#[cfg(test)]
mod suite_test;
