//! Rules reacting to a committed event: which rules match, what each may
//! do under its guardrails, and the plans that follow. Pure: every time
//! comes from the command, so every node decides the same.

use levee_common::event::Event;
use levee_common::ids::{AgentId, PlanId};
use levee_common::spec::{Guardrails, RuleAction};

use super::ClusterState;
use super::command::Response;
use super::hosts::CONTROLLER_SOURCE;
use super::records::{AgentRecord, Cause, LogPosition, PendingApproval};
use crate::engine::planner::{self, Trigger};
use crate::engine::rules;

/// What the rules did with one event.
#[derive(Debug, Default)]
pub struct Reaction {
    pub rules: Vec<String>,
    pub plan_ids: Vec<PlanId>,
    pub outcomes: Vec<String>,
}

/// A rule's decision before it acts.
enum Verdict {
    Act,
    Hold(String),
}

/// What a rule would do, in words, e.g. `scale web by 2`.
pub fn describe(action: &RuleAction) -> String {
    match action {
        RuleAction::Repair { service } => format!("repair {service}"),
        RuleAction::Scale {
            service,
            by: Some(by),
            ..
        } => format!("scale {service} by {by}"),
        RuleAction::Scale { service, to, .. } => {
            format!("scale {service} to {}", to.unwrap_or_default())
        }
    }
}

impl ClusterState {
    pub(super) fn react(
        &mut self,
        at: LogPosition,
        at_ms: i64,
        next_plan_ordinal: &mut usize,
        event: &Event,
    ) -> Reaction {
        let matched: Vec<(String, RuleAction, Guardrails)> =
            rules::matching_rules(&self.specs, event, self.agent_of(event))
                .into_iter()
                .map(|rule| {
                    (
                        rule.name.clone(),
                        rule.action.clone(),
                        rule.guardrails.clone(),
                    )
                })
                .collect();
        let mut reaction = Reaction::default();
        // An event a Levee change caused (a workload exiting right after a
        // task started it) carries that task: its depth continues the chain.
        let caused_by = event
            .data
            .get("caused_by_task")
            .and_then(|task| task.as_str())
            .and_then(|task| self.tasks.get(&levee_common::ids::TaskId::from(task)));
        let depth = caused_by.map_or(0, |task| task.cause.depth);
        let chain = caused_by.map(|task| format!("{} <- {}", task.task_id, task.cause.reason));
        for (rule, action, guardrails) in matched {
            let cause = Cause {
                reason: format!("rule {rule}"),
                event_id: Some(event.id()),
                rule: Some(rule.clone()),
                depth: depth + 1,
            };
            let verdict = if depth >= guardrails.max_chain_depth() {
                Verdict::Hold(format!(
                    "refused: this event ends a chain of {depth} reactions (limit {}): {}",
                    guardrails.max_chain_depth(),
                    chain.clone().unwrap_or_default()
                ))
            } else {
                self.verdict(&rule, &action, &guardrails, at_ms)
            };
            let outcome = match verdict {
                Verdict::Hold(reason) => {
                    self.rule_state.entry(rule.clone()).or_default().held += 1;
                    format!("held: {reason}")
                }
                Verdict::Act if guardrails.approval && !guardrails.dry_run => {
                    self.approvals_asked += 1;
                    let id = format!("a{}", self.approvals_asked);
                    self.approvals.insert(
                        id.clone(),
                        PendingApproval {
                            id: id.clone(),
                            rule: rule.clone(),
                            action: action.clone(),
                            agent: event.key.agent_id.clone(),
                            cause: cause.clone(),
                            at_ms,
                        },
                    );
                    format!(
                        "awaiting approval: `levee approve {id}` to {}",
                        describe(&action)
                    )
                }
                Verdict::Act => {
                    let pending = PendingApproval {
                        id: String::new(),
                        rule: rule.clone(),
                        action: action.clone(),
                        agent: event.key.agent_id.clone(),
                        cause,
                        at_ms,
                    };
                    let (outcome, plan_id) =
                        self.act(at, at_ms, *next_plan_ordinal, &pending, guardrails.dry_run);
                    if plan_id.is_some() {
                        *next_plan_ordinal += 1;
                    }
                    reaction.plan_ids.extend(plan_id);
                    outcome
                }
            };
            reaction.outcomes.push(format!("{rule}: {outcome}"));
            reaction.rules.push(rule);
        }
        reaction
    }

    /// The agent an event is about: its sender, or for the controllers'
    /// own events (`host.lost`...) the agent named as their subject.
    fn agent_of(&self, event: &Event) -> Option<&AgentRecord> {
        self.agents.get(&event.key.agent_id).or_else(|| {
            (event.source == CONTROLLER_SOURCE)
                .then(|| self.agents.get(&AgentId::from(event.subject.as_str())))
                .flatten()
        })
    }

    /// Carries out a rule's action (or, dry, says what it would do).
    /// Returns the outcome and the plan, if one was made.
    fn act(
        &mut self,
        at: LogPosition,
        at_ms: i64,
        ordinal: usize,
        pending: &PendingApproval,
        dry_run: bool,
    ) -> (String, Option<PlanId>) {
        let (outcome, plan_id, acted) = match &pending.action {
            RuleAction::Repair { service } if pending.agent.as_str() == CONTROLLER_SOURCE => (
                format!("cannot repair {service}: the event is not from an agent"),
                None,
                false,
            ),
            RuleAction::Repair { service } if dry_run => (
                format!("dry run: would repair {service} on {}", pending.agent),
                None,
                false,
            ),
            RuleAction::Repair { service } => {
                let trigger = Trigger::Repair {
                    service: service.clone(),
                    agent: pending.agent.clone(),
                };
                let plan_id = self.plan(at, at_ms, ordinal, pending.cause.clone(), &trigger);
                let outcome = match &plan_id {
                    Some(plan) => format!("repair {service}: plan {plan}"),
                    None => format!("repair {service}: not placed on {}", pending.agent),
                };
                (outcome, plan_id, true)
            }
            RuleAction::Scale { service, by, to } => self.scale_by_rule(
                at,
                at_ms,
                ordinal,
                pending.cause.clone(),
                service,
                *by,
                *to,
                dry_run,
            ),
        };
        if acted {
            let state = self.rule_state.entry(pending.rule.clone()).or_default();
            state.last_action_ms = Some(at_ms);
            state.recent.push_back(at_ms);
            state.actions += 1;
        }
        (outcome, plan_id)
    }

    /// An operator's answer to a rule awaiting approval: approved, it acts
    /// now (its guardrails are checked again); rejected, it is dropped.
    pub(super) fn answer_approval(
        &mut self,
        at: LogPosition,
        at_ms: i64,
        id: &str,
        approve: bool,
        by: &str,
    ) -> Response {
        let Some(pending) = self.approvals.remove(id) else {
            return Response::Rejected {
                reason: format!("nothing awaits approval as {id} (see `levee approvals`)"),
            };
        };
        if !approve {
            return Response::Answered {
                outcome: format!("{}: rejected by {by}", pending.rule),
                plan_id: None,
            };
        }
        // The rule may have changed while the action waited.
        let Some(rule) = self.specs.rules.get(&pending.rule) else {
            return Response::Answered {
                outcome: format!("{}: dropped: the rule no longer exists", pending.rule),
                plan_id: None,
            };
        };
        if rule.action != pending.action {
            return Response::Answered {
                outcome: format!("{}: dropped: the rule's action changed since", pending.rule),
                plan_id: None,
            };
        }
        let guardrails = rule.guardrails.clone();
        if let Verdict::Hold(reason) =
            self.verdict(&pending.rule, &pending.action, &guardrails, at_ms)
        {
            return Response::Answered {
                outcome: format!("{}: approved by {by}, but held: {reason}", pending.rule),
                plan_id: None,
            };
        }
        let mut cause = pending.cause.clone();
        cause.reason = format!("{} (approved by {by})", cause.reason);
        let pending = PendingApproval { cause, ..pending };
        let (outcome, plan_id) = self.act(at, at_ms, 0, &pending, guardrails.dry_run);
        Response::Answered {
            outcome: format!("{}: approved by {by}: {outcome}", pending.rule),
            plan_id,
        }
    }

    /// Whether the rule's guardrails let it act now.
    fn verdict(
        &mut self,
        rule: &str,
        action: &RuleAction,
        guardrails: &Guardrails,
        at_ms: i64,
    ) -> Verdict {
        if let Some(waiting) = self.approvals.values().find(|pending| pending.rule == rule) {
            return Verdict::Hold(format!("{} awaits approval", waiting.id));
        }
        let state = self.rule_state.entry(rule.to_owned()).or_default();
        if guardrails.window_ms > 0 {
            let since = at_ms.saturating_sub(guardrails.window_ms as i64);
            while state.recent.front().is_some_and(|time| *time <= since) {
                state.recent.pop_front();
            }
        } else {
            state.recent.clear();
        }
        if let Some(last) = state.last_action_ms {
            let ready = last.saturating_add(guardrails.cooldown_ms as i64);
            if guardrails.cooldown_ms > 0 && at_ms < ready {
                return Verdict::Hold(format!("cooldown, {} ms left", ready - at_ms));
            }
        }
        if guardrails.max_actions > 0 && state.recent.len() >= guardrails.max_actions as usize {
            return Verdict::Hold(format!(
                "{} actions in the last {} ms, the most allowed",
                state.recent.len(),
                guardrails.window_ms
            ));
        }
        if let RuleAction::Scale { service, by, to } = action
            && guardrails.scale_down_after_up_ms > 0
        {
            let current = self
                .specs
                .services
                .get(service)
                .map(|spec| planner::target_of(spec, &self.targets));
            let down = match (current, by, to) {
                (Some(_), Some(by), _) => *by < 0,
                (Some(current), None, Some(to)) => *to < current,
                _ => false,
            };
            let last_up = self
                .scaling
                .get(service)
                .and_then(|record| record.last_up_ms);
            if let Some(last_up) = last_up
                && down
            {
                let ready = last_up.saturating_add(guardrails.scale_down_after_up_ms as i64);
                if at_ms < ready {
                    return Verdict::Hold(format!(
                        "{service} was scaled up {} ms ago",
                        at_ms - last_up
                    ));
                }
            }
        }
        Verdict::Act
    }

    /// Moves a service's replica target as a rule asks, within its bounds.
    /// Returns the outcome, the plan, and whether it counted as an action.
    #[allow(clippy::too_many_arguments)]
    fn scale_by_rule(
        &mut self,
        at: LogPosition,
        at_ms: i64,
        ordinal: usize,
        cause: Cause,
        service: &str,
        by: Option<i32>,
        to: Option<u32>,
        dry_run: bool,
    ) -> (String, Option<PlanId>, bool) {
        let Some(spec) = self.specs.services.get(service) else {
            return (format!("no service {service}"), None, false);
        };
        let current = planner::target_of(spec, &self.targets);
        let wanted = match (by, to) {
            (_, Some(to)) => to,
            (Some(by), None) => current.saturating_add_signed(by),
            (None, None) => current,
        };
        let next = spec.replicas.clamp(wanted);
        if next == current {
            let why = match wanted.cmp(&current) {
                std::cmp::Ordering::Greater => " (its max)",
                std::cmp::Ordering::Less => " (its min)",
                std::cmp::Ordering::Equal => " already",
            };
            return (format!("{service} stays at {current}{why}"), None, false);
        }
        if dry_run {
            return (
                format!("dry run: would scale {service} {current} -> {next}"),
                None,
                false,
            );
        }
        self.targets.insert(service.to_owned(), next);
        let scaling = self.scaling.entry(service.to_owned()).or_default();
        if next > current {
            scaling.last_up_ms = Some(at_ms);
        } else {
            scaling.last_down_ms = Some(at_ms);
        }
        let plan_id = self.plan(at, at_ms, ordinal, cause, &Trigger::Reconcile);
        let outcome = match &plan_id {
            Some(plan) => format!("scaled {service} {current} -> {next}: plan {plan}"),
            None => format!("scaled {service} {current} -> {next}"),
        };
        (outcome, plan_id, true)
    }
}
