//! Agent event sources with real inputs: a metric threshold read from
//! /proc, and events emitted by an application on the host.

use levee_common::agent_config::{Metric, MetricThreshold};
use levee_tests::{TestEnv, wait_until};

use crate::common::{TIMEOUT, rows};

#[test]
fn a_metric_past_its_threshold_makes_one_event_not_one_per_sample() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    // Memory in use is always above 1%: the threshold fires on the first
    // sample and then stays exceeded, sampled every 50 ms.
    let agent = env.start_agent_with("worker-1", &[], &[&controller], |config| {
        config.metrics.push(MetricThreshold {
            name: "memory-used".into(),
            metric: Metric::Memory,
            above: Some(1.0),
            below: None,
            clear: None,
            sustained_ms: 0,
            interval_ms: 50,
            path: None,
        });
    });
    let exceeded = || {
        rows(&controller, "events")
            .into_iter()
            .filter(|event| event["type"] == "host.metric.exceeded")
            .collect::<Vec<_>>()
    };
    wait_until("the threshold event", TIMEOUT, || {
        if exceeded().is_empty() {
            Err(agent.log_tail())
        } else {
            Ok(())
        }
    });
    // Many more samples later (an emitted marker event is committed after
    // them), still one event.
    for _ in 0..5 {
        agent.emit("app.marker", "{}").expect("emit");
    }
    wait_until("the markers", TIMEOUT, || {
        let markers = rows(&controller, "events")
            .iter()
            .filter(|e| e["type"] == "app.marker")
            .count();
        if markers == 5 {
            Ok(())
        } else {
            Err(format!("{markers} markers"))
        }
    });
    let events = exceeded();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["subject"], "memory-used");
    assert!(events[0]["data"]["value"].as_f64().unwrap() > 1.0);
}
