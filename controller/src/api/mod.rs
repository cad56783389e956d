//! The gRPC services: what agents, operators and peer controllers may
//! call, and who may call what. Each service is mounted behind a role check ([`auth::RoleCheck`]);
//! the role comes from the peer's certificate, never from the request.

pub mod agent_link;
pub mod auth;
mod automation;
pub mod control;
pub(crate) mod desired;
pub mod error;
pub mod listener;
pub mod raft_transport;
pub mod refusals;
pub mod service;
pub mod trial;
