//! Turning triggers into recorded plans and tasks: spec versions, scaling
//! and reconciles all come through here.

use std::collections::BTreeMap;

use levee_common::event::types::SERVICE_UNPLACED;
use levee_common::ids::{AgentId, PlanId, TaskId};
use levee_common::resource::Resource;
use levee_common::spec::SpecSet;

use super::ClusterState;
use super::SPEC_HISTORY;
use super::command::Response;
use super::records::{Cause, PlanRecord, SpecVersion, TaskRecord, TaskState, VersionOrigin};
use crate::engine::planner::{self, Draft, PlanInput, Trigger};
use crate::state::Entry;
use crate::state::command as cmd;

impl ClusterState {
    /// The planner's input over the current state, with `specs` in place
    /// of the committed ones (for previews).
    pub fn plan_input<'a>(&'a self, specs: &'a SpecSet) -> PlanInput<'a> {
        PlanInput {
            specs,
            agents: &self.fleet.agents,
            placements: &self.work.placements,
            targets: &self.desired.targets,
            current: &self.work.deployments,
        }
    }

    /// What committing `specs` would plan now, committing nothing: the
    /// same targets, placements and deployments `put_specs` would use.
    pub fn preview(&self, specs: &SpecSet) -> Draft {
        let targets = clamped_targets(&self.desired.targets, specs);
        planner::plan(
            &PlanInput {
                targets: &targets,
                ..self.plan_input(specs)
            },
            &Trigger::Reconcile,
        )
    }

    /// The resources a service runs with on an agent, as last sent to it:
    /// from the in-flight task, else the last applied one.
    pub fn deployed_resources(&self, agent: &AgentId, service: &str) -> Option<&[Resource]> {
        let deployment = self.work.deployments.get(agent)?.get(service)?;
        let task_id = deployment
            .in_flight
            .as_ref()
            .map(|(_, task_id)| task_id)
            .or(deployment.applied_task.as_ref())?;
        self.work
            .tasks
            .get(task_id)
            .map(|task| task.resources.as_slice())
    }

    /// Runs the planner and records its plan and tasks. Returns the plan
    /// id, or `None` when there is nothing to do. A service left short of
    /// replicas raises `levee.service.unplaced` (once the plan is recorded,
    /// so a rule reacting to it plans on top of this plan).
    pub(super) fn plan(
        &mut self,
        entry: &mut Entry,
        cause: Cause,
        trigger: &Trigger,
    ) -> Option<PlanId> {
        let depth = cause.depth;
        let plan_id = self.record_plan(entry, cause, trigger);
        self.note_shortfalls(entry, depth);
        plan_id
    }

    /// Compares each service's placements with its target and raises
    /// `levee.service.unplaced` for each shortfall that changed, carrying
    /// the `depth` of the change that caused it (so rules reacting to it
    /// continue that chain and stop at their `max_chain_depth`).
    fn note_shortfalls(&mut self, entry: &mut Entry, depth: u32) {
        let specs = &self.desired.specs;
        self.rule_book
            .shortfalls
            .retain(|name, _| specs.services.contains_key(name));
        let names: Vec<String> = self.desired.specs.services.keys().cloned().collect();
        for name in names {
            // Measured afresh for each service: a reaction to the one
            // before may have planned again.
            let Some(spec) = self.desired.specs.services.get(&name) else {
                continue;
            };
            let target = planner::target_of(spec, &self.desired.targets);
            let placed = self
                .work
                .placements
                .get(&name)
                .map_or(0, |agents| agents.len()) as u32;
            let short = target.saturating_sub(placed);
            let before = self.rule_book.shortfalls.get(&name).copied().unwrap_or(0);
            if short == before {
                continue;
            }
            if short == 0 {
                self.rule_book.shortfalls.remove(&name);
                continue;
            }
            self.rule_book.shortfalls.insert(name.clone(), short);
            let data = serde_json::json!({
                "service": name,
                "target": target,
                "placed": placed,
                "short": short,
                "cause_depth": depth,
            });
            self.raise_from(
                entry,
                super::hosts::CONTROLLER_SOURCE,
                SERVICE_UNPLACED,
                &name,
                data,
                entry.at_ms,
            );
        }
    }

    fn record_plan(
        &mut self,
        entry: &mut Entry,
        cause: Cause,
        trigger: &Trigger,
    ) -> Option<PlanId> {
        let Draft {
            placements,
            steps,
            problems,
        } = planner::plan(&self.plan_input(&self.desired.specs), trigger);
        self.work.placements = placements;
        // A plan with nothing to do is not recorded; its problems show in
        // `levee status` (replicas placed against target) and `levee plan`.
        if steps.is_empty() {
            return None;
        }
        let plan_id = entry.next_plan_id();
        let mut task_ids = Vec::with_capacity(steps.len());
        for (step_index, step) in steps.into_iter().enumerate() {
            let task_id = TaskId::of_plan(&plan_id, step_index);
            self.supersede_unfinished(entry, &step.agent, &step.service);
            let deployment = self
                .work
                .deployments
                .entry(step.agent.clone())
                .or_default()
                .entry(step.service.clone())
                .or_default();
            deployment.in_flight = Some((step.digest.clone(), task_id.clone()));
            let mut task = TaskRecord::new(
                task_id.clone(),
                &plan_id,
                step.agent,
                step.service,
                step.action,
                entry,
                cause.clone(),
            );
            task.batch = step.batch;
            task.digest = step.digest;
            task.resources = std::sync::Arc::unwrap_or_clone(step.resources);
            if step.batch > 0 {
                task.state = TaskState::Waiting;
            } else {
                entry
                    .now_pending
                    .push((task.agent_id.clone(), task_id.clone()));
            }
            self.work.tasks.insert(task_id.clone(), task);
            task_ids.push(task_id);
        }
        self.record_plan_of(plan_id.clone(), cause, task_ids, entry, problems);
        Some(plan_id)
    }

    /// Records a plan whose tasks are already in `tasks`.
    pub(super) fn record_plan_of(
        &mut self,
        plan_id: PlanId,
        cause: Cause,
        task_ids: Vec<TaskId>,
        entry: &mut Entry,
        problems: Vec<String>,
    ) {
        let plan = PlanRecord {
            plan_id: plan_id.clone(),
            cause,
            task_ids,
            created: entry.at,
            created_ms: entry.at_ms,
            spec_version: self.desired.spec_version,
            problems,
            rolled_back_by: None,
        };
        self.work.plans.insert(plan_id, plan);
    }

    /// A newer task for the same service on the same agent replaces any
    /// unfinished one: the agent converges to the newest.
    fn supersede_unfinished(
        &mut self,
        entry: &mut Entry,
        agent: &levee_common::ids::AgentId,
        service: &str,
    ) {
        let Some((_, task_id)) = self
            .work
            .deployments
            .get(agent)
            .and_then(|services| services.get(service))
            .and_then(|deployment| deployment.in_flight.clone())
        else {
            return;
        };
        self.supersede(entry, &task_id);
    }

    /// Marks an unfinished task superseded and lets its rollout go on: a
    /// superseded task counts as done for its batch.
    pub(super) fn supersede(&mut self, entry: &mut Entry, task_id: &TaskId) {
        let Some(task) = self.work.tasks.get_mut(task_id) else {
            return;
        };
        if task.state.is_finished() {
            return;
        }
        task.state = TaskState::Superseded;
        let (plan_id, service, batch) = (task.plan_id.clone(), task.service.clone(), task.batch);
        self.release_next_batch(entry, &plan_id, &service, batch);
    }

    /// Commits `specs` as a new version and plans it.
    pub(super) fn put_specs(
        &mut self,
        entry: &mut Entry,
        specs: SpecSet,
        reason: String,
        applied_by: String,
        origin: VersionOrigin,
    ) -> Response {
        // The same specs again make no new version; they still reconcile,
        // so applying again retries what failed (as `terraform apply`).
        if origin == VersionOrigin::Apply
            && self.desired.spec_version > 0
            && specs == self.desired.specs
        {
            let cause = Cause {
                reason: format!(
                    "spec version {} applied again by {applied_by}: {reason}",
                    self.desired.spec_version
                ),
                event_id: None,
                rule: None,
                depth: 0,
            };
            let plan_ids = self
                .plan(entry, cause, &Trigger::Reconcile)
                .into_iter()
                .collect();
            return Response::SpecsApplied(cmd::SpecsApplied {
                version: self.desired.spec_version,
                plan_ids,
                new_version: false,
            });
        }
        self.desired.targets = clamped_targets(&self.desired.targets, &specs);
        self.desired.specs = specs;
        self.start_signals(entry);
        self.desired.spec_version += 1;
        let version = self.desired.spec_version;
        let cause = Cause {
            reason: format!(
                "spec version {version} ({}) by {applied_by}: {reason}",
                origin.describe()
            ),
            event_id: None,
            rule: None,
            depth: 0,
        };
        let plan_ids: Vec<PlanId> = self
            .plan(entry, cause, &Trigger::Reconcile)
            .into_iter()
            .collect();
        self.desired.versions.insert(
            version,
            SpecVersion {
                version,
                specs: self.desired.specs.clone(),
                applied_by,
                reason,
                at_ms: entry.at_ms,
                origin,
                plan_ids: plan_ids.clone(),
            },
        );
        while self.desired.versions.len() > SPEC_HISTORY {
            self.desired.versions.pop_first();
        }
        Response::SpecsApplied(cmd::SpecsApplied {
            version,
            plan_ids,
            new_version: true,
        })
    }

    pub(super) fn scale(
        &mut self,
        entry: &mut Entry,
        service: &str,
        replicas: u32,
        reason: String,
        requested_by: String,
    ) -> Response {
        let Some(spec) = self.desired.specs.services.get(service) else {
            return Response::Rejected(cmd::Rejected {
                reason: format!(
                    "no service `{service}` in spec version {}",
                    self.desired.spec_version
                ),
            });
        };
        let bounds = spec.replicas;
        if replicas < bounds.min || replicas > bounds.max {
            return Response::Rejected(cmd::Rejected {
                reason: format!(
                    "service `{service}` allows {} to {} replicas; {replicas} is outside that (change `replicas` in its spec to widen it)",
                    bounds.min, bounds.max
                ),
            });
        }
        let from = planner::target_of(spec, &self.desired.targets);
        self.desired.targets.insert(service.to_owned(), replicas);
        let scaling = self
            .rule_book
            .scaling
            .entry(service.to_owned())
            .or_default();
        if replicas > from {
            scaling.last_up_ms = Some(entry.at_ms);
        } else if replicas < from {
            scaling.last_down_ms = Some(entry.at_ms);
        }
        let cause = Cause {
            reason: format!(
                "scale {service} from {from} to {replicas} by {requested_by}: {reason}"
            ),
            event_id: None,
            rule: None,
            depth: 0,
        };
        let plan_id = self.plan(entry, cause, &Trigger::Reconcile);
        Response::Scaled(cmd::Scaled {
            from,
            to: replicas,
            plan_id,
        })
    }
}

/// Scaled targets survive a new version, kept within its bounds; targets
/// of services that are gone are dropped.
fn clamped_targets(targets: &BTreeMap<String, u32>, specs: &SpecSet) -> BTreeMap<String, u32> {
    targets
        .iter()
        .filter_map(|(name, target)| {
            let service = specs.services.get(name)?;
            Some((name.clone(), service.replicas.clamp(*target)))
        })
        .collect()
}
