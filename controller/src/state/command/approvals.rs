//! Operators answering rule actions that wait for approval.

use serde::{Deserialize, Serialize};

use super::Response;

/// An operator approves or rejects a rule action awaiting approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub id: String,
    pub approve: bool,
    pub by: String,
    pub at_ms: i64,
}

proposal!(Answer => super::Answered, Response::Answered);
