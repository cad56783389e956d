//! The receiving end of the Raft transport (the sending end is
//! `raft::network`). Mounted behind the controller role check: agent and
//! operator certificates never reach it. Past it, a call is served only
//! for a member's certificate, and a Raft message only when its sender is
//! the node that certificate maps to (`raft::admission`); a refused call
//! never reaches openraft.

use std::collections::BTreeSet;
use std::sync::Arc;

use levee_common::identity::Identity;
use levee_common::pb::raft_transport_server::RaftTransport;
use levee_common::pb::{self, RaftPayload};
use levee_common::refusals::RefusalLog;
use openraft::Snapshot;
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::vote::RaftLeaderId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::auth::caller;
use super::error::ApiError;
use super::refusals::{RAFT, refuse};
use crate::raft::admission::{self, Refusal};
use crate::raft::membership::{Membership, MembershipError};
use crate::raft::network::SnapshotHeader;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;
use crate::raft::{LeveeRaft, SnapshotData, TypeConfig, Vote};
use crate::sources::sink::{self, Forwarded, Origin};

pub struct RaftService {
    pub node_id: u64,
    pub advertise: String,
    pub raft: LeveeRaft,
    pub proposer: Proposer,
    pub membership: Arc<Membership>,
    pub state: SharedState,
    /// Controller certificate names that may ask to join by themselves
    /// (a node started with `join`); `levee cluster join` needs none.
    pub join_allowed: BTreeSet<String>,
    pub refusals: Arc<RefusalLog>,
}

fn decode<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&payload.json)
        .map_err(|err| Status::invalid_argument(format!("malformed raft payload: {err}")))
}

/// Answers `Result<T, String>` as JSON, so the sender can tell a Raft
/// refusal from a transport failure.
fn encode<T: Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
) -> Result<Response<RaftPayload>, Status> {
    let result = result.map_err(|err| err.to_string());
    let json = serde_json::to_vec(&result)
        .map_err(|err| Status::internal(format!("cannot encode raft reply: {err}")))?;
    Ok(Response::new(RaftPayload {
        json,
        data: Vec::new(),
    }))
}

/// The node a Raft message says it comes from: the leader or candidate
/// its vote names.
fn sender(vote: &Vote) -> u64 {
    *vote.leader_id().node_id()
}

impl RaftService {
    /// Serves `caller` only as a current member, speaking for `claimed`
    /// when the message names a sender.
    fn admit(&self, caller: &Identity, claimed: Option<u64>) -> Result<(), Status> {
        let removed = |node_id| {
            self.state
                .read(|state| state.members.removed_nodes.contains(&node_id))
        };
        // Cloned out of the watch (it is an Arc inside), so the watch is
        // not held while the state is read.
        let membership = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        let decided = admission::admit(membership.membership(), removed, &caller.name, claimed);
        decided
            .map(drop)
            .map_err(|refusal: Refusal| self.refused(caller, refusal.reason(), refusal.to_string()))
    }

    /// Counts and logs a refusal; the status names the reason.
    fn refused(&self, caller: &Identity, reason: &'static str, message: String) -> Status {
        refuse(&self.refusals, &caller.to_string(), RAFT, reason, &message);
        ApiError::PermissionDenied(message).into()
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let caller = caller(&request)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        self.admit(&caller, Some(sender(&rpc.vote)))?;
        encode(self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let caller = caller(&request)?;
        let rpc: VoteRequest<TypeConfig> = decode(request.get_ref())?;
        self.admit(&caller, Some(sender(&rpc.vote)))?;
        encode(self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let caller = caller(&request)?;
        let payload = request.into_inner();
        let SnapshotHeader { vote, meta } = decode(&payload)?;
        self.admit(&caller, Some(sender(&vote)))?;
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotData::new(payload.data),
        };
        encode(self.raft.install_full_snapshot(vote, snapshot).await)
    }

    /// Open to any controller certificate: the leader asks a node that is
    /// not a member yet, before adding it.
    async fn node_info(
        &self,
        _request: Request<pb::NodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfoResponse>, Status> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|err| Status::unavailable(err.to_string()))?;
        Ok(Response::new(pb::NodeInfoResponse {
            node_id: self.node_id,
            advertise: self.advertise.clone(),
            initialized,
        }))
    }

    /// A node adds itself: only one the operator allowed (`join_allowed`),
    /// and only under its own certificate name.
    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let caller = caller(&request)?;
        if !self.join_allowed.contains(&caller.name) {
            return Err(self.refused(
                &caller,
                "join_not_allowed",
                format!(
                    "controller `{}` may not add itself: list its name in `raft.join_allowed` on the controllers, or add it with `levee cluster join <addr>`",
                    caller.name
                ),
            ));
        }
        let request = request.into_inner();
        match self
            .membership
            .join(request.node_id, &request.advertise, &caller.name)
            .await
        {
            Ok(_) => Ok(Response::new(pb::JoinResponse {
                leader_id: self.node_id,
            })),
            Err(removed @ (MembershipError::RemovedId(_) | MembershipError::RemovedName(_))) => {
                Err(self.refused(&caller, "removed", removed.to_string()))
            }
            Err(
                taken @ (MembershipError::NameTaken { .. } | MembershipError::NameConflict { .. }),
            ) => Err(self.refused(&caller, "name_taken", taken.to_string())),
            Err(other) => Err(ApiError::from(other).into()),
        }
    }

    /// Events a follower received from outside, for the leader to commit:
    /// only from a member, and only as a webhook or MQTT source.
    async fn record_inbound(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let caller = caller(&request)?;
        self.admit(&caller, None)?;
        let Forwarded {
            source,
            events,
            names_hosts,
        } = decode(request.get_ref())?;
        if let Err(refused) = sink::check_source(&source) {
            return Err(self.refused(&caller, "bad_source", refused.to_string()));
        }
        let origin = Origin {
            source,
            names_hosts,
        };
        // Forwarded once only: a node that is not the leader either says
        // so instead of passing the events on again.
        encode(sink::commit(&self.proposer, &origin, events).await)
    }
}
