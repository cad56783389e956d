//! A rule's signal: the events it matches. When they stop coming for the
//! rule's `signal.silent_after_ms`, the signal is silent, a state of its
//! own: the rule's windows are emptied (no decision rests on stale
//! samples), and it holds, alerts or falls back as its spec says. The
//! leader notices the silence on its clock and commits `SignalSilent`.

use levee_common::event::types::RULE_SILENT;
use levee_common::spec::OnSilent;
use serde_json::json;

use crate::state::ClusterState;
use crate::state::Entry;
use crate::state::command::Response;
use crate::state::hosts::CONTROLLER_SOURCE;
use crate::state::records::{Cause, PendingApproval};

use super::Verdict;

impl ClusterState {
    /// A matching event came: the signal is live. Returns for how long it
    /// had been silent, if it was.
    pub(super) fn signal_seen(&mut self, rule: &str, entry: &mut Entry) -> Option<i64> {
        let state = self
            .rule_book
            .rule_state
            .entry(rule.to_owned())
            .or_default();
        let was_silent = std::mem::take(&mut state.silent)
            .then(|| entry.at_ms - state.last_signal_ms.unwrap_or(entry.at_ms));
        state.last_signal_ms = Some(entry.at_ms);
        was_silent
    }

    /// Starts the silence clock of rules with a signal that have none yet
    /// (new rules): silence is counted from when they were added.
    pub(in crate::state) fn start_signals(&mut self, entry: &mut Entry) {
        let watched: Vec<String> = self
            .desired
            .specs
            .rules
            .values()
            .filter(|rule| rule.signal.is_some())
            .map(|rule| rule.name.clone())
            .collect();
        for rule in watched {
            let state = self.rule_book.rule_state.entry(rule).or_default();
            state.last_signal_ms.get_or_insert(entry.at_ms);
        }
    }

    /// Rules whose signal has been silent too long at `now_ms` and is not
    /// marked silent yet, with when they last heard (for the leader).
    pub fn overdue_signals(&self, now_ms: i64) -> Vec<(String, i64)> {
        self.signals_heard()
            .filter(|(_, _, silent_at)| now_ms >= *silent_at)
            .map(|(rule, last, _)| (rule.to_owned(), last))
            .collect()
    }

    /// When the earliest signal not yet silent will have been quiet for
    /// its `silent_after_ms`: when the leader must look again.
    pub fn next_signal_deadline(&self) -> Option<i64> {
        self.signals_heard()
            .map(|(_, _, silent_at)| silent_at)
            .min()
    }

    /// Each rule with a signal not marked silent: its name, when it last
    /// heard, and when it goes silent if nothing comes.
    fn signals_heard(&self) -> impl Iterator<Item = (&str, i64, i64)> {
        self.desired.specs.rules.values().filter_map(|rule| {
            let signal = rule.signal.as_ref()?;
            let state = self.rule_book.rule_state.get(&rule.name)?;
            let last = state.last_signal_ms?;
            let silent_at = last.saturating_add(signal.silent_after_ms as i64);
            (!state.silent).then_some((rule.name.as_str(), last, silent_at))
        })
    }

    /// The leader found `rule`'s signal silent since `last_signal_ms`. Void
    /// if an event came meanwhile (the time moved) or it is marked already.
    pub(in crate::state) fn signal_silent(
        &mut self,
        entry: &mut Entry,
        rule: &str,
        last_signal_ms: i64,
    ) -> Response {
        let Some(spec) = self.desired.specs.rules.get(rule).cloned() else {
            return Response::Nothing;
        };
        let Some(signal) = spec.signal else {
            return Response::Nothing;
        };
        let state = self
            .rule_book
            .rule_state
            .entry(rule.to_owned())
            .or_default();
        if state.silent || state.last_signal_ms != Some(last_signal_ms) {
            return Response::Nothing;
        }
        state.silent = true;
        state.windows.clear();
        let silent_ms = entry.at_ms - last_signal_ms;
        let fallback = match (&signal.fallback, signal.on_silent) {
            (Some(action), OnSilent::Fallback) => {
                let pending = PendingApproval {
                    id: String::new(),
                    rule: rule.to_owned(),
                    action: action.clone(),
                    agent: CONTROLLER_SOURCE.into(),
                    cause: Cause {
                        reason: format!("rule {rule}: signal silent for {silent_ms} ms: fallback"),
                        event_id: None,
                        rule: Some(rule.to_owned()),
                        depth: 1,
                    },
                    at_ms: entry.at_ms,
                    event: None,
                };
                let outcome = match self.verdict(rule, action, &spec.guardrails, entry) {
                    Verdict::Hold(reason) => self.hold(rule, reason),
                    Verdict::Act => self.act(entry, &pending, &spec.guardrails).outcome,
                };
                Some(outcome)
            }
            _ => None,
        };
        if signal.on_silent != OnSilent::Hold {
            let data = json!({
                "rule": rule,
                "silent_ms": silent_ms,
                "on_silent": signal.on_silent,
                "fallback": fallback,
            });
            self.raise_from(
                entry,
                CONTROLLER_SOURCE,
                RULE_SILENT,
                rule,
                data,
                entry.at_ms,
            );
        }
        Response::Nothing
    }
}
