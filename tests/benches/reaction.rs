//! Event-to-applied latency on a one-node cluster, with real processes:
//! a workload is SIGKILLed, the agent reports the exit, the controller
//! commits it, plans the repair, dispatches the task, and the agent applies
//! it. Both ends are timestamps from the agent's own clock (the event's
//! `time` and the task's `finished`), so no clock skew enters.
//!
//! Run: `cargo bench -p levee-tests --bench reaction` (RUNS=N to change the
//! number of kills; default 30). Prints the median, p90 and extremes.

use std::time::Duration;

use levee_tests::json::millis;
use levee_tests::{AgentProcess, ControllerProcess, TestEnv, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const SPECS: &[(&str, &str)] = &[
    (
        "ticker.yaml",
        "kind: Service\nname: ticker\nprocess:\n  argv: [\"/bin/sh\", \"-c\", \"echo $$ >> starts.log; exec sleep 3600\"]\n",
    ),
    (
        "repair.yaml",
        "kind: Rule\nname: repair-ticker\nmatch: { type: [host.process.exited], subject: [ticker] }\naction: { repair: { service: ticker } }\n",
    ),
];
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(30);
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    controller
        .apply(&env.write_specs("specs", SPECS))
        .expect("levee apply");
    let agent = env.start_agent("bench-1", &[], &[&controller]);
    wait_for_starts(&agent, 1);

    let mut latencies_ms = Vec::with_capacity(runs);
    for run in 0..runs {
        let pid = *starts(&agent).last().unwrap();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        wait_for_starts(&agent, run + 2);
        latencies_ms.push(reaction_ms(&controller, run + 1));
    }
    latencies_ms.sort_unstable();
    let at = |q: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "event-to-applied over {runs} kills: median {} ms, p90 {} ms, min {} ms, max {} ms",
        at(0.5),
        at(0.9),
        latencies_ms[0],
        latencies_ms[latencies_ms.len() - 1]
    );
}

/// Milliseconds from the `exit_number`-th exit event to its task's finish.
fn reaction_ms(controller: &ControllerProcess, exit_number: usize) -> i64 {
    wait_until("the repair task to be reported", TIMEOUT, || {
        let events = rows(controller, &["events", "--limit", "1000"]);
        let exits: Vec<&Value> = events
            .iter()
            .filter(|event| event["type"] == "host.process.exited")
            .collect();
        let event = exits
            .get(exit_number - 1)
            .ok_or("event not committed yet")?;
        let plan_id = event["plan_ids"][0].as_str().ok_or("no plan")?;
        let tasks = rows(controller, &["tasks", "--limit", "1000"]);
        let task = tasks
            .iter()
            .find(|task| task["plan_id"] == plan_id && task["state"] == "succeeded")
            .ok_or("task not done")?;
        Ok(millis(&task["finished"]) - millis(&event["time"]))
    })
}

fn rows(controller: &ControllerProcess, args: &[&str]) -> Vec<Value> {
    match controller.cli(args) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("levee {args:?}: {other:?}"),
    }
}

fn starts(agent: &AgentProcess) -> Vec<u32> {
    std::fs::read_to_string(agent.service_dir("ticker").join("starts.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

fn wait_for_starts(agent: &AgentProcess, count: usize) {
    wait_until(&format!("{count} starts of the ticker"), TIMEOUT, || {
        let pids = starts(agent);
        if pids.len() >= count {
            Ok(())
        } else {
            Err(format!("{pids:?}"))
        }
    });
}
