//! Generated protobuf and gRPC types for `proto/levee/v1`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("levee.v1");

/// Metadata key that carries the leader's API address on an UNAVAILABLE
/// answer from a follower.
pub const LEADER_METADATA_KEY: &str = "x-levee-leader";
