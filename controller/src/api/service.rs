//! The Control service's parts that its method families share: the
//! service itself, linearizable reads, the one commit path, and reading
//! spec files from a request. The methods live in `control` (listings and
//! membership), `desired`, `automation` and `trial`.

use std::sync::Arc;

use levee_common::pb;
use levee_common::spec::SpecSet;
use openraft::ReadPolicy;
use tonic::Status;

use super::error::ApiError;
use crate::leader::sessions::Sessions;
use crate::raft::membership::Membership;
use crate::raft::network::Network;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;
use crate::secrets::SecretsDir;
use crate::state::command::Proposal;

/// Rows returned when a request does not say how many.
const DEFAULT_LIMIT: usize = 100;

pub struct ControlService {
    pub node_id: u64,
    pub advertise: String,
    pub proposer: Proposer,
    pub state: SharedState,
    pub sessions: Sessions,
    pub membership: Arc<Membership>,
    pub network: Network,
    /// To check that the secrets specs name exist before committing them.
    pub secrets: SecretsDir,
}

impl ControlService {
    /// Makes a read linearizable (through Raft's read index on the
    /// leader), unless the caller accepts this node's possibly stale state.
    pub async fn read_barrier(&self, stale: bool) -> Result<(), Status> {
        if stale {
            return Ok(());
        }
        match self
            .proposer
            .raft()
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match err.forward_to_leader() {
                Some(forward) => Err(ApiError::NotLeader {
                    leader_addr: forward.leader_node.as_ref().map(|node| node.addr.clone()),
                }
                .into()),
                None => Err(ApiError::Unavailable(err.to_string()).into()),
            },
        }
    }
}

pub fn limit(requested: u32) -> usize {
    if requested == 0 {
        DEFAULT_LIMIT
    } else {
        requested as usize
    }
}

/// Largest total size of spec files in one request.
const MAX_SPEC_BYTES: usize = 8 * 1024 * 1024;

/// Parses the spec files of a request, as `levee validate` would.
pub fn parse_files(files: &[pb::SpecFile]) -> Result<SpecSet, ApiError> {
    let total: usize = files.iter().map(|file| file.content.len()).sum();
    if total > MAX_SPEC_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "spec files total {total} bytes, more than {MAX_SPEC_BYTES}"
        )));
    }
    SpecSet::parse(
        files
            .iter()
            .map(|file| (file.name.as_str(), file.content.as_str())),
    )
    .map_err(|errors| ApiError::InvalidArgument(errors.to_string()))
}

/// Proposes `proposal` and returns its reply; a refusal by the state is
/// `FailedPrecondition`.
pub async fn commit<P: Proposal>(
    service: &ControlService,
    proposal: P,
) -> Result<P::Reply, Status> {
    let (_, reply) = service
        .proposer
        .propose_for(proposal)
        .await
        .map_err(ApiError::from)?;
    reply.map_err(|reason| ApiError::FailedPrecondition(reason).into())
}
