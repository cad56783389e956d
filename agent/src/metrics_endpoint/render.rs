//! The agent's metric families, from one snapshot of its numbers.

use std::collections::BTreeMap;

use levee_common::prom::{Exposition, Kind};

use crate::apply::TaskTotals;

/// The numbers one scrape shows. `None` leaves a family out: its store
/// read failed, or (drift) the feature is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub boot_epoch: u64,
    pub connected: bool,
    pub outbox_events: Option<u64>,
    pub outbox_dropped: Option<u64>,
    /// Workloads by state label; only states some workload is in.
    pub workloads: BTreeMap<&'static str, u64>,
    pub tasks: TaskTotals,
    pub unresolved_drift: Option<u64>,
}

/// The scrape's text.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = Exposition::new();
    out.single(
        "levee_agent_boot_epoch",
        Kind::Gauge,
        "This agent process's boot epoch; it grows at every start.",
        snapshot.boot_epoch as f64,
    )
    .single(
        "levee_agent_connected",
        Kind::Gauge,
        "1 while the agent has a session with the leading controller, else 0.",
        if snapshot.connected { 1.0 } else { 0.0 },
    );
    if let Some(events) = snapshot.outbox_events {
        out.single(
            "levee_agent_outbox_events",
            Kind::Gauge,
            "Events stored in the outbox and not yet acknowledged by a controller.",
            events as f64,
        );
    }
    if let Some(dropped) = snapshot.outbox_dropped {
        out.single(
            "levee_agent_outbox_dropped_total",
            Kind::Counter,
            "Events dropped, oldest first, because the outbox was full; kept across restarts.",
            dropped as f64,
        );
    }
    out.family(
        "levee_agent_workloads",
        Kind::Gauge,
        "Workloads this agent supervises, by state.",
        snapshot
            .workloads
            .iter()
            .map(|(state, count)| ([("state", *state)], *count as f64)),
    );
    let tasks = snapshot.tasks;
    out.family(
        "levee_agent_tasks_total",
        Kind::Counter,
        "Tasks this agent finished since it started, by outcome; an outcome reported again for a resent task is not counted again.",
        [
            ("succeeded", tasks.succeeded),
            ("failed", tasks.failed),
            ("refused", tasks.refused),
        ]
        .map(|(outcome, count)| ([("outcome", outcome)], count as f64)),
    );
    if let Some(unresolved) = snapshot.unresolved_drift {
        out.single(
            "levee_agent_unresolved_drift",
            Kind::Gauge,
            "Drifted resources reported and not yet resolved, as of the last drift check.",
            unresolved as f64,
        );
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|line| !line.starts_with('#')).collect()
    }

    #[test]
    fn every_family_is_rendered_from_the_snapshot() {
        let text = render(&Snapshot {
            boot_epoch: 1_700_000_000_123,
            connected: true,
            outbox_events: Some(7),
            outbox_dropped: Some(2),
            workloads: BTreeMap::from([("running", 3), ("restarting", 1)]),
            tasks: TaskTotals {
                succeeded: 5,
                failed: 1,
                refused: 0,
            },
            unresolved_drift: Some(4),
        });
        assert_eq!(
            lines(&text),
            [
                "levee_agent_boot_epoch 1700000000123",
                "levee_agent_connected 1",
                "levee_agent_outbox_events 7",
                "levee_agent_outbox_dropped_total 2",
                "levee_agent_workloads{state=\"restarting\"} 1",
                "levee_agent_workloads{state=\"running\"} 3",
                "levee_agent_tasks_total{outcome=\"succeeded\"} 5",
                "levee_agent_tasks_total{outcome=\"failed\"} 1",
                "levee_agent_tasks_total{outcome=\"refused\"} 0",
                "levee_agent_unresolved_drift 4",
            ],
            "{text}"
        );
        assert!(
            text.contains("# TYPE levee_agent_outbox_dropped_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE levee_agent_workloads gauge\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "# HELP levee_agent_tasks_total Tasks this agent finished since it started"
            ),
            "{text}"
        );
    }

    #[test]
    fn unreadable_or_disabled_families_are_left_out() {
        let text = render(&Snapshot {
            boot_epoch: 3,
            ..Snapshot::default()
        });
        assert_eq!(
            lines(&text),
            [
                "levee_agent_boot_epoch 3",
                "levee_agent_connected 0",
                "levee_agent_tasks_total{outcome=\"succeeded\"} 0",
                "levee_agent_tasks_total{outcome=\"failed\"} 0",
                "levee_agent_tasks_total{outcome=\"refused\"} 0",
            ],
            "{text}"
        );
        for absent in [
            "levee_agent_outbox_events",
            "levee_agent_outbox_dropped_total",
            "levee_agent_unresolved_drift",
        ] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        // No workloads: the family is declared, with no samples.
        assert!(
            text.contains("# TYPE levee_agent_workloads gauge\n"),
            "{text}"
        );
    }
}
