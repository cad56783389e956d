//! Desired state end to end: `levee plan` against what agents run,
//! `levee apply` rolling out batch by batch, scaling, history and
//! rollback, and a failed health check rolled back by itself.

use levee_tests::{AgentProcess, ControllerProcess, TestEnv, wait_until};
use serde_json::Value;

use crate::common::{TIMEOUT, is_running, rows};

fn web(version: &str) -> String {
    format!(
        r#"
kind: Service
name: web
replicas: {{ min: 1, max: 3, initial: 2 }}
placement:
  selector: {{ role: worker }}
  spread: site
update: {{ max_parallel: 1 }}
process:
  argv: ["/bin/sh", "-c", "echo $$ >> starts.log; exec sleep 3600"]
  stop_timeout_ms: 2000
files:
  - path: config.txt
    content: "{version}\n"
"#
    )
}

fn config(agent: &AgentProcess) -> Option<String> {
    std::fs::read_to_string(agent.service_dir("web").join("config.txt")).ok()
}

fn wait_for_config(agents: &[&AgentProcess], want: Option<&str>) {
    for agent in agents {
        wait_until(
            &format!("{} to have config {want:?}", agent.name),
            TIMEOUT,
            || {
                let have = config(agent);
                if have.as_deref().map(str::trim) == want {
                    Ok(())
                } else {
                    Err(format!(
                        "config is {have:?}\nagent log:\n{}",
                        agent.log_tail()
                    ))
                }
            },
        );
    }
}

/// The last pid in the service's starts.log, if that process runs.
fn running_pid(agent: &AgentProcess) -> Option<u32> {
    let starts = std::fs::read_to_string(agent.service_dir("web").join("starts.log")).ok()?;
    let pid: u32 = starts.lines().last()?.trim().parse().ok()?;
    is_running(pid).then_some(pid)
}

fn plan(controller: &ControllerProcess, dir: &std::path::Path) -> (i32, Value) {
    let (code, stdout, stderr) =
        controller.run_with_code(&["plan", "-f", dir.to_str().unwrap(), "--output", "json"]);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("plan printed non-JSON ({err}): {stdout}\n{stderr}"));
    (code, json)
}

fn steps(plan: &Value) -> Vec<(String, String, u64, Vec<String>)> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            (
                step["action"].as_str().unwrap().to_owned(),
                step["agent_id"].as_str().unwrap().to_owned(),
                step["batch"].as_u64().unwrap(),
                step["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn plan_apply_scale_history_and_rollback() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let w1 = env.start_agent(
        "worker-1",
        &[("role", "worker"), ("site", "a")],
        &[&controller],
    );
    let w2 = env.start_agent(
        "worker-2",
        &[("role", "worker"), ("site", "b")],
        &[&controller],
    );
    let w3 = env.start_agent(
        "worker-3",
        &[("role", "worker"), ("site", "a")],
        &[&controller],
    );
    controller.wait_for_connected_agents(3);
    let v1 = env.write_specs("v1", &[("web.yaml", &web("v1"))]);
    let v2 = env.write_specs("v2", &[("web.yaml", &web("v2"))]);

    // Nothing runs yet: two replicas to create, one per site.
    let (code, preview) = plan(&controller, &v1);
    assert_eq!(code, 2, "changes pending: {preview}");
    let created: Vec<(String, String)> = steps(&preview)
        .into_iter()
        .map(|(a, agent, _, _)| (a, agent))
        .collect();
    assert_eq!(
        created,
        [
            ("create".into(), "worker-1".into()),
            ("create".into(), "worker-2".into())
        ]
    );

    let (code, _, stderr) =
        controller.run_with_code(&["apply", "-f", v1.to_str().unwrap(), "--reason", "first"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("2 succeeded"),
        "progress was shown: {stderr}"
    );
    wait_for_config(&[&w1, &w2], Some("v1"));
    assert_eq!(config(&w3), None, "worker-3 was not needed");

    // Applied: planning the same specs again shows nothing.
    let (code, preview) = plan(&controller, &v1);
    assert_eq!((code, steps(&preview).len()), (0, 0), "{preview}");

    // A change rolls out one agent per batch and names what changes.
    let (code, preview) = plan(&controller, &v2);
    assert_eq!(code, 2);
    let updates = steps(&preview);
    assert_eq!(updates.len(), 2, "{preview}");
    for (index, (action, _, batch, changes)) in updates.iter().enumerate() {
        assert_eq!((action.as_str(), *batch), ("update", index as u64));
        assert_eq!(changes, &["~ file:config.txt"]);
    }
    let (code, _, stderr) = controller.run_with_code(&["apply", "-f", v2.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("batch 2/2"), "batches were shown: {stderr}");
    wait_for_config(&[&w1, &w2], Some("v2"));

    // Scaling within bounds places a replica; outside them is refused.
    let (code, _, stderr) = controller.run_with_code(&["scale", "web", "3"]);
    assert_eq!(code, 0, "{stderr}");
    wait_for_config(&[&w3], Some("v2"));
    let (code, _, stderr) = controller.run_with_code(&["scale", "web", "4"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("1 to 3"), "{stderr}");

    // Scaling down stops the removed replicas and deletes their files.
    let pids: Vec<u32> = [&w1, &w2, &w3]
        .iter()
        .map(|agent| running_pid(agent).expect("web runs"))
        .collect();
    let (code, _, stderr) = controller.run_with_code(&["scale", "web", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let status = controller.cli(&["status"]).unwrap();
    let service = &status["services"][0];
    assert_eq!(
        (service["target"].as_u64(), service["placed"].as_u64()),
        (Some(1), Some(1)),
        "{status}"
    );
    let agents = [&w1, &w2, &w3];
    let kept: Vec<usize> = (0..3).filter(|i| config(agents[*i]).is_some()).collect();
    assert_eq!(kept.len(), 1, "one replica left");
    for index in (0..3).filter(|i| !kept.contains(i)) {
        wait_until(
            &format!("web to stop on {}", agents[index].name),
            TIMEOUT,
            || {
                if is_running(pids[index]) {
                    Err(agents[index].log_tail())
                } else {
                    Ok(())
                }
            },
        );
    }
    assert!(
        is_running(pids[kept[0]]),
        "the kept replica was not touched"
    );

    // Every version is kept with who applied it and why.
    let history = rows(&controller, "history");
    let origins: Vec<(&str, &str)> = history
        .iter()
        .map(|v| (v["origin"].as_str().unwrap(), v["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(origins, [("apply", "first"), ("apply", "")]);
    assert!(
        history[0]["applied_by"]
            .as_str()
            .unwrap()
            .contains("operator"),
        "{history:?}"
    );

    // Rollback restores version 1 as version 3, through the same rollout.
    let (code, _, stderr) = controller.run_with_code(&["rollback", "1"]);
    assert_eq!(code, 0, "{stderr}");
    wait_for_config(&[agents[kept[0]]], Some("v1"));
    let history = rows(&controller, "history");
    assert_eq!(
        history.last().unwrap()["origin"],
        "rollback to 1",
        "{history:?}"
    );
    assert_eq!(history.last().unwrap()["current"], true);
}

fn checked(version: &str, marker: &str) -> String {
    format!(
        r#"
kind: Service
name: web
replicas: 2
update: {{ max_parallel: 1, auto_rollback: true }}
process:
  argv: ["/bin/sh", "-c", "echo {version} > version.txt; touch ok; exec sleep 3600"]
  stop_timeout_ms: 2000
health:
  command: {{ argv: ["/bin/test", "-f", "{marker}"] }}
  interval_ms: 100
  start_timeout_ms: 2000
"#
    )
}

#[test]
fn a_rollout_that_fails_its_health_check_rolls_back_by_itself() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let a = env.start_agent("worker-1", &[], &[&controller]);
    let b = env.start_agent("worker-2", &[], &[&controller]);
    let good = env.write_specs("good", &[("web.yaml", &checked("v1", "ok"))]);
    let bad = env.write_specs("bad", &[("web.yaml", &checked("v2", "never-created"))]);
    controller.wait_for_connected_agents(2);
    let (code, _, stderr) = controller.run_with_code(&["apply", "-f", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");

    let (code, _, stderr) = controller.run_with_code(&["apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "a failed rollout fails the command: {stderr}");
    assert!(stderr.contains("rolled back automatically"), "{stderr}");
    assert!(
        stderr.contains("never-created") || stderr.contains("health"),
        "the error names the check: {stderr}"
    );

    // The first batch failed, the second was never sent.
    let tasks = rows(&controller, "tasks");
    let v2: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["action"] == "update")
        .take(2)
        .collect();
    let states: Vec<&str> = v2.iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["failed", "cancelled"], "{tasks:#?}");
    let history = rows(&controller, "history");
    assert!(
        history.last().unwrap()["origin"]
            .as_str()
            .unwrap()
            .starts_with("automatic rollback of web"),
        "{history:?}"
    );
    assert_eq!(
        history.last().unwrap()["applied_by"],
        "levee (automatic rollback)"
    );

    // Both agents run v1 again.
    for agent in [&a, &b] {
        wait_until(&format!("{} back on v1", agent.name), TIMEOUT, || {
            let version = std::fs::read_to_string(agent.service_dir("web").join("version.txt"))
                .unwrap_or_default();
            if version.trim() == "v1" {
                Ok(())
            } else {
                Err(format!("version {version:?}\n{}", agent.log_tail()))
            }
        });
    }
    let status = controller.cli(&["status"]).unwrap();
    wait_until("web converged on both agents", TIMEOUT, || {
        let status = controller.cli(&["status"]).unwrap();
        if status["services"][0]["converged"] == 2 {
            Ok(())
        } else {
            Err(status.to_string())
        }
    });
    assert_eq!(status["spec_version"], 3);
}
