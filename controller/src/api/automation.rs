//! The Control API's view of automation: draining and labelling agents by hand, rules
//! with their guardrail state, and provisions.

use levee_common::identity::check_name;
use levee_common::pb;
use tonic::{Request, Status};
use tracing::info;

use super::auth::caller;
use super::error::ApiError;
use super::service::{ControlService, commit};
use crate::state::ClusterState;
use crate::state::command as cmd;
use crate::state::reactions::describe;
use crate::state::records::ProvisionState;

pub async fn drain(
    service: &ControlService,
    request: Request<pb::DrainRequest>,
) -> Result<pb::DrainResponse, Status> {
    let identity = caller(&request)?;
    let request = request.into_inner();
    if request.agent_id.is_empty() {
        return Err(ApiError::InvalidArgument("name the agent to drain".into()).into());
    }
    let agent_id = request.agent_id.as_str().into();
    let by = identity.to_string();
    let at_ms = crate::clock::now_ms();
    let cmd::Drained { plan_id } = if request.undo {
        let undrain = cmd::Undrain {
            agent_id,
            by,
            at_ms,
        };
        commit(service, undrain).await?
    } else {
        let drain = cmd::Drain {
            agent_id,
            service: (!request.service.is_empty()).then_some(request.service),
            by,
            at_ms,
        };
        commit(service, drain).await?
    };
    info!(caller = %identity, agent = %request.agent_id, undo = request.undo, "drain");
    Ok(pb::DrainResponse {
        plan_id: plan_id.map(|id| id.to_string()).unwrap_or_default(),
    })
}

pub async fn label_agent(
    service: &ControlService,
    request: Request<pb::LabelAgentRequest>,
) -> Result<pb::LabelAgentResponse, Status> {
    let identity = caller(&request)?;
    let request = request.into_inner();
    check_name(&request.agent_id).map_err(|err| ApiError::InvalidArgument(err.to_string()))?;
    let label = cmd::LabelAgent {
        agent_id: request.agent_id.as_str().into(),
        set: request.set.into_iter().collect(),
        remove: request.remove.into_iter().collect(),
        by: identity.to_string(),
        at_ms: crate::clock::now_ms(),
    };
    let cmd::AgentLabelled { labels } = commit(service, label).await?;
    info!(caller = %identity, agent = %request.agent_id, ?labels, "labelled an agent");
    Ok(pb::LabelAgentResponse {
        labels: labels.into_iter().collect(),
    })
}

pub async fn resolve_provision(
    service: &ControlService,
    request: Request<pb::ResolveProvisionRequest>,
) -> Result<pb::ResolveProvisionResponse, Status> {
    let identity = caller(&request)?;
    let request = request.into_inner();
    let resolved = cmd::ProvisionResolved {
        id: request.id.clone(),
        host_made: request.host_made,
        by: identity.to_string(),
        at_ms: crate::clock::now_ms(),
    };
    commit(service, resolved).await?;
    info!(caller = %identity, id = %request.id, host_made = request.host_made, "provision resolved");
    Ok(pb::ResolveProvisionResponse {})
}

pub fn rules(state: &ClusterState) -> Vec<pb::RuleInfo> {
    state
        .desired
        .specs
        .rules
        .values()
        .map(|rule| {
            let rule_state = state.rule_book.rule_state.get(&rule.name);
            let signal = match (&rule.signal, rule_state) {
                (None, _) => "",
                (Some(_), Some(rule_state)) if rule_state.silent => "silent",
                (Some(_), _) => "live",
            };
            pb::RuleInfo {
                name: rule.name.clone(),
                action: describe(&rule.action),
                actions: rule_state.map_or(0, |s| s.actions),
                held: rule_state.map_or(0, |s| s.held),
                last_action_unix_ms: rule_state.and_then(|s| s.last_action_ms).unwrap_or(0),
                signal: signal.into(),
                window_samples: rule_state
                    .map_or(0, |s| s.windows.values().map(|w| w.len() as u32).sum()),
                dry_run: rule.guardrails.dry_run,
            }
        })
        .collect()
}

pub fn provisions(state: &ClusterState) -> Vec<pb::ProvisionInfo> {
    state
        .effects
        .provisions
        .values()
        .map(|record| {
            let (name, detail) = match &record.state {
                ProvisionState::Pending => ("pending", String::new()),
                ProvisionState::Running { term, .. } => {
                    ("running", format!("by the leader of term {term}"))
                }
                ProvisionState::Succeeded { output, .. } => ("succeeded", output.clone()),
                ProvisionState::Failed { error, .. } => ("failed", error.clone()),
                ProvisionState::Unknown { reason, .. } => ("unknown", reason.clone()),
            };
            pb::ProvisionInfo {
                id: record.id.clone(),
                provisioner: record.provisioner.clone(),
                state: name.into(),
                requested_unix_ms: record.requested_ms,
                cause: record.cause.reason.clone(),
                detail,
            }
        })
        .collect()
}
