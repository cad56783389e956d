//! Rule actions that reach outside a service: calling a webhook, running
//! a command on matching agents, and provisioning a new host when no
//! agent has room (the new agent enrolls and takes the work).

use std::path::PathBuf;

use levee_tests::http_sink::HttpSink;
use levee_tests::process::binary;
use levee_tests::{TestEnv, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{TIMEOUT, events_of, rows};

#[test]
fn a_webhook_rule_delivers_the_event_and_retries_a_busy_receiver() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    // Busy twice, then taken.
    let receiver = HttpSink::start(&[503, 503]);
    let specs = env.write_specs(
        "specs",
        &[(
            "page.yaml",
            &format!(
                r#"
kind: Rule
name: page-on-call
match: {{ type: [app.alarm] }}
action: {{ webhook: {{ url: "{}" }} }}
"#,
                receiver.url("/hooks/page")
            ),
        )],
    );
    controller.apply(&specs).expect("levee apply");
    let agent = env.start_agent("edge-1", &[], &[&controller]);
    controller.wait_for_connected_agents(1);
    wait_until("the agent to take an emitted event", TIMEOUT, || {
        agent.emit("app.alarm", r#"{"level":"high"}"#)
    });
    let calls = wait_until("the third, successful call", TIMEOUT, || {
        let calls = receiver.received();
        (calls.len() >= 3)
            .then_some(calls.clone())
            .ok_or_else(|| format!("{calls:?}"))
    });
    assert_eq!(calls.len(), 3, "no call after the one taken: {calls:?}");
    let key = calls[0].header("idempotency-key").expect("idempotency key");
    assert!(
        calls
            .iter()
            .all(|call| call.header("idempotency-key") == Some(key)),
        "every attempt carries the same key: {calls:?}"
    );
    assert_eq!(calls[0].path, "/hooks/page");
    let body: Value = serde_json::from_str(&calls[2].body).unwrap();
    assert_eq!(body["rule"], "page-on-call");
    assert_eq!(body["host"], "edge-1");
    assert_eq!(body["event"]["type"], "app.alarm");
    assert_eq!(body["event"]["data"]["level"], "high");
    let outcome = events_of(&controller, "app.alarm")[0]["outcomes"][0].clone();
    assert!(
        outcome
            .as_str()
            .unwrap()
            .contains("page-on-call: calling http://127.0.0.1"),
        "{outcome}"
    );
}

#[test]
fn a_run_rule_runs_its_command_once_on_each_matching_agent() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let specs = env.write_specs(
        "specs",
        &[(
            "vacuum.yaml",
            r#"
kind: Rule
name: vacuum
match: { type: [app.bloat] }
action:
  run:
    argv: ["/bin/sh", "-c", "echo \"$LEVEE_TASK_ID\" >> ran.txt"]
    selector: { role: db }
"#,
        )],
    );
    controller.apply(&specs).expect("levee apply");
    let dbs: Vec<_> = (1..=2)
        .map(|n| env.start_agent(&format!("db-{n}"), &[("role", "db")], &[&controller]))
        .collect();
    let web = env.start_agent("web-1", &[("role", "web")], &[&controller]);
    controller.wait_for_connected_agents(3);
    wait_until("the agent to take an emitted event", TIMEOUT, || {
        web.emit("app.bloat", "{}")
    });
    let ran = |name: &str| -> PathBuf {
        env.path()
            .join(format!("agent-{name}"))
            .join("runs")
            .join("vacuum")
            .join("ran.txt")
    };
    wait_until("both run tasks to succeed", TIMEOUT, || {
        let tasks: Vec<Value> = rows(&controller, "tasks")
            .into_iter()
            .filter(|task| task["service"] == "rule/vacuum")
            .collect();
        let done = tasks
            .iter()
            .filter(|task| task["state"] == "succeeded")
            .count();
        (tasks.len() == 2 && done == 2)
            .then_some(())
            .ok_or_else(|| format!("{tasks:?}"))
    });
    for db in &dbs {
        let lines = std::fs::read_to_string(ran(&db.name)).unwrap();
        assert_eq!(lines.lines().count(), 1, "{}: ran once: {lines:?}", db.name);
    }
    assert!(
        !ran("web-1").exists(),
        "the web agent does not match the selector"
    );
}

/// Ends the host a provisioner started, by the pid it wrote.
struct ProvisionedHost(PathBuf);

impl Drop for ProvisionedHost {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|pid| pid.trim().parse::<i32>().ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            let gone = wait_until_gone(pid);
            if !gone {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn wait_until_gone(pid: i32) -> bool {
    for _ in 0..200 {
        if kill(Pid::from_raw(pid), None).is_err() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn with_no_room_left_a_provisioner_makes_a_host_that_enrolls_and_takes_the_work() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    // One replica fills an agent: the second has nowhere to go.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let request = cpus * 1000 * 3 / 4;
    // The new host's config and certificate, as its image would carry them.
    let (_, spare_config) =
        env.write_agent_config("spare-1", &[("role", "worker")], &[&controller], |_| {});
    let pid_file = env.path().join("spare-1.pid");
    let _spare = ProvisionedHost(pid_file.clone());
    let script = env.path().join("provision.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
set -eu
cd "$DIR"
LEVEE_WORKLOAD=provisioned LEVEE_LOG_FORMAT=json setsid "$AGENT" --config "$CONFIG" \
  > "$DIR/spare-1.log" 2>&1 < /dev/null &
echo $! > "$DIR/spare-1.pid"
echo "started spare-1 for $LEVEE_PROVISION_ID with $LEVEE_LABELS"
"#,
    )
    .unwrap();
    let specs = env.write_specs(
        "specs",
        &[(
            "web.yaml",
            &format!(
                r#"
kind: Service
name: web
replicas: 2
placement:
  selector: {{ role: worker }}
  resources: {{ cpu_millis: {request} }}
process:
  argv: ["/bin/sh", "-c", "exec sleep 3600"]
  stop_timeout_ms: 2000
---
kind: Provisioner
name: spare
argv: ["/bin/sh", "{script}"]
env: {{ AGENT: "{agent}", CONFIG: "{config}", DIR: "{dir}" }}
labels: {{ role: worker }}
max_hosts: 1
---
kind: Rule
name: more-hosts
match: {{ type: [levee.service.unplaced], subject: [web] }}
action: {{ provision: {{ provisioner: spare }} }}
guardrails: {{ cooldown_ms: 60000 }}
"#,
                script = script.display(),
                agent = binary("levee-agent").display(),
                config = spare_config.display(),
                dir = env.path().display(),
            ),
        )],
    );
    let _worker = env.start_agent("worker-1", &[("role", "worker")], &[&controller]);
    controller.wait_for_connected_agents(1);
    controller.apply(&specs).expect("levee apply");
    let unplaced = events_of(&controller, "levee.service.unplaced");
    assert_eq!(unplaced.len(), 1, "{unplaced:?}");
    assert_eq!(unplaced[0]["data"]["short"], 1);
    let provisions = wait_until("the provisioner to succeed", TIMEOUT, || {
        let provisions = rows(&controller, "provisions");
        (provisions
            .first()
            .is_some_and(|p| p["state"] == "succeeded"))
        .then_some(provisions.clone())
        .ok_or_else(|| format!("{provisions:?}\n{}", controller.log_tail()))
    });
    assert_eq!(provisions.len(), 1, "max_hosts is 1: {provisions:?}");
    assert!(
        provisions[0]["detail"]
            .as_str()
            .unwrap()
            .contains("started spare-1 for h1 with role=worker"),
        "{provisions:?}"
    );
    // The new host enrolled and took the replica that had no room.
    let spare_log = env.path().join("spare-1.log");
    wait_until("web converged on both hosts", TIMEOUT, || {
        let status = controller.cli(&["status"])?;
        let web = &status["services"][0];
        (web["converged"] == 2).then_some(()).ok_or_else(|| {
            let log = std::fs::read_to_string(&spare_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            format!("{web}\nspare-1 log (newest first):\n{}", tail.join("\n"))
        })
    });
    let on_spare = rows(&controller, "agents")
        .into_iter()
        .find(|agent| agent["agent_id"] == "spare-1")
        .expect("spare-1 enrolled");
    assert_eq!(on_spare["services"], serde_json::json!(["web"]));
}
