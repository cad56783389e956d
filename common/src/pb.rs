//! Generated protobuf and gRPC types for `proto/levee/v1`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("levee.v1");

/// Metadata key that carries the leader's API address on an UNAVAILABLE
/// answer from a follower.
pub const LEADER_METADATA_KEY: &str = "x-levee-leader";

/// The leader's address from a follower's UNAVAILABLE answer, if it named one.
pub fn leader_hint(status: &tonic::Status) -> Option<String> {
    if status.code() != tonic::Code::Unavailable {
        return None;
    }
    status
        .metadata()
        .get(LEADER_METADATA_KEY)?
        .to_str()
        .ok()
        .map(str::to_owned)
}
