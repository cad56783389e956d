//! The Levee controller node and the `levee` command-line tool.
//!
//! - [`state`]: the replicated state and its deterministic transitions.
//! - [`engine`]: rule matching and the planner, pure functions.
//! - [`raft`]: openraft wiring: durable log, state machine, transport.
//! - [`convert`]: domain records to and from `levee.v1` wire messages.
//! - [`api`]: the gRPC services agents, operators and peers call.
//! - [`leader`]: what only the leader does (dispatch tasks, declare agents
//!   lost, fire timers, run provisioners, call webhooks), each job started
//!   and stopped with leadership.
//! - [`sources`]: webhooks and MQTT, turned into events the leader commits.
//! - [`secrets`]: secret values, read from this node's secrets directory
//!   only when the leader builds a task.
//! - [`metrics`]: Prometheus metrics, rendered from the state at scrape time.
//! - [`node`]: starts and stops one controller node.
//! - [`cli`]: the `levee` commands.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod convert;
pub mod engine;
pub mod leader;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod secrets;
pub mod sources;
pub mod state;
