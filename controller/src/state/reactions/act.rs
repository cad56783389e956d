//! Carrying out a rule's action (or, dry, saying what it would do), and
//! keeping it within the rule's blast radius.

use std::collections::BTreeSet;

use levee_common::ids::{AgentId, PlanId, TaskId};
use levee_common::spec::{Guardrails, RuleAction};

use crate::engine::planner::{self, Action, Trigger};
use crate::state::ClusterState;
use crate::state::Entry;
use crate::state::command as cmd;
use crate::state::command::Response;
use crate::state::hosts::CONTROLLER_SOURCE;
use crate::state::records::{
    Cause, DRAINED, PendingApproval, ProvisionRecord, ProvisionState, RunSpec, TaskRecord,
    VersionOrigin,
};

/// What an action did.
pub(in crate::state) struct Acted {
    pub outcome: String,
    pub plan_id: Option<PlanId>,
    /// It changed something, so it counts against cooldowns and limits.
    pub counted: bool,
}

impl Acted {
    fn nothing(outcome: String) -> Self {
        Self {
            outcome,
            plan_id: None,
            counted: false,
        }
    }

    fn planned(outcome: &str, plan_id: Option<PlanId>) -> Self {
        let outcome = match &plan_id {
            Some(plan) => format!("{outcome}: plan {plan}"),
            None => outcome.to_owned(),
        };
        Self {
            outcome,
            plan_id,
            counted: true,
        }
    }
}

/// The most hosts a rule may touch per window among `live` hosts; a share
/// rounds up, so a small fleet still allows one.
pub fn blast_limit(guardrails: &Guardrails, live: usize) -> usize {
    let by_count = (guardrails.max_hosts > 0).then_some(guardrails.max_hosts as usize);
    let by_share = (guardrails.max_hosts_share > 0.0)
        .then(|| (guardrails.max_hosts_share * live as f64).ceil() as usize);
    match (by_count, by_share) {
        (Some(count), Some(share)) => count.min(share),
        (Some(limit), None) | (None, Some(limit)) => limit,
        (None, None) => usize::MAX,
    }
}

impl ClusterState {
    /// Carries out `pending` under `guardrails` (dry run, blast radius)
    /// and counts it against the rule's limits if it changed anything.
    pub(in crate::state) fn act(
        &mut self,
        entry: &mut Entry,
        pending: &PendingApproval,
        guardrails: &Guardrails,
    ) -> Acted {
        if guardrails.limits_hosts() && !guardrails.dry_run {
            return self.act_within_blast_radius(entry, pending, guardrails);
        }
        let acted = self.carry_out(entry, pending, guardrails.dry_run);
        if acted.counted {
            self.count_action(&pending.rule, entry);
        }
        acted
    }

    /// Acts on a copy first: the hosts its plan would send tasks to are
    /// known exactly, and the copy is kept only if they fit the radius.
    fn act_within_blast_radius(
        &mut self,
        entry: &mut Entry,
        pending: &PendingApproval,
        guardrails: &Guardrails,
    ) -> Acted {
        let mut trial = self.clone();
        let mut trial_entry = entry.clone();
        let acted = trial.carry_out(&mut trial_entry, pending, false);
        let hosts: BTreeSet<AgentId> = acted
            .plan_id
            .as_ref()
            .and_then(|plan_id| trial.work.plans.get(plan_id))
            .map(|plan| {
                plan.task_ids
                    .iter()
                    .filter_map(|task_id| trial.work.tasks.get(task_id))
                    .map(|task| task.agent_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let since = entry.at_ms.saturating_sub(guardrails.window_ms as i64);
        let mut touched: BTreeSet<AgentId> = self
            .rule_book
            .rule_state
            .get(&pending.rule)
            .map(|state| {
                state
                    .touched
                    .iter()
                    .filter(|(time, _)| *time > since)
                    .map(|(_, agent)| agent.clone())
                    .collect()
            })
            .unwrap_or_default();
        let before = touched.len();
        touched.extend(hosts.iter().cloned());
        let live = self
            .fleet
            .agents
            .values()
            .filter(|agent| !agent.lost)
            .count();
        let limit = blast_limit(guardrails, live);
        if touched.len() > limit {
            let reason = format!(
                "blast radius: {} would touch {} host(s), {} in the last {} ms with the {before} touched already; the limit is {limit} of {live} live hosts",
                super::describe(&pending.action),
                hosts.len(),
                touched.len(),
                guardrails.window_ms,
            );
            return Acted::nothing(self.hold(&pending.rule, reason));
        }
        *self = trial;
        *entry = trial_entry;
        let state = self
            .rule_book
            .rule_state
            .entry(pending.rule.clone())
            .or_default();
        while state
            .touched
            .front()
            .is_some_and(|(time, _)| *time <= since)
        {
            state.touched.pop_front();
        }
        state
            .touched
            .extend(hosts.into_iter().map(|agent| (entry.at_ms, agent)));
        if acted.counted {
            self.count_action(&pending.rule, entry);
        }
        acted
    }

    fn count_action(&mut self, rule: &str, entry: &mut Entry) {
        let state = self
            .rule_book
            .rule_state
            .entry(rule.to_owned())
            .or_default();
        state.last_action_ms = Some(entry.at_ms);
        state.recent.push_back(entry.at_ms);
        state.actions += 1;
    }

    fn carry_out(&mut self, entry: &mut Entry, pending: &PendingApproval, dry_run: bool) -> Acted {
        let host = &pending.agent;
        let cause = pending.cause.clone();
        let needs_host = pending.action.needs_host()
            && (host.as_str() == CONTROLLER_SOURCE || !self.fleet.agents.contains_key(host));
        if needs_host {
            return Acted::nothing(format!(
                "cannot {}: the event names no known agent (see the rule's `agent_from`)",
                super::describe(&pending.action)
            ));
        }
        if dry_run {
            return Acted::nothing(self.dry(pending));
        }
        match &pending.action {
            RuleAction::Repair { service } => {
                let trigger = Trigger::Repair {
                    service: service.clone(),
                    agent: host.clone(),
                };
                match self.plan(entry, cause, &trigger) {
                    Some(plan) => Acted::planned(&format!("repair {service}"), Some(plan)),
                    None => Acted::nothing(format!("repair {service}: not placed on {host}")),
                }
            }
            RuleAction::Scale { service, by, to } => {
                self.scale_by_rule(entry, cause, service, *by, *to)
            }
            RuleAction::Reschedule { service } => self.avoid(entry, cause, host, service),
            RuleAction::Drain {} => self.avoid(entry, cause, host, DRAINED),
            RuleAction::ApplyVersion { version } => {
                self.apply_version(entry, &pending.rule, *version)
            }
            RuleAction::Provision { provisioner, count } => {
                self.provision(entry, provisioner, *count, cause)
            }
            RuleAction::Webhook { url, token_file } => {
                self.notify(entry, pending, url, token_file.clone())
            }
            RuleAction::Run {
                argv,
                env,
                timeout_ms,
                selector,
            } => {
                let agents: Vec<AgentId> = match selector {
                    None => vec![host.clone()],
                    Some(selector) => self
                        .fleet
                        .agents
                        .values()
                        .filter(|agent| {
                            !agent.lost
                                && selector
                                    .iter()
                                    .all(|(key, value)| agent.labels.get(key) == Some(value))
                        })
                        .map(|agent| agent.agent_id.clone())
                        .collect(),
                };
                let run = RunSpec {
                    argv: argv.clone(),
                    env: env.clone(),
                    timeout_ms: *timeout_ms,
                };
                self.run_on(entry, cause, &pending.rule, agents, run)
            }
        }
    }

    /// Records a plan of one `run` task per agent. Run tasks belong to no
    /// service: no deployment, no rollout, no drift.
    fn run_on(
        &mut self,
        entry: &mut Entry,
        cause: Cause,
        rule: &str,
        agents: Vec<AgentId>,
        run: RunSpec,
    ) -> Acted {
        if agents.is_empty() {
            return Acted::nothing("no live agent matches the selector".into());
        }
        let plan_id = entry.next_plan_id();
        let mut task_ids = Vec::with_capacity(agents.len());
        for (index, agent) in agents.iter().enumerate() {
            let task_id = TaskId::of_plan(&plan_id, index);
            let mut task = TaskRecord::new(
                task_id.clone(),
                &plan_id,
                agent.clone(),
                format!("rule/{rule}"),
                Action::Run,
                entry,
                cause.clone(),
            );
            task.run = Some(run.clone());
            entry
                .now_pending
                .push((task.agent_id.clone(), task_id.clone()));
            self.work.tasks.insert(task_id.clone(), task);
            task_ids.push(task_id);
        }
        self.record_plan_of(plan_id.clone(), cause, task_ids, entry, Vec::new());
        Acted::planned(
            &format!("running {:?} on {} agent(s)", run.argv, agents.len()),
            Some(plan_id),
        )
    }

    /// What a dry run reports: the action, with what it would change.
    fn dry(&self, pending: &PendingApproval) -> String {
        match &pending.action {
            RuleAction::Scale { service, by, to } => match self.scale_target(service, *by, *to) {
                Some((current, next)) if current != next => {
                    format!("dry run: would scale {service} {current} -> {next}")
                }
                Some((current, _)) => format!("dry run: {service} would stay at {current}"),
                None => format!("no service {service}"),
            },
            action if action.needs_host() => format!(
                "dry run: would {} on {}",
                super::describe(action),
                pending.agent
            ),
            action => format!("dry run: would {}", super::describe(action)),
        }
    }

    /// A service's target now and what `by`/`to` would make it, clamped.
    fn scale_target(&self, service: &str, by: Option<i32>, to: Option<u32>) -> Option<(u32, u32)> {
        let spec = self.desired.specs.services.get(service)?;
        let current = planner::target_of(spec, &self.desired.targets);
        let wanted = match (by, to) {
            (_, Some(to)) => to,
            (Some(by), None) => current.saturating_add_signed(by),
            (None, None) => current,
        };
        Some((current, spec.replicas.clamp(wanted)))
    }

    /// Moves a service's replica target as a rule asks, within its bounds.
    fn scale_by_rule(
        &mut self,
        entry: &mut Entry,
        cause: Cause,
        service: &str,
        by: Option<i32>,
        to: Option<u32>,
    ) -> Acted {
        let Some((current, next)) = self.scale_target(service, by, to) else {
            return Acted::nothing(format!("no service {service}"));
        };
        if next == current {
            let wanted = match (by, to) {
                (_, Some(to)) => i64::from(to),
                (Some(by), None) => i64::from(current) + i64::from(by),
                (None, None) => i64::from(current),
            };
            let why = match wanted.cmp(&i64::from(current)) {
                std::cmp::Ordering::Greater => " (its max)",
                std::cmp::Ordering::Less => " (its min)",
                std::cmp::Ordering::Equal => " already",
            };
            return Acted::nothing(format!("{service} stays at {current}{why}"));
        }
        self.desired.targets.insert(service.to_owned(), next);
        let scaling = self
            .rule_book
            .scaling
            .entry(service.to_owned())
            .or_default();
        if next > current {
            scaling.last_up_ms = Some(entry.at_ms);
        } else {
            scaling.last_down_ms = Some(entry.at_ms);
        }
        let plan_id = self.plan(entry, cause, &Trigger::Reconcile);
        Acted::planned(&format!("scaled {service} {current} -> {next}"), plan_id)
    }

    /// Keeps `service` (or everything, for `DRAINED`) off `agent` and
    /// places it elsewhere.
    fn avoid(&mut self, entry: &mut Entry, cause: Cause, agent: &AgentId, service: &str) -> Acted {
        let what = if service == DRAINED {
            format!("drained {agent}")
        } else {
            format!("moved {service} off {agent}")
        };
        let Some(record) = self.fleet.agents.get_mut(agent) else {
            return Acted::nothing(format!("no agent {agent}"));
        };
        if !record.avoid.insert(service.to_owned()) {
            return Acted::nothing(format!("{what} already"));
        }
        let plan_id = self.plan(entry, cause, &Trigger::Reconcile);
        Acted::planned(&what, plan_id)
    }

    fn apply_version(&mut self, entry: &mut Entry, rule: &str, version: u64) -> Acted {
        let Some(old) = self.desired.versions.get(&version) else {
            return Acted::nothing(format!(
                "version {version} is not in the history (it keeps versions {})",
                self.version_range()
            ));
        };
        if old.specs == self.desired.specs {
            return Acted::nothing(format!("the current specs are version {version}'s already"));
        }
        let specs = old.specs.clone();
        let response = self.put_specs(
            entry,
            specs,
            format!("rule {rule}"),
            format!("rule {rule}"),
            VersionOrigin::Rollback { to: version },
        );
        match response {
            Response::SpecsApplied(cmd::SpecsApplied {
                version: new,
                plan_ids,
                ..
            }) => Acted::planned(
                &format!("applied version {version} as version {new}"),
                plan_ids.into_iter().next(),
            ),
            other => Acted::nothing(format!("version {version} not applied: {other:?}")),
        }
    }

    /// Asks the provisioner for `count` hosts, within its `max_hosts`; the
    /// leader runs it (`dispatch::provisioner`).
    fn provision(
        &mut self,
        entry: &mut Entry,
        provisioner: &str,
        count: u32,
        cause: Cause,
    ) -> Acted {
        let Some(spec) = self.desired.specs.provisioners.get(provisioner) else {
            return Acted::nothing(format!("no provisioner {provisioner}"));
        };
        let holding = self
            .effects
            .provisions
            .values()
            .filter(|record| record.provisioner == provisioner && record.state.holds_a_host())
            .count() as u32;
        if holding.saturating_add(count) > spec.max_hosts {
            return Acted::nothing(format!(
                "provisioner {provisioner} has made or is making {holding} host(s); {count} more would pass its max_hosts of {}",
                spec.max_hosts
            ));
        }
        let mut ids = Vec::new();
        for _ in 0..count {
            self.effects.provisions_asked += 1;
            let id = format!("h{}", self.effects.provisions_asked);
            self.effects.provisions.insert(
                id.clone(),
                ProvisionRecord {
                    id: id.clone(),
                    provisioner: provisioner.to_owned(),
                    cause: cause.clone(),
                    requested_ms: entry.at_ms,
                    state: ProvisionState::Pending,
                },
            );
            ids.push(id);
        }
        Acted {
            outcome: format!("asked provisioner {provisioner} for {}", ids.join(", ")),
            plan_id: None,
            counted: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blast_limit_is_the_tighter_of_count_and_share_rounded_up() {
        let limits = |max_hosts, max_hosts_share, live| {
            blast_limit(
                &Guardrails {
                    max_hosts,
                    max_hosts_share,
                    window_ms: 1,
                    ..Guardrails::default()
                },
                live,
            )
        };
        assert_eq!(limits(0, 0.0, 10), usize::MAX);
        assert_eq!(limits(3, 0.0, 10), 3);
        assert_eq!(limits(0, 0.25, 10), 3, "2.5 rounds up");
        assert_eq!(limits(0, 0.25, 3), 1, "a small fleet still allows one");
        assert_eq!(limits(2, 0.5, 10), 2);
    }
}
