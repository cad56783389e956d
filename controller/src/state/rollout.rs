//! Task reports and what they set off: the deployment record, the next
//! batch of a rollout, or, when a batch fails, cancelling the rest and an
//! automatic rollback if the service asks for one.

use levee_common::ids::{AgentId, PlanId, TaskId};

use super::ClusterState;
use super::command::Response;
use super::records::{FAILED_DIGEST, TaskReport, TaskState, VersionOrigin};
use crate::engine::planner::Action;
use crate::state::Entry;
use crate::state::command as cmd;

/// Who commits automatic rollbacks, in the history.
pub const AUTOMATIC: &str = "levee (automatic rollback)";

impl ClusterState {
    pub(super) fn record_task_report(
        &mut self,
        entry: &mut Entry,
        agent_id: &AgentId,
        report: TaskReport,
    ) -> Response {
        let Some(task) = self.work.tasks.get_mut(&report.task_id) else {
            return Response::TaskReportRecorded(cmd::TaskReportRecorded { known: false });
        };
        // Only the task's own agent may report on it, and the first
        // report wins: a redelivered report changes nothing. A superseded
        // task may still report: the agent did apply it.
        if &task.agent_id != agent_id
            || (task.state.is_finished() && task.state != TaskState::Superseded)
            || task.state == TaskState::Waiting
        {
            return Response::TaskReportRecorded(cmd::TaskReportRecorded { known: true });
        }
        let superseded = task.state == TaskState::Superseded;
        // A superseded task stays superseded (its rollout already went
        // on); its report is kept for the record.
        if !superseded {
            task.state = report.state;
        }
        task.outcomes = report.outcomes;
        task.error = report.error;
        task.finished_ms = report.finished_ms;
        let (plan_id, service, batch, action, digest) = (
            task.plan_id.clone(),
            task.service.clone(),
            task.batch,
            task.action,
            task.digest.clone(),
        );
        let succeeded = report.state == TaskState::Succeeded;
        if action == Action::Run {
            // A rule's command: no deployment, no rollout behind it.
            return Response::TaskReportRecorded(cmd::TaskReportRecorded { known: true });
        }
        self.record_deployment(
            agent_id,
            &service,
            &report.task_id,
            action,
            &digest,
            succeeded,
            superseded,
        );
        if superseded {
            // The newer task drives the rollout now.
            return Response::TaskReportRecorded(cmd::TaskReportRecorded { known: true });
        }
        if succeeded {
            self.release_next_batch(entry, &plan_id, &service, batch);
        } else {
            self.stop_rollout(entry, &plan_id, &service, &report.task_id);
        }
        Response::TaskReportRecorded(cmd::TaskReportRecorded { known: true })
    }

    #[allow(clippy::too_many_arguments)] // The fields of one report, all needed.
    fn record_deployment(
        &mut self,
        agent_id: &AgentId,
        service: &str,
        task_id: &TaskId,
        action: Action,
        digest: &str,
        succeeded: bool,
        superseded: bool,
    ) {
        let Some(services) = self.work.deployments.get_mut(agent_id) else {
            return;
        };
        let Some(deployment) = services.get_mut(service) else {
            return;
        };
        if !superseded {
            deployment.in_flight = None;
        }
        match (succeeded, action) {
            (true, Action::Remove) => deployment.applied = None,
            (true, _) => deployment.applied = Some(digest.to_owned()),
            // A failed removal leaves the service where it was; a failed
            // converge leaves the host in an unknown state, so the next
            // reconcile converges it again.
            (false, Action::Remove) => {}
            (false, _) => deployment.applied = Some(FAILED_DIGEST.to_owned()),
        }
        if succeeded {
            deployment.applied_task = Some(task_id.clone());
        }
        if deployment.applied.is_none() && deployment.in_flight.is_none() {
            services.remove(service);
            if services.is_empty() {
                self.work.deployments.remove(agent_id);
            }
        }
    }

    fn rollout_tasks(&self, plan_id: &PlanId, service: &str) -> Vec<TaskId> {
        self.work
            .plans
            .get(plan_id)
            .map(|plan| {
                plan.task_ids
                    .iter()
                    .filter(|id| {
                        self.work
                            .tasks
                            .get(*id)
                            .is_some_and(|task| task.service == service)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends the next batch once every task of this one is fine.
    pub(super) fn release_next_batch(
        &mut self,
        entry: &mut Entry,
        plan_id: &PlanId,
        service: &str,
        batch: u32,
    ) {
        let ids = self.rollout_tasks(plan_id, service);
        let batch_done = ids
            .iter()
            .map(|id| &self.work.tasks[id])
            .filter(|task| task.batch == batch)
            .all(|task| task.state.is_fine());
        if !batch_done {
            return;
        }
        for id in ids {
            let task = self.work.tasks.get_mut(&id).expect("listed from the plan");
            if task.batch == batch + 1 && task.state == TaskState::Waiting {
                task.state = TaskState::Pending;
                entry.now_pending.push((task.agent_id.clone(), id));
            }
        }
    }

    /// A task failed: later batches of the rollout are cancelled, and the
    /// service goes back to its previous version if its spec asks.
    fn stop_rollout(
        &mut self,
        entry: &mut Entry,
        plan_id: &PlanId,
        service: &str,
        failed_task: &TaskId,
    ) {
        for id in self.rollout_tasks(plan_id, service) {
            let task = self.work.tasks.get_mut(&id).expect("listed from the plan");
            if task.state == TaskState::Waiting {
                task.state = TaskState::Cancelled;
                let agent = task.agent_id.clone();
                if let Some(deployment) = self
                    .work
                    .deployments
                    .get_mut(&agent)
                    .and_then(|services| services.get_mut(service))
                    && deployment
                        .in_flight
                        .as_ref()
                        .is_some_and(|(_, in_flight)| *in_flight == id)
                {
                    deployment.in_flight = None;
                }
            }
        }
        let Some(plan) = self.work.plans.get(plan_id) else {
            return;
        };
        let version = plan.spec_version;
        let asks = self
            .desired
            .specs
            .services
            .get(service)
            .is_some_and(|spec| spec.update.auto_rollback);
        // Only the rollout of the current version, made by `apply`, rolls
        // back: never a rollback (no ping-pong), never a stale version.
        let from_apply = self.desired.versions.get(&version).is_some_and(|record| {
            record.origin == VersionOrigin::Apply && record.plan_ids.contains(plan_id)
        });
        if !asks
            || !from_apply
            || version != self.desired.spec_version
            || plan.rolled_back_by.is_some()
        {
            return;
        }
        let Some(previous) = self.desired.versions.get(&(version - 1)) else {
            return;
        };
        let mut specs = self.desired.specs.clone();
        match previous.specs.services.get(service) {
            Some(old) => specs.services.insert(service.to_owned(), old.clone()),
            None => specs.services.remove(service),
        };
        let reason = format!(
            "task {failed_task} of plan {plan_id} failed; restoring {service} from version {}",
            version - 1
        );
        let origin = VersionOrigin::AutoRollback {
            service: service.to_owned(),
            failed_task: failed_task.clone(),
        };
        if let Response::SpecsApplied(cmd::SpecsApplied { version, .. }) =
            self.put_specs(entry, specs, reason, AUTOMATIC.to_owned(), origin)
            && let Some(plan) = self.work.plans.get_mut(plan_id)
        {
            plan.rolled_back_by = Some(version);
        }
    }
}
