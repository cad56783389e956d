//! What a scrape shows, from the state and this node's view of Raft.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use levee_common::ids::AgentId;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

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
    /// Handshakes and calls this node refused, by (boundary, reason).
    pub refusals: BTreeMap<(&'static str, &'static str), u64>,
}

/// How many of each name, with every name in `all` present (0 if none),
/// so an alert on "failed > 0" has a series to read from the start.
fn count<'a>(all: &[&'a str], names: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'a str, u64> {
    let mut counts: BTreeMap<&'a str, u64> = all.iter().map(|name| (*name, 0)).collect();
    for name in names {
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// Writes every family of a scrape (pure). A counter is named without its
/// `_total`, which the encoder adds to every line.
pub fn encode(
    state: &ClusterState,
    node: &NodeView,
    encoder: &mut DescriptorEncoder,
) -> fmt::Result {
    let mut out = Families(encoder);
    out.gauge(
        "levee_raft_is_leader",
        "1 when this node leads.",
        u64::from(node.is_leader),
    )?;
    out.gauge(
        "levee_raft_term",
        "This node's current Raft term.",
        node.term,
    )?;
    out.gauge(
        "levee_raft_last_log_index",
        "Index of the last entry in this node's log.",
        node.last_log_index,
    )?;
    out.gauge(
        "levee_raft_last_applied_index",
        "Index of the last entry this node applied.",
        node.last_applied_index,
    )?;
    out.gauge(
        "levee_raft_voters",
        "Voting members of the cluster.",
        node.voters as u64,
    )?;
    let mut refusals = out.0.encode_descriptor(
        "levee_refusals",
        "Handshakes and calls this node refused since it started, by trust boundary and reason (each logged at most once per peer a minute).",
        None,
        MetricType::Counter,
    )?;
    for ((boundary, reason), count) in &node.refusals {
        let labels = [("boundary", *boundary), ("reason", *reason)];
        ConstCounter::new(*count).encode(refusals.encode_family(&labels)?)?;
    }

    let agent_states = count(
        &["connected", "disconnected", "lost"],
        state.fleet.agents.values().map(|agent| {
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
        MetricType::Gauge,
        "Agents known to the cluster, by state (connected: a session on this node).",
        "state",
        agent_states,
    )?;
    out.gauge(
        "levee_agents_drained",
        "Agents kept from some or all services (levee drain, or a rule).",
        state
            .fleet
            .agents
            .values()
            .filter(|agent| !agent.avoid.is_empty())
            .count() as u64,
    )?;
    out.counter(
        "levee_events_committed",
        "Events committed, from agents and from outside.",
        state.event_log.events_committed,
    )?;
    out.counter(
        "levee_events_refused",
        "Agents' events refused for a type they may not send (host.lost, levee.*, timer.*...).",
        state.event_log.events_refused,
    )?;
    out.counter(
        "levee_events_raised_dropped",
        "Controller events dropped by the per-entry limit (runaway reactions).",
        state.event_log.raised_dropped,
    )?;
    out.gauge(
        "levee_spec_version",
        "The current spec version.",
        state.desired.spec_version,
    )?;
    out.gauge(
        "levee_plans",
        "Plans kept in the state.",
        state.work.plans.len() as u64,
    )?;

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
        state.work.tasks.values().map(|task| task.state.as_str()),
    );
    out.family(
        "levee_tasks",
        MetricType::Gauge,
        "Tasks kept in the state, by state.",
        "state",
        tasks,
    )?;

    let services: Vec<(&str, u64, u64)> = state
        .desired
        .specs
        .services
        .values()
        .map(|spec| {
            let target = u64::from(planner::target_of(spec, &state.desired.targets));
            let placed = state
                .work
                .placements
                .get(&spec.name)
                .map_or(0, |agents| agents.len()) as u64;
            (spec.name.as_str(), target, placed)
        })
        .collect();
    out.family(
        "levee_service_replicas_target",
        MetricType::Gauge,
        "Replicas each service aims for.",
        "service",
        services.iter().map(|(name, target, _)| (*name, *target)),
    )?;
    out.family(
        "levee_service_replicas_placed",
        MetricType::Gauge,
        "Replicas placed on agents; below target when no agent has room.",
        "service",
        services.iter().map(|(name, _, placed)| (*name, *placed)),
    )?;

    let rules: Vec<(&str, u64, u64, u64)> = state
        .desired
        .specs
        .rules
        .keys()
        .map(|name| {
            let rule_state = state.rule_book.rule_state.get(name);
            (
                name.as_str(),
                rule_state.map_or(0, |s| s.actions),
                rule_state.map_or(0, |s| s.held),
                u64::from(rule_state.is_some_and(|s| s.silent)),
            )
        })
        .collect();
    out.family(
        "levee_rule_actions",
        MetricType::Counter,
        "Actions each rule carried out.",
        "rule",
        rules.iter().map(|(rule, actions, _, _)| (*rule, *actions)),
    )?;
    out.family(
        "levee_rule_held",
        MetricType::Counter,
        "Times each rule held back (guardrails, windows refusing a reading).",
        "rule",
        rules.iter().map(|(rule, _, held, _)| (*rule, *held)),
    )?;
    out.family(
        "levee_rule_signal_silent",
        MetricType::Gauge,
        "1 while a rule's signal is silent.",
        "rule",
        rules.iter().map(|(rule, _, _, silent)| (*rule, *silent)),
    )?;
    out.gauge(
        "levee_approvals_pending",
        "Rule actions waiting for levee approve.",
        state.rule_book.approvals.len() as u64,
    )?;

    let provisions = count(
        &["pending", "running", "succeeded", "failed", "unknown"],
        state
            .effects
            .provisions
            .values()
            .map(|record| match record.state {
                ProvisionState::Pending => "pending",
                ProvisionState::Running { .. } => "running",
                ProvisionState::Succeeded { .. } => "succeeded",
                ProvisionState::Failed { .. } => "failed",
                ProvisionState::Unknown { .. } => "unknown",
            }),
    );
    out.family(
        "levee_provisions",
        MetricType::Gauge,
        "Hosts asked of provisioners, by state.",
        "state",
        provisions,
    )?;
    let calls = count(
        &["pending", "delivered", "failed"],
        state
            .effects
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
        MetricType::Gauge,
        "Rules' webhook calls kept, by state.",
        "state",
        calls,
    )
}

/// Writes families of constant values, each read once for this scrape.
struct Families<'e, 'a>(&'e mut DescriptorEncoder<'a>);

impl Families<'_, '_> {
    fn gauge(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        ConstGauge::new(value).encode(self.0.encode_descriptor(
            name,
            help,
            None,
            MetricType::Gauge,
        )?)
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        ConstCounter::new(value).encode(self.0.encode_descriptor(
            name,
            help,
            None,
            MetricType::Counter,
        )?)
    }

    /// One sample per value of `label`.
    fn family<'v>(
        &mut self,
        name: &str,
        kind: MetricType,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'v str, u64)>,
    ) -> fmt::Result {
        let mut family = self.0.encode_descriptor(name, help, None, kind)?;
        for (value, n) in samples {
            let labels = [(label, value)];
            let sample = family.encode_family(&labels)?;
            if kind == MetricType::Counter {
                ConstCounter::new(n).encode(sample)?;
            } else {
                ConstGauge::new(n).encode(sample)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::prometheus_text;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::state::test_log::Log;

    /// A state and a view, shown as they are.
    #[derive(Debug)]
    struct Fixed(ClusterState, NodeView);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            super::encode(&self.0, &self.1, &mut encoder)
        }
    }

    fn render(state: &ClusterState, node: NodeView) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(state.clone(), node)));
        let mut text = String::new();
        // Writing to a String cannot fail.
        prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_scrape_shows_agents_services_and_rules() {
        let mut log = Log::new();
        log.hello("a1", 1);
        log.hello("a2", 1);
        log.put_specs(
            "kind: Service\nname: web\nreplicas: 3\nplacement: { resources: { cpu_millis: 1000 } }\nprocess: { argv: [/bin/web] }\n---\nkind: Rule\nname: grow\nmatch: { type: [app.load] }\naction: { scale: { service: web, by: 1 } }\n",
        );
        let state = log.state;
        let node = NodeView {
            is_leader: true,
            term: 4,
            connected: [AgentId::from("a1")].into(),
            voters: 3,
            refusals: [(("raft", "not_member"), 7)].into(),
            ..NodeView::default()
        };
        let text = render(&state, node);
        for line in [
            "levee_raft_is_leader 1",
            "levee_raft_term 4",
            "levee_refusals_total{boundary=\"raft\",reason=\"not_member\"} 7",
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
