//! Bounding the history of plans and tasks. Every plan keeps a full copy of
//! its tasks' resources, so without a bound the replicated state (and each
//! snapshot) grows with every change. Finished plans are dropped oldest
//! first; a plan is kept while any of its tasks is unfinished or is what a
//! deployment points at (the resources an agent last applied or is being
//! sent, which `levee plan` and drift need).

use std::collections::BTreeSet;

use levee_common::ids::{PlanId, TaskId};

use super::ClusterState;

/// Plans kept once pruning starts.
pub const PLAN_HISTORY: usize = 5_000;
/// Pruning runs once this many plans beyond `PLAN_HISTORY` have gathered,
/// so its sort is paid once per batch of plans, not per entry.
pub const PLAN_SLACK: usize = 500;

impl ClusterState {
    /// Drops the oldest finished plans and their tasks beyond
    /// `PLAN_HISTORY`. Deterministic: ordered by the log position that
    /// made each plan.
    pub(super) fn prune_history(&mut self) {
        if self.work.plans.len() <= PLAN_HISTORY + PLAN_SLACK {
            return;
        }
        let referenced: BTreeSet<&TaskId> = self
            .work
            .deployments
            .values()
            .flat_map(|services| services.values())
            .flat_map(|deployment| {
                deployment
                    .applied_task
                    .iter()
                    .chain(deployment.in_flight.as_ref().map(|(_, task)| task))
            })
            .collect();
        let mut finished: Vec<(u64, PlanId)> = self
            .work
            .plans
            .values()
            .filter(|plan| {
                plan.task_ids.iter().all(|task_id| {
                    !referenced.contains(task_id)
                        && self
                            .work
                            .tasks
                            .get(task_id)
                            .is_none_or(|task| task.state.is_finished())
                })
            })
            .map(|plan| (plan.created.index, plan.plan_id.clone()))
            .collect();
        finished.sort();
        let excess = self.work.plans.len() - PLAN_HISTORY;
        for (_, plan_id) in finished.into_iter().take(excess) {
            if let Some(plan) = self.work.plans.remove(&plan_id) {
                for task_id in plan.task_ids {
                    self.work.tasks.remove(&task_id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::planner::Action;
    use crate::state::Entry;
    use crate::state::records::{Cause, LogPosition, TaskRecord, TaskState};

    fn add_plan(state: &mut ClusterState, index: u64, task_state: TaskState) -> TaskId {
        let plan_id = PlanId::at(index, 0);
        let task_id = TaskId::of_plan(&plan_id, 0);
        let mut entry = Entry::new(LogPosition { index, term: 1 }, 0);
        let cause = Cause {
            reason: "test".into(),
            event_id: None,
            rule: None,
            depth: 0,
        };
        let mut task = TaskRecord::new(
            task_id.clone(),
            &plan_id,
            "a1".into(),
            "web".into(),
            Action::Update,
            &entry,
            cause.clone(),
        );
        task.state = task_state;
        state.work.tasks.insert(task_id.clone(), task);
        state.record_plan_of(
            plan_id,
            cause,
            vec![task_id.clone()],
            &mut entry,
            Vec::new(),
        );
        task_id
    }

    #[test]
    fn the_oldest_finished_plans_go_and_unfinished_or_deployed_ones_stay() {
        let mut state = ClusterState::default();
        // The very first plan: still pending. The second: what a1 runs.
        let pending = add_plan(&mut state, 1, TaskState::Pending);
        let deployed = add_plan(&mut state, 2, TaskState::Succeeded);
        state
            .work
            .deployments
            .entry("a1".into())
            .or_default()
            .entry("web".into())
            .or_default()
            .applied_task = Some(deployed.clone());
        let total = PLAN_HISTORY + PLAN_SLACK;
        for index in 3..=total as u64 {
            add_plan(&mut state, index, TaskState::Succeeded);
        }
        state.prune_history();
        assert_eq!(
            state.work.plans.len(),
            total,
            "nothing pruned until the slack is used"
        );
        let newest = add_plan(&mut state, total as u64 + 1, TaskState::Succeeded);
        state.prune_history();
        assert_eq!(state.work.plans.len(), PLAN_HISTORY);
        assert_eq!(state.work.tasks.len(), PLAN_HISTORY);
        for kept in [&pending, &deployed, &newest] {
            assert!(state.work.tasks.contains_key(kept), "{kept} was kept");
        }
        // What went were the oldest finished ones.
        assert!(
            !state
                .work
                .tasks
                .contains_key(&TaskId::of_plan(&PlanId::at(3, 0), 0))
        );
        let kept_from = total as u64 + 1 - (PLAN_HISTORY as u64 - 2) + 1;
        assert!(
            state
                .work
                .tasks
                .contains_key(&TaskId::of_plan(&PlanId::at(kept_from, 0), 0))
        );
        assert!(
            !state
                .work
                .tasks
                .contains_key(&TaskId::of_plan(&PlanId::at(kept_from - 1, 0), 0))
        );
    }
}
