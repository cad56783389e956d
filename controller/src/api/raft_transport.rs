//! The receiving end of the Raft transport (the sending end is
//! `raft::network`). Mounted behind the controller role check: agent and
//! operator certificates never reach it.

use std::sync::Arc;

use levee_common::pb::raft_transport_server::RaftTransport;
use levee_common::pb::{self, RaftPayload};
use openraft::Snapshot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::error::ApiError;
use crate::raft::membership::Membership;
use crate::raft::network::SnapshotHeader;
use crate::raft::proposer::Proposer;
use crate::raft::{LeveeRaft, SnapshotData};
use crate::sources::sink::{self, Forwarded, Origin};

pub struct RaftService {
    pub node_id: u64,
    pub advertise: String,
    pub raft: LeveeRaft,
    pub proposer: Proposer,
    pub membership: Arc<Membership>,
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

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request.get_ref())?;
        encode(self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request.get_ref())?;
        encode(self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let payload = request.into_inner();
        let SnapshotHeader { vote, meta } = decode(&payload)?;
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotData::new(payload.data),
        };
        encode(self.raft.install_full_snapshot(vote, snapshot).await)
    }

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

    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let request = request.into_inner();
        self.membership
            .join(request.node_id, &request.advertise)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::JoinResponse {
            leader_id: self.node_id,
        }))
    }

    async fn record_inbound(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let Forwarded {
            source,
            events,
            names_hosts,
        } = decode(request.get_ref())?;
        let origin = Origin {
            source,
            names_hosts,
        };
        // Forwarded once only: a node that is not the leader either says
        // so instead of passing the events on again.
        encode(sink::commit(&self.proposer, &origin, events).await)
    }
}
