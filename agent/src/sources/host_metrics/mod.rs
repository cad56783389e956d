//! `[[metric]]`s as an event source: one task per threshold samples its
//! metric ([`sampler`]) every `interval_ms` and appends
//! `host.metric.exceeded` / `host.metric.cleared` when the pure
//! [`threshold`] detector says it crossed.

pub mod sampler;
pub mod threshold;

use std::time::Duration;

use levee_common::agent_config::{AgentConfig, MetricThreshold};
use levee_common::event::types::{METRIC_CLEARED, METRIC_EXCEEDED};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::sampler::Sampler;
use self::threshold::{Detector, Transition};
use super::{Source, SourceContext, SourceError, SourceRun};
use crate::clock::now_ms;

/// One `[[metric]]` threshold, sampled on its interval.
pub struct HostMetric {
    pub threshold: MetricThreshold,
}

/// One source per `[[metric]]`.
pub fn from_config(config: &AgentConfig) -> Result<Vec<Box<dyn Source>>, SourceError> {
    Ok(config
        .metrics
        .iter()
        .map(|threshold| {
            Box::new(HostMetric {
                threshold: threshold.clone(),
            }) as Box<dyn Source>
        })
        .collect())
}

impl Source for HostMetric {
    fn run(self: Box<Self>, context: SourceContext, shutdown: CancellationToken) -> SourceRun {
        Box::pin(watch(self.threshold, context, shutdown))
    }
}

/// Samples one threshold until `shutdown`, appending an event to the
/// outbox at each crossing.
async fn watch(threshold: MetricThreshold, context: SourceContext, shutdown: CancellationToken) {
    let mut detector = Detector::new(&threshold);
    let mut sampler = Sampler::default();
    let interval = Duration::from_millis(threshold.interval_ms.max(1));
    info!(threshold = %threshold.name, metric = ?threshold.metric, "watching a metric");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
        let value = match sampler.sample(&threshold) {
            Ok(Some(value)) => value,
            Ok(None) => continue,
            Err(err) => {
                warn!(threshold = %threshold.name, error = %err, "cannot read the metric");
                continue;
            }
        };
        let (event_type, data) = match detector.observe(now_ms(), value) {
            None => continue,
            Some(Transition::Exceeded { value, limit }) => (
                METRIC_EXCEEDED,
                json!({ "threshold": threshold.name, "metric": threshold.metric, "value": value, "limit": limit }),
            ),
            Some(Transition::Cleared { value, clear }) => (
                METRIC_CLEARED,
                json!({ "threshold": threshold.name, "metric": threshold.metric, "value": value, "clear": clear }),
            ),
        };
        info!(threshold = %threshold.name, value, event_type, "metric threshold crossed");
        if let Err(err) = context.record(event_type, &threshold.name, data).await {
            warn!(error = %err, "could not record a metric event");
        }
    }
}
