//! Rules reacting to a committed event: which rules match, what each may
//! do under its guardrails, and the plans that follow. Pure: every time
//! comes from the command, so every node decides the same.
//!
//! - `window`: counts and averages over time, per key.
//! - `act`: carrying out each kind of action, and the blast radius.
//! - `signal`: a rule whose events stopped coming.

pub(super) mod act;
mod signal;
pub mod window;

use levee_common::event::Event;
use levee_common::ids::{AgentId, PlanId};
use levee_common::spec::{Guardrails, RuleAction, RuleSpec};

use self::window::Progress;
use super::ClusterState;
use super::command::Response;
use super::hosts::CONTROLLER_SOURCE;
use super::records::{AgentRecord, Cause, PendingApproval};
use crate::engine::planner;
use crate::engine::rules;
use crate::state::Entry;
use crate::state::command as cmd;

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
        RuleAction::Reschedule { service } => format!("reschedule {service} away"),
        RuleAction::Drain {} => "drain the host".into(),
        RuleAction::ApplyVersion { version } => format!("apply spec version {version}"),
        RuleAction::Provision { provisioner, count } => {
            format!("provision {count} host(s) with {provisioner}")
        }
        RuleAction::Webhook { url, .. } => format!("call {url}"),
        RuleAction::Run {
            argv,
            selector: None,
            ..
        } => format!("run {argv:?} on the host"),
        RuleAction::Run {
            argv,
            selector: Some(selector),
            ..
        } => {
            let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if labels.is_empty() {
                format!("run {argv:?} on every agent")
            } else {
                format!("run {argv:?} on agents with {}", labels.join(","))
            }
        }
    }
}

impl ClusterState {
    pub(super) fn react(&mut self, entry: &mut Entry, event: &Event) -> Reaction {
        let matched: Vec<RuleSpec> =
            rules::matching_rules(&self.desired.specs, event, self.agent_of(event))
                .into_iter()
                .cloned()
                .collect();
        let mut reaction = Reaction::default();
        // An event a Levee change caused (a workload exiting right after a
        // task started it) carries that task: its depth continues the chain.
        let caused_by = event
            .data
            .get("caused_by_task")
            .and_then(|task| task.as_str())
            .and_then(|task| self.work.tasks.get(&levee_common::ids::TaskId::from(task)));
        // The controllers' own events (a shortfall a rule's change left)
        // carry the depth of the change that raised them.
        let raised_depth = (event.source == CONTROLLER_SOURCE)
            .then(|| {
                event
                    .data
                    .get("cause_depth")
                    .and_then(serde_json::Value::as_u64)
            })
            .flatten()
            .map_or(0, |depth| depth as u32);
        let depth = caused_by
            .map_or(0, |task| task.cause.depth)
            .max(raised_depth);
        let chain = caused_by.map(|task| format!("{} <- {}", task.task_id, task.cause.reason));
        for rule in matched {
            let name = rule.name.clone();
            let outcome = self.react_one(
                entry,
                event,
                &rule,
                depth,
                chain.as_deref(),
                &mut reaction.plan_ids,
            );
            reaction.outcomes.push(format!("{name}: {outcome}"));
            reaction.rules.push(name);
        }
        reaction
    }

    /// One matched rule's decision and action; returns its outcome.
    fn react_one(
        &mut self,
        entry: &mut Entry,
        event: &Event,
        rule: &RuleSpec,
        depth: u32,
        chain: Option<&str>,
        plan_ids: &mut Vec<PlanId>,
    ) -> String {
        let returned = self.signal_seen(&rule.name, entry);
        let outcome = self.decide(entry, event, rule, depth, chain, plan_ids);
        match returned {
            Some(silent_for) => format!("{outcome} (signal back after {silent_for} ms silent)"),
            None => outcome,
        }
    }

    /// A matched rule's window, guardrails and action, in that order.
    fn decide(
        &mut self,
        entry: &mut Entry,
        event: &Event,
        rule: &RuleSpec,
        depth: u32,
        chain: Option<&str>,
        plan_ids: &mut Vec<PlanId>,
    ) -> String {
        let name = &rule.name;
        let host = match self.host_of(rule, event, entry) {
            Ok(host) => host,
            Err(reason) => return self.hold(name, reason),
        };
        let mut window_key = None;
        let mut because = String::new();
        if let Some(window) = &rule.window {
            let agent = host.as_ref().and_then(|host| self.fleet.agents.get(host));
            let progress = window::key(window, agent).and_then(|key| {
                let document = self.match_document(event);
                let samples = self
                    .rule_book
                    .rule_state
                    .entry(name.clone())
                    .or_default()
                    .windows
                    .entry(key.clone())
                    .or_default();
                let progress = window::observe(window, samples, &document, entry.at_ms)?;
                window_key = Some(key);
                Ok(progress)
            });
            match progress {
                Err(reason) => return self.hold(name, format!("not counted: {reason}")),
                Ok(Progress::Gathering(so_far)) => return format!("window: {so_far}"),
                Ok(Progress::Ready(why)) => because = format!(" ({why})"),
            }
        }
        let guardrails = &rule.guardrails;
        let verdict = if depth >= guardrails.max_chain_depth() {
            Verdict::Hold(format!(
                "refused: this event ends a chain of {depth} reactions (limit {}): {}",
                guardrails.max_chain_depth(),
                chain.unwrap_or("raised by the controllers after a rule's change")
            ))
        } else {
            self.verdict(name, &rule.action, guardrails, entry)
        };
        let cause = Cause {
            reason: format!("rule {name}{because}"),
            event_id: Some(event.id()),
            rule: Some(name.clone()),
            depth: depth + 1,
        };
        let target = host.unwrap_or_else(|| event.key.agent_id.clone());
        let pending = PendingApproval {
            id: String::new(),
            rule: name.clone(),
            action: rule.action.clone(),
            agent: target,
            cause,
            at_ms: entry.at_ms,
            event: Some(event.clone()),
        };
        match verdict {
            Verdict::Hold(reason) => self.hold(name, reason),
            Verdict::Act if guardrails.approval && !guardrails.dry_run => {
                self.rule_book.approvals_asked += 1;
                let id = format!("a{}", self.rule_book.approvals_asked);
                let described = describe(&rule.action);
                self.rule_book.approvals.insert(
                    id.clone(),
                    PendingApproval {
                        id: id.clone(),
                        ..pending
                    },
                );
                format!("awaiting approval: `levee approve {id}` to {described}")
            }
            Verdict::Act => {
                let acted = self.act(entry, &pending, guardrails);
                plan_ids.extend(acted.plan_id);
                if acted.counted
                    && let Some(key) = &window_key
                    && let Some(state) = self.rule_book.rule_state.get_mut(name)
                {
                    // The next action needs a window of its own.
                    state.windows.remove(key);
                }
                acted.outcome
            }
        }
    }

    fn hold(&mut self, rule: &str, reason: String) -> String {
        self.rule_book
            .rule_state
            .entry(rule.to_owned())
            .or_default()
            .held += 1;
        format!("held: {reason}")
    }

    /// The event as rule patterns and windows see it: its fields, plus the
    /// agent it is about.
    fn match_document(&self, event: &Event) -> serde_json::Value {
        rules::match_document(event, self.agent_of(event))
    }

    /// The agent an event is about: its sender, or for the controllers'
    /// host events (`host.lost`, `host.recovered`) the agent named as their
    /// subject. Other controller events name services, rules or timers.
    fn agent_of(&self, event: &Event) -> Option<&AgentRecord> {
        self.fleet.agents.get(&event.key.agent_id).or_else(|| {
            (event.source == CONTROLLER_SOURCE && event.event_type.starts_with("host."))
                .then(|| {
                    self.fleet
                        .agents
                        .get(&AgentId::from(event.subject.as_str()))
                })
                .flatten()
        })
    }

    /// The host a rule acts on for an event: the agent named at the rule's
    /// `agent_from` path, else the agent the event is about.
    ///
    /// An event may name a host other than its sender's only when the
    /// controllers raised it, or it came from outside through an endpoint
    /// allowed to name hosts (`may_name_hosts`): otherwise one agent (or
    /// anyone holding its certificate) could act on every other host.
    fn host_of(
        &self,
        rule: &RuleSpec,
        event: &Event,
        entry: &Entry,
    ) -> Result<Option<AgentId>, String> {
        let Some(path) = &rule.agent_from else {
            return Ok(self.agent_of(event).map(|agent| agent.agent_id.clone()));
        };
        let document = self.match_document(event);
        let Some(named) = window::field(&document, path)
            .and_then(serde_json::Value::as_str)
            .map(AgentId::from)
            .filter(|agent| self.fleet.agents.contains_key(agent))
        else {
            return Ok(None);
        };
        let from_agent = event.source.starts_with("agent/");
        let trusted = if from_agent {
            named == event.key.agent_id || entry.unchecked_sender
        } else if event.source == CONTROLLER_SOURCE {
            true
        } else {
            entry.outside_names_hosts
        };
        if trusted {
            return Ok(Some(named));
        }
        Err(if from_agent {
            format!(
                "`agent_from: {path}` names agent {named}, but agent {} sent the event; an agent's events act on itself only",
                event.key.agent_id
            )
        } else {
            format!(
                "`agent_from: {path}` names agent {named}, but {} may not name hosts (set `may_name_hosts = true` on it)",
                event.source
            )
        })
    }

    /// An operator's answer to a rule awaiting approval: approved, it acts
    /// now (its guardrails are checked again); rejected, it is dropped.
    pub(super) fn answer_approval(
        &mut self,
        entry: &mut Entry,
        id: &str,
        approve: bool,
        by: &str,
    ) -> Response {
        let Some(pending) = self.rule_book.approvals.remove(id) else {
            return Response::Rejected(cmd::Rejected {
                reason: format!("nothing awaits approval as {id} (see `levee approvals`)"),
            });
        };
        if !approve {
            return Response::Answered(cmd::Answered {
                outcome: format!("{}: rejected by {by}", pending.rule),
                plan_id: None,
            });
        }
        // The rule may have changed while the action waited.
        let Some(rule) = self.desired.specs.rules.get(&pending.rule) else {
            return Response::Answered(cmd::Answered {
                outcome: format!("{}: dropped: the rule no longer exists", pending.rule),
                plan_id: None,
            });
        };
        if rule.action != pending.action {
            return Response::Answered(cmd::Answered {
                outcome: format!("{}: dropped: the rule's action changed since", pending.rule),
                plan_id: None,
            });
        }
        let guardrails = rule.guardrails.clone();
        if let Verdict::Hold(reason) =
            self.verdict(&pending.rule, &pending.action, &guardrails, entry)
        {
            return Response::Answered(cmd::Answered {
                outcome: format!("{}: approved by {by}, but held: {reason}", pending.rule),
                plan_id: None,
            });
        }
        let mut cause = pending.cause.clone();
        cause.reason = format!("{} (approved by {by})", cause.reason);
        let pending = PendingApproval { cause, ..pending };
        let acted = self.act(entry, &pending, &guardrails);
        Response::Answered(cmd::Answered {
            outcome: format!("{}: approved by {by}: {}", pending.rule, acted.outcome),
            plan_id: acted.plan_id,
        })
    }

    /// Whether the rule's guardrails let it act now.
    fn verdict(
        &mut self,
        rule: &str,
        action: &RuleAction,
        guardrails: &Guardrails,
        entry: &mut Entry,
    ) -> Verdict {
        if let Some(waiting) = self
            .rule_book
            .approvals
            .values()
            .find(|pending| pending.rule == rule)
        {
            return Verdict::Hold(format!("{} awaits approval", waiting.id));
        }
        let state = self
            .rule_book
            .rule_state
            .entry(rule.to_owned())
            .or_default();
        if guardrails.window_ms > 0 {
            let since = entry.at_ms.saturating_sub(guardrails.window_ms as i64);
            while state.recent.front().is_some_and(|time| *time <= since) {
                state.recent.pop_front();
            }
        } else {
            state.recent.clear();
        }
        if let Some(last) = state.last_action_ms {
            let ready = last.saturating_add(guardrails.cooldown_ms as i64);
            if guardrails.cooldown_ms > 0 && entry.at_ms < ready {
                return Verdict::Hold(format!("cooldown, {} ms left", ready - entry.at_ms));
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
                .desired
                .specs
                .services
                .get(service)
                .map(|spec| planner::target_of(spec, &self.desired.targets));
            let down = match (current, by, to) {
                (Some(_), Some(by), _) => *by < 0,
                (Some(current), None, Some(to)) => *to < current,
                _ => false,
            };
            let last_up = self
                .rule_book
                .scaling
                .get(service)
                .and_then(|record| record.last_up_ms);
            if let Some(last_up) = last_up
                && down
            {
                let ready = last_up.saturating_add(guardrails.scale_down_after_up_ms as i64);
                if entry.at_ms < ready {
                    return Verdict::Hold(format!(
                        "{service} was scaled up {} ms ago",
                        entry.at_ms - last_up
                    ));
                }
            }
        }
        Verdict::Act
    }
}
