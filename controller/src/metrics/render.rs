//! What a scrape shows, from the state and this node's view of Raft.

use std::collections::{BTreeMap, BTreeSet};

use levee_common::ids::AgentId;
use levee_common::prom::{Exposition, Kind};

use crate::engine::planner;
use crate::state::ClusterState;
use crate::state::records::{NotificationState, ProvisionState};

/// This node's part of a scrape.
#[derive(Debug, Default)]
pub struct NodeView {
    pub is_leader: bool,
    pub term: u64,
    pub last_log_index: u64,
    pub last_applied_index: u64,
    pub voters: usize,
    /// Agents with a session on this node (all of them, on the leader).
    pub connected: BTreeSet<AgentId>,
}

/// How many of each name, with every name in `all` present (0 if none),
/// so an alert on "failed > 0" has a series to read from the start.
fn count<'a>(all: &[&'a str], names: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'a str, f64> {
    let mut counts: BTreeMap<&'a str, f64> = all.iter().map(|name| (*name, 0.0)).collect();
    for name in names {
        *counts.entry(name).or_insert(0.0) += 1.0;
    }
    counts
}

fn by<'a>(label: &'a str, counts: BTreeMap<&'a str, f64>) -> Vec<(Vec<(&'a str, &'a str)>, f64)> {
    counts
        .into_iter()
        .map(|(value, n)| (vec![(label, value)], n))
        .collect()
}

pub fn render(state: &ClusterState, node: &NodeView) -> String {
    let mut out = Exposition::new();
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    out.single(
        "levee_raft_is_leader",
        Kind::Gauge,
        "1 when this node leads.",
        flag(node.is_leader),
    )
    .single(
        "levee_raft_term",
        Kind::Gauge,
        "This node's current Raft term.",
        node.term as f64,
    )
    .single(
        "levee_raft_last_log_index",
        Kind::Gauge,
        "Index of the last entry in this node's log.",
        node.last_log_index as f64,
    )
    .single(
        "levee_raft_last_applied_index",
        Kind::Gauge,
        "Index of the last entry this node applied.",
        node.last_applied_index as f64,
    )
    .single(
        "levee_raft_voters",
        Kind::Gauge,
        "Voting members of the cluster.",
        node.voters as f64,
    );

    let agent_states = count(
        &["connected", "disconnected", "lost"],
        state.agents.values().map(|agent| {
            if agent.lost {
                "lost"
            } else if node.connected.contains(&agent.agent_id) {
                "connected"
            } else {
                "disconnected"
            }
        }),
    );
    out.family(
        "levee_agents",
        Kind::Gauge,
        "Agents known to the cluster, by state (connected: a session on this node).",
        by("state", agent_states),
    )
    .single(
        "levee_agents_drained",
        Kind::Gauge,
        "Agents kept from some or all services (levee drain, or a rule).",
        state
            .agents
            .values()
            .filter(|agent| !agent.avoid.is_empty())
            .count() as f64,
    )
    .single(
        "levee_events_committed_total",
        Kind::Counter,
        "Events committed, from agents and from outside.",
        state.events_committed as f64,
    )
    .single(
        "levee_events_raised_dropped_total",
        Kind::Counter,
        "Controller events dropped by the per-entry limit (runaway reactions).",
        state.raised_dropped as f64,
    )
    .single(
        "levee_spec_version",
        Kind::Gauge,
        "The current spec version.",
        state.spec_version as f64,
    )
    .single(
        "levee_plans",
        Kind::Gauge,
        "Plans kept in the state.",
        state.plans.len() as f64,
    );

    let tasks = count(
        &[
            "pending",
            "waiting",
            "cancelled",
            "succeeded",
            "failed",
            "refused",
            "superseded",
        ],
        state.tasks.values().map(|task| task.state.as_str()),
    );
    out.family(
        "levee_tasks",
        Kind::Gauge,
        "Tasks kept in the state, by state.",
        by("state", tasks),
    );

    let services: Vec<(String, f64, f64)> = state
        .specs
        .services
        .values()
        .map(|spec| {
            let target = planner::target_of(spec, &state.targets) as f64;
            let placed = state
                .placements
                .get(&spec.name)
                .map_or(0, |agents| agents.len()) as f64;
            (spec.name.clone(), target, placed)
        })
        .collect();
    out.family(
        "levee_service_replicas_target",
        Kind::Gauge,
        "Replicas each service aims for.",
        services
            .iter()
            .map(|(name, target, _)| (vec![("service", name.as_str())], *target)),
    )
    .family(
        "levee_service_replicas_placed",
        Kind::Gauge,
        "Replicas placed on agents; below target when no agent has room.",
        services
            .iter()
            .map(|(name, _, placed)| (vec![("service", name.as_str())], *placed)),
    );

    let rules: Vec<(&str, f64, f64, f64)> = state
        .specs
        .rules
        .keys()
        .map(|name| {
            let rule_state = state.rule_state.get(name);
            (
                name.as_str(),
                rule_state.map_or(0.0, |s| s.actions as f64),
                rule_state.map_or(0.0, |s| s.held as f64),
                flag(rule_state.is_some_and(|s| s.silent)),
            )
        })
        .collect();
    out.family(
        "levee_rule_actions_total",
        Kind::Counter,
        "Actions each rule carried out.",
        rules
            .iter()
            .map(|(rule, actions, _, _)| (vec![("rule", *rule)], *actions)),
    )
    .family(
        "levee_rule_held_total",
        Kind::Counter,
        "Times each rule held back (guardrails, windows refusing a reading).",
        rules
            .iter()
            .map(|(rule, _, held, _)| (vec![("rule", *rule)], *held)),
    )
    .family(
        "levee_rule_signal_silent",
        Kind::Gauge,
        "1 while a rule's signal is silent.",
        rules
            .iter()
            .map(|(rule, _, _, silent)| (vec![("rule", *rule)], *silent)),
    )
    .single(
        "levee_approvals_pending",
        Kind::Gauge,
        "Rule actions waiting for levee approve.",
        state.approvals.len() as f64,
    );

    let provisions = count(
        &["pending", "running", "succeeded", "failed", "unknown"],
        state.provisions.values().map(|record| match record.state {
            ProvisionState::Pending => "pending",
            ProvisionState::Running { .. } => "running",
            ProvisionState::Succeeded { .. } => "succeeded",
            ProvisionState::Failed { .. } => "failed",
            ProvisionState::Unknown { .. } => "unknown",
        }),
    );
    out.family(
        "levee_provisions",
        Kind::Gauge,
        "Hosts asked of provisioners, by state.",
        by("state", provisions),
    );
    let calls = count(
        &["pending", "delivered", "failed"],
        state
            .notifications
            .values()
            .map(|record| match record.state {
                NotificationState::Pending => "pending",
                NotificationState::Delivered { .. } => "delivered",
                NotificationState::Failed { .. } => "failed",
            }),
    );
    out.family(
        "levee_webhook_calls",
        Kind::Gauge,
        "Rules' webhook calls kept, by state.",
        by("state", calls),
    );
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::command::Command;
    use crate::state::records::LogPosition;

    #[test]
    fn a_scrape_shows_agents_services_and_rules() {
        let mut state = ClusterState::default();
        let mut index = 0;
        let mut apply = |state: &mut ClusterState, command: Command| {
            index += 1;
            state.apply(LogPosition { index, term: 1 }, command);
        };
        for agent in ["a1", "a2"] {
            apply(
                &mut state,
                Command::AgentHello {
                    agent_id: agent.into(),
                    boot_epoch: 1,
                    labels: Default::default(),
                    cpu_millis: 1000,
                    memory_bytes: 1 << 30,
                    highest_term_seen: 1,
                    at_ms: 1,
                },
            );
        }
        let specs = levee_common::spec::SpecSet::parse([(
            "s.yaml",
            "kind: Service\nname: web\nreplicas: 3\nplacement: { resources: { cpu_millis: 1000 } }\nprocess: { argv: [/bin/web] }\n---\nkind: Rule\nname: grow\nmatch: { type: [app.load] }\naction: { scale: { service: web, by: 1 } }\n",
        )])
        .unwrap();
        apply(
            &mut state,
            Command::PutSpecs {
                specs,
                reason: "test".into(),
                applied_by: "test".into(),
                at_ms: 2,
            },
        );
        let node = NodeView {
            is_leader: true,
            term: 4,
            connected: [AgentId::from("a1")].into(),
            voters: 3,
            ..NodeView::default()
        };
        let text = render(&state, &node);
        for line in [
            "levee_raft_is_leader 1",
            "levee_raft_term 4",
            "levee_agents{state=\"connected\"} 1",
            "levee_agents{state=\"disconnected\"} 1",
            "levee_service_replicas_target{service=\"web\"} 3",
            "levee_service_replicas_placed{service=\"web\"} 2",
            "levee_tasks{state=\"pending\"} 2",
            "levee_tasks{state=\"failed\"} 0",
            "levee_agents{state=\"lost\"} 0",
            "levee_rule_actions_total{rule=\"grow\"} 0",
            "levee_spec_version 1",
            "# TYPE levee_events_committed_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }
}
