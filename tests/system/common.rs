//! Fixtures shared by the system tests.

use std::path::Path;
use std::time::Duration;

use levee_tests::{AgentProcess, ControllerProcess, TestEnv, wait_until};
use serde_json::Value;

/// Generous: CI machines are busy; a pass is usually far quicker.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// A service whose every start appends its pid to `starts.log`, so a test
/// can count starts exactly; and a rule that repairs it when it exits.
pub const TICKER_SPECS: &[(&str, &str)] = &[
    (
        "ticker.yaml",
        r#"
kind: Service
name: ticker
placement: { selector: { role: worker } }
process:
  argv: ["/bin/sh", "-c", "echo $$ >> starts.log; exec sleep 3600"]
files:
  - path: banner.txt
    content: "ticker\n"
"#,
    ),
    (
        "repair.yaml",
        r#"
kind: Rule
name: repair-ticker
match: { type: [host.process.exited], subject: [ticker] }
action: { repair: { service: ticker } }
"#,
    ),
];

/// One controller with the ticker specs and one worker agent running it.
pub fn ticker_cluster(env: &TestEnv) -> (ControllerProcess, AgentProcess) {
    let controller = env.start_controller(1);
    let specs = env.write_specs("specs", TICKER_SPECS);
    controller.apply(&specs).expect("levee apply");
    let agent = env.start_agent("worker-1", &[("role", "worker")], &[&controller]);
    let pids = wait_for_starts(&agent, 1);
    assert!(
        is_running(pids[0]),
        "the ticker process {} is not running",
        pids[0]
    );
    (controller, agent)
}

/// The pids written to `starts.log`, one per start.
pub fn starts(agent: &AgentProcess) -> Vec<u32> {
    std::fs::read_to_string(agent.service_dir("ticker").join("starts.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

pub fn wait_for_starts(agent: &AgentProcess, count: usize) -> Vec<u32> {
    wait_until(
        &format!("the ticker to have started {count} time(s)"),
        TIMEOUT,
        || {
            let pids = starts(agent);
            if pids.len() >= count {
                Ok(pids)
            } else {
                Err(format!(
                    "starts: {pids:?}\nagent log:\n{}",
                    agent.log_tail()
                ))
            }
        },
    )
}

pub fn is_running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
}

/// Rows of `levee <what> --output json`.
pub fn rows(controller: &ControllerProcess, what: &str) -> Vec<Value> {
    match controller.cli(&[what]) {
        Ok(Value::Array(rows)) => rows,
        other => panic!(
            "levee {what}: {other:?}\ncontroller log:\n{}",
            controller.log_tail()
        ),
    }
}

/// The committed events of `event_type` (up to 10,000 back), in commit
/// order.
pub fn events_of(controller: &ControllerProcess, event_type: &str) -> Vec<Value> {
    let mut events: Vec<Value> = match controller.cli(&["events", "--limit", "10000"]) {
        Ok(Value::Array(rows)) => rows,
        other => panic!(
            "levee events: {other:?}\ncontroller log:\n{}",
            controller.log_tail()
        ),
    };
    events.retain(|event| event["type"] == event_type);
    events.sort_by_key(|event| event["log_index"].as_u64());
    events
}

/// The committed `host.process.exited` events.
pub fn exit_events(controller: &ControllerProcess) -> Vec<Value> {
    rows(controller, "events")
        .into_iter()
        .filter(|event| event["type"] == "host.process.exited")
        .collect()
}
