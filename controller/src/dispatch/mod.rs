//! Delivering tasks to agents. Only the leader dispatches.
//!
//! - [`sessions`]: the agents connected to this node, each with the sender
//!   half of its stream.
//! - [`dispatcher`]: sends every pending task to its agent's session,
//!   stamped with the leader's current term.
//! - [`lost`]: declares agents lost after `[agents] lost_after_ms` without
//!   a session to the leader.
//! - [`timers`]: fires `Timer`s on their cron schedule while this node leads.
//! - [`silence`]: reports rules whose signal went silent.
//! - [`notifier`]: delivers rules' webhook calls, at least once.
//! - [`provisioner`]: runs provisioners for the hosts rules asked for, at
//!   most once each.

pub mod dispatcher;
mod http_client;
pub mod lost;
pub mod notifier;
pub mod provisioner;
pub mod sessions;
pub mod silence;
pub mod timers;
