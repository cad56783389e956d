//! The Control service: what the `levee` CLI calls.
//!
//! Reads are linearizable: they go through Raft's read index, so a deposed
//! leader cannot answer from stale state.

use levee_common::ids::AgentId;
use levee_common::pb::control_server::Control;
use levee_common::pb::{self};
use openraft::async_runtime::WatchReceiver;
use tonic::{Request, Response, Status};
use tracing::info;

use super::auth::caller;
use super::error::ApiError;
pub use super::service::ControlService;
use super::service::limit;
use super::{automation, desired};
use crate::convert::{cause_chain, event_info, members_response, plan_info, task_info};
use crate::state::command as cmd;
use crate::state::records::{PlanRecord, TaskRecord};

#[tonic::async_trait]
impl Control for ControlService {
    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        self.read_barrier(request.get_ref().stale).await?;
        // Never take the sessions lock inside the state lock: the
        // dispatcher takes them one after the other, not nested.
        let connected: std::collections::HashSet<_> =
            self.sessions.connected().into_iter().collect();
        let agents = self.state.read(|state| {
            state
                .fleet
                .agents
                .values()
                .map(|agent| pb::AgentInfo {
                    agent_id: agent.agent_id.to_string(),
                    connected: connected.contains(&agent.agent_id),
                    boot_epoch: agent.boot_epoch,
                    labels: agent.labels.clone().into_iter().collect(),
                    last_connected_unix_ms: agent.last_hello_ms,
                    services: state
                        .work
                        .placements
                        .iter()
                        .filter(|(_, agents)| agents.contains(&agent.agent_id))
                        .map(|(service, _)| service.clone())
                        .collect(),
                    events_committed: agent.events_committed,
                    avoid: agent.avoid.iter().cloned().collect(),
                    facts: agent.facts.clone().into_iter().collect(),
                })
                .collect()
        });
        Ok(Response::new(pb::ListAgentsResponse { agents }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.read_barrier(request.get_ref().stale).await?;
        let limit = limit(request.get_ref().limit);
        let events = self.state.read(|state| {
            let skip = state.event_log.events.len().saturating_sub(limit);
            state
                .event_log
                .events
                .iter()
                .skip(skip)
                .map(event_info)
                .collect()
        });
        Ok(Response::new(pb::ListEventsResponse { events }))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        self.read_barrier(request.get_ref().stale).await?;
        let limit = limit(request.get_ref().limit);
        let tasks = self.state.read(|state| {
            let mut tasks: Vec<&TaskRecord> = state.work.tasks.values().collect();
            tasks.sort_by_key(|task| (task.created.index, task.task_id.clone()));
            let skip = tasks.len().saturating_sub(limit);
            tasks.into_iter().skip(skip).map(task_info).collect()
        });
        Ok(Response::new(pb::ListTasksResponse { tasks }))
    }

    async fn list_plans(
        &self,
        request: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        self.read_barrier(request.get_ref().stale).await?;
        let limit = limit(request.get_ref().limit);
        let plans = self.state.read(|state| {
            let mut plans: Vec<&PlanRecord> = state.work.plans.values().collect();
            plans.sort_by_key(|plan| (plan.created.index, plan.plan_id.clone()));
            let skip = plans.len().saturating_sub(limit);
            plans.into_iter().skip(skip).map(plan_info).collect()
        });
        Ok(Response::new(pb::ListPlansResponse { plans }))
    }

    async fn apply_specs(
        &self,
        request: Request<pb::ApplySpecsRequest>,
    ) -> Result<Response<pb::ApplySpecsResponse>, Status> {
        desired::apply_specs(self, request).await.map(Response::new)
    }

    async fn plan_specs(
        &self,
        request: Request<pb::PlanSpecsRequest>,
    ) -> Result<Response<pb::PlanSpecsResponse>, Status> {
        desired::plan_specs(self, request).await.map(Response::new)
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::GetPlanResponse>, Status> {
        desired::get_plan(self, request).await.map(Response::new)
    }

    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        desired::list_versions(self, request)
            .await
            .map(Response::new)
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::ApplySpecsResponse>, Status> {
        desired::rollback(self, request).await.map(Response::new)
    }

    async fn scale(
        &self,
        request: Request<pb::ScaleRequest>,
    ) -> Result<Response<pb::ScaleResponse>, Status> {
        desired::scale(self, request).await.map(Response::new)
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        desired::status(self, request).await.map(Response::new)
    }

    async fn why(
        &self,
        request: Request<pb::WhyRequest>,
    ) -> Result<Response<pb::WhyResponse>, Status> {
        let request = request.into_inner();
        self.read_barrier(request.stale).await?;
        let agent = Some(request.agent_id.as_str())
            .filter(|agent| !agent.is_empty())
            .map(AgentId::from);
        let limit = if request.limit == 0 {
            10
        } else {
            request.limit as usize
        };
        let chains = self
            .state
            .read(|state| state.why(&request.service, agent.as_ref(), limit))
            .into_iter()
            .map(cause_chain)
            .collect();
        Ok(Response::new(pb::WhyResponse { chains }))
    }

    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        self.read_barrier(request.get_ref().stale).await?;
        let approvals = self.state.read(|state| {
            state
                .rule_book
                .approvals
                .values()
                .map(|pending| pb::ApprovalInfo {
                    id: pending.id.clone(),
                    rule: pending.rule.clone(),
                    action: crate::state::reactions::describe(&pending.action),
                    agent_id: pending.agent.to_string(),
                    event_id: pending.cause.event_id.clone().unwrap_or_default(),
                    at_unix_ms: pending.at_ms,
                })
                .collect()
        });
        Ok(Response::new(pb::ListApprovalsResponse { approvals }))
    }

    async fn approve(
        &self,
        request: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::ApproveResponse>, Status> {
        let identity = caller(&request)?;
        let request = request.into_inner();
        let answer = cmd::Answer {
            id: request.id,
            approve: !request.reject,
            by: identity.to_string(),
            at_ms: crate::clock::now_ms(),
        };
        let cmd::Answered { outcome, plan_id } = super::service::commit(self, answer).await?;
        info!(caller = %identity, %outcome, "rule action answered");
        Ok(Response::new(pb::ApproveResponse {
            outcome,
            plan_id: plan_id.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn drain(
        &self,
        request: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        automation::drain(self, request).await.map(Response::new)
    }

    async fn label_agent(
        &self,
        request: Request<pb::LabelAgentRequest>,
    ) -> Result<Response<pb::LabelAgentResponse>, Status> {
        automation::label_agent(self, request)
            .await
            .map(Response::new)
    }

    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        self.read_barrier(request.get_ref().stale).await?;
        let rules = self.state.read(automation::rules);
        Ok(Response::new(pb::ListRulesResponse { rules }))
    }

    async fn export_state(
        &self,
        request: Request<pb::ExportStateRequest>,
    ) -> Result<Response<pb::ExportStateResponse>, Status> {
        self.read_barrier(request.get_ref().stale).await?;
        let json = self.state.read_at(|state, after| {
            serde_json::to_vec(&crate::api::trial::SavedStateRef {
                applied_index: after.index,
                applied_term: after.term,
                state,
            })
        });
        let json = json.map_err(|err| Status::internal(format!("encoding the state: {err}")))?;
        Ok(Response::new(pb::ExportStateResponse { json }))
    }

    async fn resolve_provision(
        &self,
        request: Request<pb::ResolveProvisionRequest>,
    ) -> Result<Response<pb::ResolveProvisionResponse>, Status> {
        automation::resolve_provision(self, request)
            .await
            .map(Response::new)
    }

    async fn list_provisions(
        &self,
        request: Request<pb::ListProvisionsRequest>,
    ) -> Result<Response<pb::ListProvisionsResponse>, Status> {
        self.read_barrier(request.get_ref().stale).await?;
        let provisions = self.state.read(automation::provisions);
        Ok(Response::new(pb::ListProvisionsResponse { provisions }))
    }

    async fn test_rules(
        &self,
        request: Request<pb::TestRulesRequest>,
    ) -> Result<Response<pb::TestRulesResponse>, Status> {
        desired::test_rules(self, request).await.map(Response::new)
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let metrics = self.proposer.raft().metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let last_index = metrics.last_log_index.unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(node_id, node)| {
                // Only the leader tracks how far each follower has replicated.
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|replication| replication.get(node_id).cloned().flatten())
                    .map(|log_id| log_id.index);
                pb::MemberInfo {
                    node_id: *node_id,
                    addr: node.addr.clone(),
                    name: node.name.clone(),
                    voter: voters.contains(node_id),
                    matched_index: matched.unwrap_or_default(),
                    lag: matched
                        .map(|index| last_index.saturating_sub(index))
                        .unwrap_or_default(),
                }
            })
            .collect();
        let leader_addr = metrics
            .current_leader
            .and_then(|leader| membership.get_node(&leader).map(|node| node.addr.clone()))
            .unwrap_or_default();
        let index = |log_id: Option<crate::raft::LogId>| {
            log_id.map(|log_id| log_id.index).unwrap_or_default()
        };
        Ok(Response::new(pb::ClusterStatusResponse {
            node_id: metrics.id,
            leader_id: metrics.current_leader.unwrap_or_default(),
            term: metrics.current_term,
            last_log_index: last_index,
            last_applied: index(metrics.last_applied),
            spec_version: self.state.read(|state| state.desired.spec_version),
            state: format!("{:?}", metrics.state).to_lowercase(),
            committed: index(metrics.local_committed),
            purged: index(metrics.purged),
            snapshot_index: index(metrics.snapshot),
            leader_addr,
            members,
        }))
    }

    async fn init_cluster(
        &self,
        _request: Request<pb::InitClusterRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let members = self.membership.initialize().await.map_err(ApiError::from)?;
        Ok(Response::new(members_response(members)))
    }

    async fn join_node(
        &self,
        request: Request<pb::JoinNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let identity = caller(&request)?;
        let addr = request.into_inner().addr;
        if self.proposer.leader_term().is_none() {
            return Err(ApiError::NotLeader {
                leader_addr: self.proposer.leader_addr(),
            }
            .into());
        }
        let mut client = self
            .network
            .client(&addr)
            .map_err(ApiError::InvalidArgument)?;
        let info = client
            .node_info(pb::NodeInfoRequest {})
            .await
            .map_err(|status| {
                ApiError::Unavailable(format!(
                    "cannot reach the controller at {addr}: {}",
                    status.message()
                ))
            })?
            .into_inner();
        let known = self
            .proposer
            .raft()
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&info.node_id)
            .is_some();
        if info.initialized && !known {
            return Err(ApiError::FailedPrecondition(format!(
                "the controller at {addr} (node {}) already belongs to another cluster; start it with an empty data directory",
                info.node_id
            ))
            .into());
        }
        // The name the node's certificate states, not one it claims.
        let name = self
            .network
            .peer_name(&addr)
            .await
            .map_err(|err| ApiError::Unavailable(err.to_string()))?;
        info!(caller = %identity, node_id = info.node_id, %addr, %name, "joining a node");
        let members = self
            .membership
            .join(info.node_id, &addr, &name)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(members_response(members)))
    }

    async fn leave_node(
        &self,
        request: Request<pb::LeaveNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let identity = caller(&request)?;
        let node_id = request.into_inner().node_id;
        info!(caller = %identity, node_id, "removing a node");
        let members = self
            .membership
            .leave(node_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(members_response(members)))
    }
}
