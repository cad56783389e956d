//! The Control methods for desired state: plan previews, versions,
//! rollback, scaling, rollout progress and status. Kept apart from the
//! listing and membership methods in `control.rs`.

use std::collections::HashSet;

use levee_common::ids::PlanId;
use levee_common::pb;
use levee_common::secret::SecretSource;
use levee_common::spec::SpecSet;
use tonic::{Request, Status};
use tracing::info;

use super::auth::caller;
use super::error::ApiError;
use super::service::{ControlService, commit, limit, parse_files};
use crate::clock::now_ms;
use crate::convert::{plan_info, task_info, version_info};
use crate::engine::planner::{self, Action};
use crate::state::command as cmd;
use crate::state::records::FAILED_DIGEST;

pub async fn apply_specs(
    service: &ControlService,
    request: Request<pb::ApplySpecsRequest>,
) -> Result<pb::ApplySpecsResponse, Status> {
    let identity = caller(&request)?;
    let request = request.into_inner();
    let specs = parse_files(&request.files)?;
    check_secrets(service, &specs)?;
    let applied = commit(
        service,
        cmd::PutSpecs {
            specs,
            reason: request.reason,
            applied_by: identity.to_string(),
            at_ms: now_ms(),
        },
    )
    .await?;
    info!(caller = %identity, version = applied.version, unchanged = !applied.new_version, "specs applied");
    Ok(specs_applied(applied))
}

/// Refuses specs naming a secret this controller cannot read: better an
/// error at `levee apply` than tasks that cannot be sent.
fn check_secrets(service: &ControlService, specs: &SpecSet) -> Result<(), Status> {
    for (name, spec) in &specs.services {
        for secret in spec.secret_names() {
            if let Err(err) = service.secrets.value(secret) {
                return Err(ApiError::InvalidArgument(format!(
                    "service `{name}`: {err}; add it on every controller before applying"
                ))
                .into());
            }
        }
    }
    Ok(())
}

pub async fn plan_specs(
    service: &ControlService,
    request: Request<pb::PlanSpecsRequest>,
) -> Result<pb::PlanSpecsResponse, Status> {
    let request = request.into_inner();
    let specs = parse_files(&request.files)?;
    service.read_barrier(request.stale).await?;
    Ok(service.state.read(|state| {
        let draft = state.preview(&specs);
        let steps = draft
            .steps
            .iter()
            .map(|step| pb::PlannedStep {
                agent_id: step.agent.to_string(),
                service: step.service.clone(),
                action: step.action.as_str().to_owned(),
                batch: step.batch,
                changes: match step.action {
                    Action::Update => state
                        .deployed_resources(&step.agent, &step.service)
                        .map(|old| planner::changes(old, &step.resources))
                        .unwrap_or_default(),
                    Action::Create | Action::Repair => step
                        .resources
                        .iter()
                        .map(|r| format!("+ {}", r.key()))
                        .collect(),
                    Action::Remove | Action::Run => Vec::new(),
                },
            })
            .collect();
        pb::PlanSpecsResponse {
            current_version: state.desired.spec_version,
            steps,
            problems: draft.problems,
        }
    }))
}

pub async fn get_plan(
    service: &ControlService,
    request: Request<pb::GetPlanRequest>,
) -> Result<pb::GetPlanResponse, Status> {
    let request = request.into_inner();
    service.read_barrier(request.stale).await?;
    let plan_id = PlanId::from(request.plan_id.as_str());
    service
        .state
        .read(|state| {
            let plan = state.work.plans.get(&plan_id)?;
            Some(pb::GetPlanResponse {
                plan: Some(plan_info(plan)),
                tasks: plan
                    .task_ids
                    .iter()
                    .filter_map(|id| state.work.tasks.get(id))
                    .map(task_info)
                    .collect(),
            })
        })
        .ok_or_else(|| Status::not_found(format!("no plan {plan_id}")))
}

pub async fn list_versions(
    service: &ControlService,
    request: Request<pb::ListVersionsRequest>,
) -> Result<pb::ListVersionsResponse, Status> {
    let request = request.into_inner();
    service.read_barrier(request.stale).await?;
    let limit = limit(request.limit);
    let versions = service.state.read(|state| {
        let skip = state.desired.versions.len().saturating_sub(limit);
        state
            .desired
            .versions
            .values()
            .skip(skip)
            .map(|version| version_info(version, state.desired.spec_version))
            .collect()
    });
    Ok(pb::ListVersionsResponse { versions })
}

pub async fn rollback(
    service: &ControlService,
    request: Request<pb::RollbackRequest>,
) -> Result<pb::ApplySpecsResponse, Status> {
    let identity = caller(&request)?;
    let request = request.into_inner();
    let applied = commit(
        service,
        cmd::Rollback {
            version: request.version,
            reason: request.reason,
            requested_by: identity.to_string(),
            at_ms: now_ms(),
        },
    )
    .await?;
    info!(caller = %identity, to = request.version, "rollback committed");
    Ok(specs_applied(applied))
}

pub async fn scale(
    service: &ControlService,
    request: Request<pb::ScaleRequest>,
) -> Result<pb::ScaleResponse, Status> {
    let identity = caller(&request)?;
    let request = request.into_inner();
    let cmd::Scaled { from, to, plan_id } = commit(
        service,
        cmd::Scale {
            service: request.service.clone(),
            replicas: request.replicas,
            reason: request.reason,
            requested_by: identity.to_string(),
            at_ms: now_ms(),
        },
    )
    .await?;
    info!(caller = %identity, service = %request.service, from, to, "scaled");
    Ok(pb::ScaleResponse {
        from,
        to,
        plan_id: plan_id.map(|id| id.to_string()).unwrap_or_default(),
    })
}

pub async fn status(
    service: &ControlService,
    request: Request<pb::StatusRequest>,
) -> Result<pb::StatusResponse, Status> {
    service.read_barrier(request.get_ref().stale).await?;
    let connected: HashSet<_> = service.sessions.connected().into_iter().collect();
    Ok(service.state.read(|state| {
        let services = state
            .desired
            .specs
            .services
            .values()
            .map(|spec| {
                let placed = state.work.placements.get(&spec.name);
                let deployments = || {
                    placed.into_iter().flatten().filter_map(|agent| {
                        state
                            .work
                            .deployments
                            .get(agent)
                            .and_then(|services| services.get(&spec.name))
                    })
                };
                let count = |f: &dyn Fn(&crate::state::records::Deployment) -> bool| {
                    deployments().filter(|d| f(d)).count() as u32
                };
                pb::ServiceStatus {
                    name: spec.name.clone(),
                    target: planner::target_of(spec, &state.desired.targets),
                    min: spec.replicas.min,
                    max: spec.replicas.max,
                    placed: placed.map_or(0, |agents| agents.len() as u32),
                    converged: count(&|d| {
                        d.in_flight.is_none()
                            && d.applied.as_deref().is_some_and(|a| a != FAILED_DIGEST)
                    }),
                    in_flight: count(&|d| d.in_flight.is_some()),
                    failed: count(&|d| {
                        d.in_flight.is_none() && d.applied.as_deref() == Some(FAILED_DIGEST)
                    }),
                }
            })
            .collect();
        let agents = state
            .fleet
            .agents
            .values()
            .map(|agent| pb::AgentStatus {
                agent_id: agent.agent_id.to_string(),
                connected: connected.contains(&agent.agent_id),
                services: state
                    .work
                    .deployments
                    .get(&agent.agent_id)
                    .map_or(0, |s| s.len() as u32),
                drift: state
                    .fleet
                    .drift
                    .get(&agent.agent_id)
                    .into_iter()
                    .flatten()
                    .map(|(key, record)| format!("{key}: {}", record.detail))
                    .collect(),
            })
            .collect();
        pb::StatusResponse {
            spec_version: state.desired.spec_version,
            services,
            agents,
        }
    }))
}

pub async fn test_rules(
    service: &ControlService,
    request: Request<pb::TestRulesRequest>,
) -> Result<pb::TestRulesResponse, Status> {
    let request = request.into_inner();
    service.read_barrier(request.stale).await?;
    // Copy, then run outside the lock: a long trial must not hold up apply.
    let (copy, after) = service.state.read_at(|state, at| (state.clone(), at));
    super::trial::run(copy, after, request, now_ms()).map_err(Status::from)
}

fn specs_applied(applied: cmd::SpecsApplied) -> pb::ApplySpecsResponse {
    pb::ApplySpecsResponse {
        version: applied.version,
        plan_ids: applied.plan_ids.iter().map(ToString::to_string).collect(),
        unchanged: !applied.new_version,
    }
}
