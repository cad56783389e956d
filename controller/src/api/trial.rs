//! `levee rules test`, on the cluster's state or on a saved one: the
//! request's events and specs checked, run on a copy through
//! `ClusterState::into_trial`, and the outcome in wire form. The CLI runs
//! the same function on a state saved with `levee state save`.

use levee_common::ids::AgentId;
use levee_common::pb;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::service::parse_files;
use crate::state::ClusterState;
use crate::state::records::LogPosition;
use crate::state::whatif::TrialEvent;

/// Most events one trial may carry.
const MAX_TRIAL_EVENTS: usize = 10_000;

/// A state as `levee state save` writes it: the replicated state and the
/// log position it reflects.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedState {
    pub applied_index: u64,
    pub applied_term: u64,
    pub state: ClusterState,
}

/// [`SavedState`] as written, without copying the state.
#[derive(Serialize)]
pub struct SavedStateRef<'a> {
    pub applied_index: u64,
    pub applied_term: u64,
    pub state: &'a ClusterState,
}

/// Runs the request's events on `copy`, a state at `after`; `now` stands
/// in for events without a time.
pub fn run(
    copy: ClusterState,
    after: LogPosition,
    request: pb::TestRulesRequest,
    now: i64,
) -> Result<pb::TestRulesResponse, ApiError> {
    if request.events.len() > MAX_TRIAL_EVENTS {
        return Err(ApiError::InvalidArgument(format!(
            "{} events, more than {MAX_TRIAL_EVENTS} in one trial",
            request.events.len()
        )));
    }
    let specs = if request.files.is_empty() {
        None
    } else {
        Some(parse_files(&request.files)?)
    };
    let mut events = Vec::with_capacity(request.events.len());
    for (index, event) in request.events.into_iter().enumerate() {
        let data = if event.data_json.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&event.data_json).map_err(|err| {
                ApiError::InvalidArgument(format!("event {}: data is not JSON: {err}", index + 1))
            })?
        };
        if event.agent_id.is_empty() || event.r#type.is_empty() {
            return Err(ApiError::InvalidArgument(format!(
                "event {}: needs an agent and a type",
                index + 1
            )));
        }
        events.push(TrialEvent {
            agent_id: AgentId::from(event.agent_id.as_str()),
            event_type: event.r#type,
            subject: event.subject,
            data,
            time_ms: if event.time_unix_ms == 0 {
                now + index as i64
            } else {
                event.time_unix_ms
            },
        });
    }
    let trial = copy.into_trial(specs, events, after);
    Ok(pb::TestRulesResponse {
        events: trial
            .events
            .into_iter()
            .map(|outcome| pb::TrialOutcome {
                r#type: outcome.event_type,
                agent_id: outcome.agent_id,
                rules: outcome.rules,
                outcomes: outcome.outcomes,
                changes: outcome.changes,
            })
            .collect(),
        targets: trial
            .targets
            .into_iter()
            .map(|(service, (from, to))| pb::TargetChange { service, from, to })
            .collect(),
    })
}
