//! The receiving end of the Raft transport. Mounted behind the controller
//! role check: agent and operator certificates never reach it.

use levee_common::pb::RaftPayload;
use levee_common::pb::raft_transport_server::RaftTransport;
use openraft::Snapshot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::network::SnapshotHeader;
use super::{LeveeRaft, SnapshotData};

pub struct RaftService {
    raft: LeveeRaft,
}

impl RaftService {
    pub fn new(raft: LeveeRaft) -> Self {
        Self { raft }
    }
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
}
