//! `levee dev` starts everything, stops cleanly on Ctrl-C, and keeps its
//! state across restarts.

use levee_tests::process::{Running, binary, workloads_under};
use levee_tests::{TestEnv, https, wait_until};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::process::Command;

use crate::common::TIMEOUT;

fn dev(env: &TestEnv) -> Running {
    dev_with(env, Command::new(binary("levee")))
}

/// `levee dev` in `env` through `command`, which names the binary (or a
/// shell that sets something up and then runs it).
pub(crate) fn dev_with(env: &TestEnv, mut command: Command) -> Running {
    command
        .current_dir(env.path())
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(env.path().join("dev"))
        .env("LEVEE_LOG_FORMAT", "json");
    Running::spawn("levee dev", command, &env.path().join("dev.log"))
}

/// `levee <what> --output json` through the `cli.toml` that dev wrote.
fn query(env: &TestEnv, what: &str) -> Result<Vec<Value>, String> {
    query_value(env, &[what]).and_then(|value| match value {
        Value::Array(rows) => Ok(rows),
        other => Err(format!("not a list: {other}")),
    })
}

fn query_value(env: &TestEnv, args: &[&str]) -> Result<Value, String> {
    let output = Command::new(binary("levee"))
        .args(args)
        .args(["--output", "json"])
        .env("LEVEE_CLI_CONFIG", env.path().join("dev/cli.toml"))
        .output()
        .map_err(|err| err.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|err| err.to_string())
}

pub(crate) fn clock_running(env: &TestEnv, dev: &Running) -> Vec<Value> {
    wait_until("the dev agent to run the clock service", TIMEOUT, || {
        let agents = query(env, "agents")?;
        let tasks = query(env, "tasks")?;
        let clock_done = tasks
            .iter()
            .any(|task| task["service"] == "clock" && task["state"] == "succeeded");
        let connected = agents
            .first()
            .is_some_and(|agent| agent["connected"] == true);
        if clock_done && connected {
            Ok(agents)
        } else {
            Err(format!(
                "agents {agents:?} tasks {tasks:?}\n{}",
                dev.log_tail()
            ))
        }
    })
}

#[test]
fn levee_dev_runs_the_example_stops_on_ctrl_c_and_keeps_state() {
    let env = TestEnv::new();
    let clock_file = env.path().join("dev/agent/services/clock/now.txt");

    let mut first = dev(&env);
    let agents = clock_running(&env, &first);
    assert_eq!(agents[0]["agent_id"], "local");
    let first_epoch = agents[0]["boot_epoch"].as_u64().unwrap();
    wait_until("the clock to write now.txt", TIMEOUT, || {
        std::fs::read_to_string(&clock_file).map_err(|err| err.to_string())
    });

    // The webhook and metrics endpoints the banner names work as shown.
    let dir = env.path().join("dev");
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let hello = https::post(
        &dir.join("pki/ca.crt"),
        &format!("https://{}/hooks/dev", read("controller/webhook.addr")),
        &[
            format!("Authorization: Bearer {}", read("webhook.token")),
            "ce-specversion: 1.0".into(),
            "ce-id: 1".into(),
            "ce-source: /readme".into(),
            "ce-type: app.hello".into(),
            "Content-Type: application/json".into(),
        ],
        br#"{"hi": 1}"#,
    );
    assert_eq!(hello.status, 200, "{hello:?}");
    let events = query(&env, "events").unwrap();
    assert!(
        events.iter().any(|event| event["type"] == "app.hello"),
        "{events:?}"
    );
    let scrape = https::get(&format!(
        "http://{}/metrics",
        read("controller/metrics.addr")
    ));
    assert!(
        scrape
            .body
            .lines()
            .any(|line| line == "levee_raft_is_leader 1"),
        "{scrape:?}"
    );

    // Ctrl-C stops everything cleanly: dev exits 0, the workload is gone.
    first.signal(Signal::SIGINT);
    let status = wait_until("levee dev to exit after SIGINT", TIMEOUT, || {
        first.try_status().ok_or("still running".to_owned())
    });
    assert!(
        status.success(),
        "levee dev exited with {status}:\n{}",
        first.log_tail()
    );
    let left = workloads_under(env.path());
    assert!(
        left.is_empty(),
        "workloads still running after Ctrl-C: {left:?}"
    );

    // Starting again keeps all state: same agent in a new boot epoch, the
    // same spec version, the earlier task still on record.
    let second = dev(&env);
    let agents = clock_running(&env, &second);
    assert!(
        agents[0]["boot_epoch"].as_u64().unwrap() > first_epoch,
        "a restart is a new boot epoch"
    );
    let tasks = query(&env, "tasks").unwrap();
    assert_eq!(
        tasks
            .iter()
            .filter(|task| task["service"] == "clock")
            .count(),
        1,
        "no new placement: {tasks:?}"
    );
    let status = query_value(&env, &["cluster", "status"]).unwrap();
    assert_eq!(status["spec_version"], 1);
}

/// The idle benchmark's smoke run: the measurement itself works (figures
/// come from `cargo bench --bench idle`, never from a timed test).
#[test]
fn an_idle_dev_stack_can_be_measured() {
    let env = TestEnv::new();
    let idle = levee_tests::idle::measure_dev(
        env.path(),
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(2),
    );
    assert!(idle.window >= std::time::Duration::from_secs(2));
    assert!(idle.controller_percent.is_finite() && idle.agent_percent.is_finite());
    assert!(
        workloads_under(env.path()).is_empty(),
        "the measurement ends levee dev and its workloads"
    );
}
