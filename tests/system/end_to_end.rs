//! One event, end to end, with real processes: a workload killed outside
//! Levee is repaired through event, rule, plan and task, all on record.

use std::time::Instant;

use levee_tests::{TestEnv, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{
    TIMEOUT, exit_events, is_running, rows, starts, ticker_cluster, wait_for_starts,
};

#[test]
fn a_workload_killed_outside_levee_is_repaired_through_event_rule_plan_and_task() {
    let env = TestEnv::new();
    let (controller, agent) = ticker_cluster(&env);
    let banner = agent.service_dir("ticker").join("banner.txt");
    assert_eq!(std::fs::read_to_string(&banner).unwrap(), "ticker\n");

    // Phase: break the service outside Levee: its file gone, its process killed.
    let first_pid = starts(&agent)[0];
    std::fs::remove_file(&banner).unwrap();
    let killed_at = Instant::now();
    kill(Pid::from_raw(first_pid as i32), Signal::SIGKILL).unwrap();

    // Phase: the agent's process source reports it, the rule repairs it.
    let pids = wait_for_starts(&agent, 2);
    let repaired_in = killed_at.elapsed();
    assert_eq!(pids.len(), 2, "started exactly once more");
    assert!(is_running(pids[1]), "the repaired process runs");
    assert!(!is_running(first_pid));
    assert_eq!(
        std::fs::read_to_string(&banner).unwrap(),
        "ticker\n",
        "the file resource was written again"
    );

    // Phase: the whole chain is on record, event -> rule -> plan -> task.
    let events = exit_events(&controller);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["source"], "agent/worker-1");
    assert_eq!(event["subject"], "ticker");
    assert_eq!(event["data"]["signal"], 9);
    assert_eq!(event["rules"], serde_json::json!(["repair-ticker"]));
    let plan_id = event["plan_ids"][0]
        .as_str()
        .expect("the event caused a plan")
        .to_owned();
    let event_id = event["id"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = event_id.split('/').collect();
    assert_eq!(parts.len(), 3, "id is agent/epoch/seq: {event_id}");
    assert_eq!(parts[0], "worker-1");
    assert_eq!(parts[2], "1", "the first event of this boot");

    let task = wait_until("the repair task to be reported succeeded", TIMEOUT, || {
        let tasks = rows(&controller, "tasks");
        let task = tasks
            .iter()
            .find(|task| task["plan_id"] == plan_id.as_str())
            .cloned();
        match task {
            Some(task) if task["state"] == "succeeded" => Ok(task),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(task["agent_id"], "worker-1");
    assert_eq!(task["cause_event_id"], event_id.as_str());
    assert_eq!(task["rule"], "repair-ticker");
    assert!(task["created_term"].as_u64().unwrap() >= 1);
    let outcomes = task["outcomes"].to_string();
    assert!(
        outcomes.contains("changed file:banner.txt: created"),
        "{outcomes}"
    );
    assert!(
        outcomes.contains("changed process:ticker: started"),
        "{outcomes}"
    );
    let plans = rows(&controller, "plans");
    let plan = plans
        .iter()
        .find(|plan| plan["plan_id"] == plan_id.as_str())
        .expect("plan listed");
    assert_eq!(plan["cause_event_id"], event_id.as_str());
    eprintln!("kill to repaired: {repaired_in:?}");
}
