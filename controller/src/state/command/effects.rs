//! Effects outside the fleet: provisions and webhook calls.

use serde::{Deserialize, Serialize};

use super::Response;

/// The leader of `term` is about to run a provision's command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionStarted {
    pub id: String,
    pub term: u64,
    pub at_ms: i64,
}

/// A provision's command ended: its output, or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionFinished {
    pub id: String,
    pub result: Result<String, String>,
    pub at_ms: i64,
}

/// The leader of `term` found a provision started by an older term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionAbandoned {
    pub id: String,
    pub term: u64,
    pub at_ms: i64,
}

/// An operator says what became of a provision whose outcome is
/// unknown: a host was made (it keeps counting against `max_hosts`)
/// or not (it stops counting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionResolved {
    pub id: String,
    pub host_made: bool,
    pub by: String,
    pub at_ms: i64,
}

/// The leader delivered a rule's webhook call (the HTTP status), or
/// gave up on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationDone {
    pub id: String,
    pub result: Result<u16, String>,
    pub attempts: u32,
    pub at_ms: i64,
}

proposal!(ProvisionStarted => (), Response::Nothing);
proposal!(ProvisionFinished => (), Response::Nothing);
proposal!(ProvisionAbandoned => (), Response::Nothing);
proposal!(ProvisionResolved => (), Response::Nothing);
proposal!(NotificationDone => (), Response::Nothing);
