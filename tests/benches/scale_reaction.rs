//! Event-to-applied across agents on a 3-node cluster: a load reading is
//! emitted on one agent (`levee-agent emit`), a rule scales a service from
//! 0 to 1, and the replica is created on another agent. Measured from the
//! event's time (the emitting agent's clock) to the create task's finish
//! (the other agent's clock; both on this host). Between runs a second
//! reading scales it back to 0.
//!
//! Run: `cargo bench -p levee-tests --bench scale_reaction` (RUNS=N,
//! default 30). Prints the median, p90, p99 and extremes.

use std::time::Duration;

use levee_tests::json::millis;
use levee_tests::{ControllerProcess, TestEnv, wait_until};
use serde_json::Value;

const SPECS: &[(&str, &str)] = &[
    (
        "web.yaml",
        "kind: Service\nname: web\nreplicas: { min: 0, max: 1, initial: 0 }\nplacement: { selector: { role: worker } }\nprocess:\n  argv: [\"/bin/sh\", \"-c\", \"exec sleep 3600\"]\n  stop_timeout_ms: 1000\n",
    ),
    (
        "rules.yaml",
        "kind: Rule\nname: up\nmatch: { type: [app.load], data: { cpu: [{ numeric: [\">\", 80] }] } }\naction: { scale: { service: web, to: 1 } }\n---\nkind: Rule\nname: down\nmatch: { type: [app.load], data: { cpu: [{ numeric: [\"<\", 20] }] } }\naction: { scale: { service: web, to: 0 } }\n",
    ),
];
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(30);
    let env = TestEnv::new();
    let cluster = env.start_cluster(3);
    let controllers: Vec<&ControllerProcess> = cluster.nodes.iter().collect();
    let controller = controllers[0];
    controller
        .apply(&env.write_specs("specs", SPECS))
        .expect("levee apply");
    let sensor = env.start_agent("sensor", &[("role", "sensor")], &controllers);
    let _workers: Vec<_> = (1..=2)
        .map(|n| env.start_agent(&format!("worker-{n}"), &[("role", "worker")], &controllers))
        .collect();
    controller.wait_for_connected_agents(3);

    let mut latencies_ms = Vec::with_capacity(runs);
    for run in 1..=runs {
        sensor.emit("app.load", r#"{"cpu": 95}"#).expect("emit");
        latencies_ms.push(reaction_ms(controller, run, 95, "create"));
        sensor.emit("app.load", r#"{"cpu": 5}"#).expect("emit");
        reaction_ms(controller, run, 5, "remove");
    }
    latencies_ms.sort_unstable();
    let at = |q: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "event on one agent to task applied on another, 3 nodes, {runs} runs: median {} ms, p90 {} ms, p99 {} ms, min {} ms, max {} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        latencies_ms[0],
        latencies_ms[latencies_ms.len() - 1]
    );
}

/// Milliseconds from the `run`-th reading of `cpu` to its plan's task
/// (`action`) finishing.
fn reaction_ms(controller: &ControllerProcess, run: usize, cpu: u64, action: &str) -> i64 {
    wait_until(
        &format!("run {run}: the {action} task to be reported"),
        TIMEOUT,
        || {
            let events = rows(controller, &["events", "--limit", "10000"]);
            let readings: Vec<&Value> = events
                .iter()
                .filter(|event| event["type"] == "app.load" && event["data"]["cpu"] == cpu)
                .collect();
            let event = readings.get(run - 1).ok_or("reading not committed yet")?;
            let plan_id = event["plan_ids"][0].as_str().ok_or("no plan")?;
            let tasks = rows(controller, &["tasks", "--limit", "10000"]);
            let task = tasks
                .iter()
                .find(|task| {
                    task["plan_id"] == plan_id
                        && task["action"] == action
                        && task["state"] == "succeeded"
                })
                .ok_or("task not done")?;
            Ok(millis(&task["finished"]) - millis(&event["time"]))
        },
    )
}

fn rows(controller: &ControllerProcess, args: &[&str]) -> Vec<Value> {
    match controller.cli(args) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("levee {args:?}: {other:?}"),
    }
}
