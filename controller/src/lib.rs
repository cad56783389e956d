//! The Levee controller node and the `levee` command-line tool.
//!
//! - [`state`]: the replicated state and its deterministic transitions.
//! - [`engine`]: rule matching and the planner, pure functions.
//! - [`raft`]: openraft wiring: durable log, state machine, transport.
//! - [`api`]: the gRPC services agents and operators call.
//! - [`dispatch`]: the leader's delivery of tasks to connected agents.
//! - [`sources`]: webhooks and MQTT, turned into events the leader commits.
//! - [`metrics`]: Prometheus metrics, rendered from the state at scrape time.
//! - [`node`]: starts and stops one controller node.
//! - [`cli`]: the `levee` commands.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod sources;
pub mod state;
