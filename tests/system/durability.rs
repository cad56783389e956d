//! What was acknowledged survives a controller crash: the event, its plan
//! and its task are there after a SIGKILL, and the task is applied once.

use levee_tests::{TestEnv, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{TIMEOUT, exit_events, rows, starts, ticker_cluster, wait_for_starts};

#[test]
fn an_acknowledged_event_its_plan_and_task_survive_a_controller_sigkill() {
    let env = TestEnv::new();
    let (mut controller, agent) = ticker_cluster(&env);

    // Phase: an event is committed and acknowledged...
    kill(Pid::from_raw(starts(&agent)[0] as i32), Signal::SIGKILL).unwrap();
    let event = wait_until("the exit event to be committed", TIMEOUT, || {
        exit_events(&controller)
            .into_iter()
            .next()
            .ok_or_else(|| "no exit event yet".to_owned())
    });
    // ...and the controller dies at once, mid-flight.
    controller.kill();

    // Phase: restart; the event, its plan and its task are all there.
    controller.start();
    let events = exit_events(&controller);
    assert_eq!(events.len(), 1, "the event is there once: {events:?}");
    assert_eq!(events[0]["id"], event["id"]);
    let plan_id = events[0]["plan_ids"][0]
        .as_str()
        .expect("its plan survived")
        .to_owned();
    assert!(
        rows(&controller, "plans")
            .iter()
            .any(|plan| plan["plan_id"] == plan_id.as_str())
    );
    wait_until(
        "the agent to reconnect and the task to be reported",
        TIMEOUT,
        || {
            let tasks = rows(&controller, "tasks");
            match tasks
                .iter()
                .find(|task| task["plan_id"] == plan_id.as_str())
            {
                Some(task) if task["state"] == "succeeded" => Ok(()),
                other => Err(format!("task: {other:?}\nagent log:\n{}", agent.log_tail())),
            }
        },
    );

    // Phase: the repair happened exactly once, however often it was sent.
    let pids = wait_for_starts(&agent, 2);
    assert_eq!(
        pids.len(),
        2,
        "initial start plus one repair, never two: {pids:?}"
    );
    let agents = rows(&controller, "agents");
    assert_eq!(agents[0]["connected"], true);
    assert!(
        rows(&controller, "tasks")
            .iter()
            .all(|task| task["state"] != "pending"),
        "nothing left pending"
    );
    assert_eq!(starts(&agent).len(), 2);
    let task_id = rows(&controller, "tasks")
        .into_iter()
        .find(|task| task["plan_id"] == plan_id.as_str())
        .and_then(|task| task["task_id"].as_str().map(str::to_owned))
        .unwrap();
    assert_eq!(
        agent.log_lines_with(&["\"task applied\"", &format!("\"task_id\":\"{task_id}\"")]),
        1,
        "applied once"
    );
}
