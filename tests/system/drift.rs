//! Drift: a file edited by hand or a workload killed outside Levee is
//! reported as a drift event and converged back; with correction off, the
//! host shows as drifting in `levee status` until it is put right.

use levee_tests::{AgentProcess, ControllerProcess, TestEnv, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{TICKER_SPECS, TIMEOUT, rows, wait_for_starts};

/// The ticker service alone: no repair rule, restart `never`, so only the
/// drift check can bring a killed workload back.
fn ticker_without_rule(env: &TestEnv, correct: bool) -> (ControllerProcess, AgentProcess) {
    let controller = env.start_controller(1);
    let specs = env.write_specs("specs", &TICKER_SPECS[..1]);
    controller.apply(&specs).expect("levee apply");
    let agent = env.start_agent_with(
        "worker-1",
        &[("role", "worker")],
        &[&controller],
        |config| {
            config.drift.interval_ms = 200;
            config.drift.correct = correct;
        },
    );
    wait_for_starts(&agent, 1);
    (controller, agent)
}

fn drift_events(controller: &ControllerProcess, event_type: &str) -> Vec<Value> {
    rows(controller, "events")
        .into_iter()
        .filter(|event| event["type"] == event_type)
        .collect()
}

#[test]
fn a_file_edited_by_hand_is_reported_and_converged_back() {
    let env = TestEnv::new();
    let (controller, agent) = ticker_without_rule(&env, true);
    let banner = agent.service_dir("ticker").join("banner.txt");
    std::fs::write(&banner, "tampered\n").unwrap();
    wait_until("the banner to be converged back", TIMEOUT, || {
        let content = std::fs::read_to_string(&banner).unwrap_or_default();
        if content == "ticker\n" {
            Ok(())
        } else {
            Err(format!("banner {content:?}\n{}", agent.log_tail()))
        }
    });
    wait_until("drift detected and resolved events", TIMEOUT, || {
        let detected = drift_events(&controller, "host.drift.detected");
        let resolved = drift_events(&controller, "host.drift.resolved");
        let named = detected
            .iter()
            .any(|event| event["data"]["resource"] == "file:banner.txt");
        if named && !resolved.is_empty() {
            Ok(())
        } else {
            Err(format!("{detected:?} {resolved:?}"))
        }
    });
}

#[test]
fn a_workload_killed_outside_levee_is_started_again_by_the_drift_check() {
    let env = TestEnv::new();
    let (controller, agent) = ticker_without_rule(&env, true);
    let pids = wait_for_starts(&agent, 1);
    kill(Pid::from_raw(pids[0] as i32), Signal::SIGKILL).unwrap();
    let pids = wait_for_starts(&agent, 2);
    assert_eq!(pids.len(), 2, "started exactly once more: {pids:?}");
    wait_until("a drift event naming the process", TIMEOUT, || {
        let detected = drift_events(&controller, "host.drift.detected");
        if detected
            .iter()
            .any(|event| event["data"]["resource"] == "process:ticker")
        {
            Ok(())
        } else {
            Err(format!("{detected:?}"))
        }
    });
}

#[test]
fn with_correction_off_a_drifting_host_shows_in_status_until_put_right() {
    let env = TestEnv::new();
    let (controller, agent) = ticker_without_rule(&env, false);
    let banner = agent.service_dir("ticker").join("banner.txt");
    std::fs::write(&banner, "tampered\n").unwrap();
    let drifting = |controller: &ControllerProcess| -> Vec<String> {
        let status = controller.cli(&["status"]).unwrap();
        status["agents"][0]["drift"]
            .as_array()
            .map(|drift| {
                drift
                    .iter()
                    .map(|d| d.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until("status to show the drifted banner", TIMEOUT, || {
        let drift = drifting(&controller);
        if drift.iter().any(|d| d.contains("file:banner.txt")) {
            Ok(())
        } else {
            Err(format!("{drift:?}"))
        }
    });
    assert_eq!(
        std::fs::read_to_string(&banner).unwrap(),
        "tampered\n",
        "correction is off"
    );
    std::fs::write(&banner, "ticker\n").unwrap();
    wait_until(
        "status to clear once the banner is put right",
        TIMEOUT,
        || {
            let drift = drifting(&controller);
            if drift.is_empty() {
                Ok(())
            } else {
                Err(format!("{drift:?}"))
            }
        },
    );
}
