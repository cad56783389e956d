//! Delivering tasks to agents. Only the leader dispatches.
//!
//! - [`sessions`]: the agents connected to this node, each with the sender
//!   half of its stream.
//! - [`dispatcher`]: sends every pending task to its agent's session,
//!   stamped with the leader's current term.

pub mod dispatcher;
pub mod sessions;
