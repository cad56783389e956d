//! The agent's metric families, from one snapshot of its numbers.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::apply::TaskTotals;

/// The numbers one scrape shows. `None` leaves a family out: its store
/// read failed, or (drift) the feature is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub boot_epoch: u64,
    pub connected: bool,
    /// Controllers refused, by (boundary, reason).
    pub refusals: BTreeMap<(&'static str, &'static str), u64>,
    pub outbox_events: Option<u64>,
    pub outbox_dropped: Option<u64>,
    /// Workloads by state label; only states some workload is in.
    pub workloads: BTreeMap<&'static str, u64>,
    pub tasks: TaskTotals,
    pub unresolved_drift: Option<u64>,
}

impl Snapshot {
    /// Writes every family of the scrape. A counter is named without its
    /// `_total`, which the encoder adds to every line.
    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            encoder,
            "levee_agent_boot_epoch",
            "This agent process's boot epoch; it grows at every start.",
            self.boot_epoch,
        )?;
        gauge(
            encoder,
            "levee_agent_connected",
            "1 while the agent has a session with the leading controller, else 0.",
            u64::from(self.connected),
        )?;
        let mut refusals = encoder.encode_descriptor(
            "levee_agent_refusals",
            "Controllers this agent refused since it started (not a member of its cluster, not the leader), by boundary and reason; each logged at most once per controller a minute.",
            None,
            MetricType::Counter,
        )?;
        for ((boundary, reason), count) in &self.refusals {
            let labels = [("boundary", *boundary), ("reason", *reason)];
            ConstCounter::new(*count).encode(refusals.encode_family(&labels)?)?;
        }
        if let Some(events) = self.outbox_events {
            gauge(
                encoder,
                "levee_agent_outbox_events",
                "Events stored in the outbox and not yet acknowledged by a controller.",
                events,
            )?;
        }
        if let Some(dropped) = self.outbox_dropped {
            ConstCounter::new(dropped).encode(encoder.encode_descriptor(
                "levee_agent_outbox_dropped",
                "Events dropped, oldest first, because the outbox was full; kept across restarts.",
                None,
                MetricType::Counter,
            )?)?;
        }
        let mut workloads = encoder.encode_descriptor(
            "levee_agent_workloads",
            "Workloads this agent supervises, by state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in &self.workloads {
            ConstGauge::new(*count).encode(workloads.encode_family(&[("state", *state)])?)?;
        }
        let mut tasks = encoder.encode_descriptor(
            "levee_agent_tasks",
            "Tasks this agent finished since it started, by outcome; an outcome reported again for a resent task is not counted again.",
            None,
            MetricType::Counter,
        )?;
        for (outcome, count) in [
            ("succeeded", self.tasks.succeeded),
            ("failed", self.tasks.failed),
            ("refused", self.tasks.refused),
        ] {
            ConstCounter::new(count).encode(tasks.encode_family(&[("outcome", outcome)])?)?;
        }
        if let Some(unresolved) = self.unresolved_drift {
            gauge(
                encoder,
                "levee_agent_unresolved_drift",
                "Drifted resources reported and not yet resolved, as of the last drift check.",
                unresolved,
            )?;
        }
        Ok(())
    }
}

/// One unlabelled gauge.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

#[cfg(test)]
mod tests {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::prometheus_text;
    use prometheus_client::registry::Registry;

    use super::*;

    impl Collector for Snapshot {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            Snapshot::encode(self, &mut encoder)
        }
    }

    fn render(snapshot: &Snapshot) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot.clone()));
        let mut text = String::new();
        // Writing to a String cannot fail.
        prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|line| !line.starts_with('#')).collect()
    }

    #[test]
    fn every_family_is_rendered_from_the_snapshot() {
        let text = render(&Snapshot {
            boot_epoch: 1_700_000_000_123,
            connected: true,
            refusals: [(("controller", "not_member"), 2)].into(),
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
                "levee_agent_refusals_total{boundary=\"controller\",reason=\"not_member\"} 2",
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
