//! Agents' reports on the tasks they were sent.

use levee_common::ids::AgentId;
use serde::{Deserialize, Serialize};

use super::Response;
use crate::state::records::TaskReport;

/// An agent's report on a task it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordTaskReport {
    pub agent_id: AgentId,
    pub report: TaskReport,
}

proposal!(RecordTaskReport => super::TaskReportRecorded, Response::TaskReportRecorded);
