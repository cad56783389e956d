//! The one place where API errors become gRPC statuses.

use levee_common::pb::LEADER_METADATA_KEY;
use thiserror::Error;
use tonic::Status;
use tonic::metadata::MetadataValue;

use crate::raft::membership::MembershipError;
use crate::raft::proposer::ProposeError;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("this controller is not the leader")]
    NotLeader { leader_addr: Option<String> },
    #[error("the cluster cannot serve this now: {0}")]
    Unavailable(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// The request is well-formed but the cluster's state forbids it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A defect in the controller, not in the request.
    #[error("{0}")]
    Internal(String),
}

impl From<MembershipError> for ApiError {
    fn from(err: MembershipError) -> Self {
        match err {
            MembershipError::Propose(propose) => propose.into(),
            MembershipError::Failed(reason) => ApiError::Unavailable(reason),
            refused @ (MembershipError::RemovedId(_)
            | MembershipError::RemovedName(_)
            | MembershipError::NameTaken { .. }
            | MembershipError::NameConflict { .. }) => {
                ApiError::PermissionDenied(refused.to_string())
            }
            other => ApiError::FailedPrecondition(other.to_string()),
        }
    }
}

impl From<ProposeError> for ApiError {
    fn from(err: ProposeError) -> Self {
        match err {
            ProposeError::NotLeader { leader_addr } => ApiError::NotLeader { leader_addr },
            ProposeError::Unavailable(reason) => ApiError::Unavailable(reason),
            wrong @ ProposeError::WrongReply { .. } => ApiError::Internal(wrong.to_string()),
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::NotLeader { leader_addr } => {
                let message = match &leader_addr {
                    Some(addr) => format!("not the leader; the leader is at {addr}"),
                    None => "not the leader, and no leader is known yet; retry shortly".to_owned(),
                };
                let mut status = Status::unavailable(message);
                if let Some(value) = leader_addr.and_then(|addr| MetadataValue::try_from(addr).ok())
                {
                    status.metadata_mut().insert(LEADER_METADATA_KEY, value);
                }
                status
            }
            ApiError::Unavailable(reason) => Status::unavailable(reason),
            ApiError::InvalidArgument(reason) => Status::invalid_argument(reason),
            ApiError::PermissionDenied(reason) => Status::permission_denied(reason),
            ApiError::FailedPrecondition(reason) => Status::failed_precondition(reason),
            ApiError::Internal(reason) => Status::internal(reason),
        }
    }
}
