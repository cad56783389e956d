//! The two jobs Levee exists for, with real processes: scaling under load
//! (a load signal emitted on the agents scales a service up to its max and
//! back, under guardrails) and recovering from a lost host (its workloads
//! run again on other matching agents).

use std::time::Instant;

use levee_tests::cluster::run_levee;
use levee_tests::{AgentProcess, ControllerProcess, TestEnv, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{TIMEOUT, is_running, rows};

const WEB: &str = r#"
kind: Service
name: web
replicas: { min: 2, max: 6 }
placement: { selector: { role: worker } }
process:
  argv: ["/bin/sh", "-c", "echo $$ >> starts.log; exec sleep 3600"]
  stop_timeout_ms: 2000
"#;

const RULES: &str = r#"
kind: Rule
name: scale-up
match: { type: [app.load], data: { cpu: [{ numeric: [">", 80] }] } }
action: { scale: { service: web, by: 2 } }
guardrails: { cooldown_ms: 2000, max_actions: 2, window_ms: 120000 }
---
kind: Rule
name: scale-down
match: { type: [app.load], data: { cpu: [{ numeric: ["<", 20] }] } }
action: { scale: { service: web, by: -2 } }
guardrails: { cooldown_ms: 2000, max_actions: 2, window_ms: 120000, scale_down_after_up_ms: 2000 }
"#;

fn web_status(controller: &ControllerProcess) -> Value {
    let status = controller.cli(&["status"]).unwrap();
    status["services"][0].clone()
}

fn wait_for_web(controller: &ControllerProcess, target: u64) {
    wait_until(
        &format!("web at {target} converged replicas"),
        TIMEOUT,
        || {
            let web = web_status(controller);
            if web["target"] == target && web["converged"] == target && web["placed"] == target {
                Ok(())
            } else {
                Err(web.to_string())
            }
        },
    );
}

/// Outcomes of the committed load events, e.g. `scale-up: scaled web 2 -> 4: plan p9.1`.
fn outcomes(controller: &ControllerProcess) -> Vec<String> {
    outcomes_of(controller, Some("app.load"))
}

/// Rule outcomes of every committed event, or of events of one type.
fn outcomes_of(controller: &ControllerProcess, event_type: Option<&str>) -> Vec<String> {
    let events = controller.cli(&["events", "--limit", "10000"]).unwrap();
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event_type.is_none_or(|wanted| event["type"] == wanted))
        .flat_map(|event| event["outcomes"].as_array().cloned().unwrap_or_default())
        .map(|outcome| outcome.as_str().unwrap().to_owned())
        .collect()
}

/// `count` agents `worker-1`.. with the label `role=worker`.
fn start_workers(env: &TestEnv, controller: &ControllerProcess, count: usize) -> Vec<AgentProcess> {
    (1..=count)
        .map(|n| env.start_agent(&format!("worker-{n}"), &[("role", "worker")], &[controller]))
        .collect()
}

fn running_replicas(agents: &[AgentProcess]) -> usize {
    agents
        .iter()
        .filter(|agent| {
            std::fs::read_to_string(agent.service_dir("web").join("starts.log"))
                .ok()
                .and_then(|log| {
                    log.lines()
                        .last()
                        .and_then(|pid| pid.trim().parse::<u32>().ok())
                })
                .is_some_and(is_running)
        })
        .count()
}

#[test]
fn flash_sale_scales_up_to_max_and_back_under_guardrails() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let agents = start_workers(&env, &controller, 6);
    let specs = env.write_specs("specs", &[("web.yaml", WEB), ("rules.yaml", RULES)]);
    controller.wait_for_connected_agents(6);
    controller.apply(&specs).expect("levee apply");
    wait_for_web(&controller, 2);
    let hot = r#"{"cpu": 95}"#;
    let cold = r#"{"cpu": 5}"#;

    // Load rises: 2 -> 4 at once, then 4 -> 6 once the cooldown passed;
    // readings in between are held.
    agents[0].emit("app.load", hot).expect("emit");
    wait_for_web(&controller, 4);
    wait_until("a second scale-up after the cooldown", TIMEOUT, || {
        agents[1]
            .emit("app.load", hot)
            .map_err(|err| err.to_string())?;
        if web_status(&controller)["target"] == 6 {
            Ok(())
        } else {
            Err(web_status(&controller).to_string())
        }
    });
    wait_for_web(&controller, 6);
    assert_eq!(running_replicas(&agents), 6);
    agents[2].emit("app.load", hot).expect("emit");
    let seen = outcomes(&controller);
    assert!(
        seen.iter().any(|o| o.contains("scale-up: held: cooldown")),
        "{seen:#?}"
    );
    assert_eq!(web_status(&controller)["target"], 6, "never above max");

    // Load falls: back to 2, two steps, after the guardrails allow.
    wait_until("scaled back down to 2", TIMEOUT, || {
        agents[3]
            .emit("app.load", cold)
            .map_err(|err| err.to_string())?;
        if web_status(&controller)["target"] == 2 {
            Ok(())
        } else {
            Err(web_status(&controller).to_string())
        }
    });
    wait_for_web(&controller, 2);
    wait_until("four replicas stopped", TIMEOUT, || {
        let running = running_replicas(&agents);
        if running == 2 {
            Ok(())
        } else {
            Err(format!("{running} running"))
        }
    });

    // A flapping signal now changes nothing: each rule used its two
    // actions in the window.
    let before = outcomes(&controller).len();
    for n in 0..10 {
        agents[n % 6]
            .emit("app.load", if n % 2 == 0 { hot } else { cold })
            .expect("emit");
    }
    wait_until("the flapping readings committed", TIMEOUT, || {
        let after = outcomes(&controller);
        if after.len() >= before + 10 {
            Ok(())
        } else {
            Err(format!("{after:#?}"))
        }
    });
    let flapping = &outcomes(&controller)[before..];
    assert!(
        flapping.iter().all(|o| o.contains(": held: ")),
        "{flapping:#?}"
    );
    let scaled = outcomes(&controller)
        .iter()
        .filter(|o| o.contains(": scaled web"))
        .count();
    assert_eq!(
        scaled,
        4,
        "2 -> 4 -> 6 -> 4 -> 2 and nothing more: {:#?}",
        outcomes(&controller)
    );
    assert_eq!(web_status(&controller)["target"], 2);

    // `levee why` walks the last change back to the reading that caused it.
    let chains = controller.cli(&["why", "web"]).unwrap();
    let last = &chains[0];
    assert_eq!(last["event"]["type"], "app.load", "{chains:#}");
    assert_eq!(last["event"]["data"]["cpu"], 5);
    assert_eq!(last["rule"], "scale-down");
    assert!(
        last["rule_outcome"]
            .as_str()
            .unwrap()
            .starts_with("scaled web 4 -> 2"),
        "{last:#}"
    );
    let tasks = last["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert!(
        tasks
            .iter()
            .all(|task| task["action"] == "remove" && task["state"] == "succeeded"),
        "{last:#}"
    );
}

#[test]
fn a_lost_host_s_workloads_run_again_on_other_agents() {
    let mut env = TestEnv::new();
    env.agents_options = "lost_after_ms = 1500".into();
    let controller = env.start_controller(1);
    let mut agents = start_workers(&env, &controller, 3);
    controller.wait_for_connected_agents(3);
    let specs = env.write_specs(
        "specs",
        &[("web.yaml", &WEB.replace("{ min: 2, max: 6 }", "2"))],
    );
    controller.apply(&specs).expect("levee apply");
    wait_for_web(&controller, 2);
    let pid_on = |agent: &AgentProcess| -> Option<u32> {
        std::fs::read_to_string(agent.service_dir("web").join("starts.log"))
            .ok()
            .and_then(|log| log.lines().last().and_then(|pid| pid.trim().parse().ok()))
            .filter(|pid| is_running(*pid))
    };
    let victim = (0..3)
        .find(|i| pid_on(&agents[*i]).is_some())
        .expect("web runs somewhere");
    let spare = (0..3)
        .find(|i| pid_on(&agents[*i]).is_none())
        .expect("one agent is spare");

    // The host dies: its agent and its workload.
    let workload = pid_on(&agents[victim]).unwrap();
    let killed_at = Instant::now();
    agents[victim].kill();
    kill(Pid::from_raw(workload as i32), Signal::SIGKILL).unwrap();
    let pid = wait_until("web to run on the spare agent", TIMEOUT, || {
        pid_on(&agents[spare]).ok_or_else(|| agents[spare].log_tail())
    });
    let recovered_in = killed_at.elapsed();
    eprintln!(
        "kill to running elsewhere: {} ms (lost_after_ms = 1500)",
        recovered_in.as_millis()
    );
    assert!(is_running(pid));
    let lost: Vec<Value> = rows(&controller, "events")
        .into_iter()
        .filter(|event| event["type"] == "host.lost")
        .collect();
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert_eq!(lost[0]["subject"], agents[victim].name.as_str());
    assert_eq!(lost[0]["source"], "controller");
    wait_for_web(&controller, 2);

    // The host comes back: it is told to drop the replica that moved.
    agents[victim].start();
    wait_until("host.recovered and web on two agents only", TIMEOUT, || {
        let recovered = rows(&controller, "events")
            .iter()
            .any(|event| event["type"] == "host.recovered");
        let running = (0..3).filter(|i| pid_on(&agents[*i]).is_some()).count();
        if recovered && running == 2 {
            Ok(())
        } else {
            Err(format!("recovered {recovered}, {running} running"))
        }
    });
}

#[test]
fn rule_trials_and_dry_runs_change_nothing_anywhere() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let agents = start_workers(&env, &controller, 4);
    controller.wait_for_connected_agents(4);
    let dry_rules = RULES.replace("window_ms: 120000 }", "window_ms: 120000, dry_run: true }");
    let specs = env.write_specs("specs", &[("web.yaml", WEB), ("rules.yaml", &dry_rules)]);
    controller.apply(&specs).expect("levee apply");
    wait_for_web(&controller, 2);
    let snapshot = |controller: &ControllerProcess| {
        (
            controller.cli(&["plans", "--limit", "1000"]).unwrap(),
            controller.cli(&["tasks", "--limit", "1000"]).unwrap(),
            controller.cli(&["status"]).unwrap(),
            controller.cli(&["history"]).unwrap(),
        )
    };
    let before = snapshot(&controller);

    // A trial of the real (not dry) rules against recorded readings.
    let live = env.write_specs("live", &[("web.yaml", WEB), ("rules.yaml", RULES)]);
    let events = env.path().join("readings.jsonl");
    std::fs::write(
        &events,
        "{\"agent\": \"worker-1\", \"type\": \"app.load\", \"data\": {\"cpu\": 95}, \"time_ms\": 1000}\n\
         {\"agent\": \"worker-2\", \"type\": \"app.load\", \"data\": {\"cpu\": 97}, \"time_ms\": 1500}\n\
         {\"agent\": \"worker-1\", \"type\": \"app.load\", \"data\": {\"cpu\": 96}, \"time_ms\": 4000}\n",
    )
    .unwrap();
    let trial = controller
        .cli(&[
            "rules",
            "test",
            "--events",
            events.to_str().unwrap(),
            "-f",
            live.to_str().unwrap(),
        ])
        .unwrap();
    // The trial lists the events it raised too (a shortfall, when web
    // outgrows the workers); the load readings are what this checks.
    let tried: Vec<&str> = trial["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "app.load")
        .map(|event| event["outcomes"][0].as_str().unwrap())
        .collect();
    assert!(
        tried[0].starts_with("scale-up: scaled web 2 -> 4"),
        "{trial:#}"
    );
    assert!(
        tried[1].starts_with("scale-up: held: cooldown"),
        "{trial:#}"
    );
    assert!(
        tried[2].starts_with("scale-up: scaled web 4 -> 6"),
        "{trial:#}"
    );
    assert_eq!(trial["events"][0]["changes"].as_array().unwrap().len(), 2);
    assert_eq!(
        trial["targets"][0],
        serde_json::json!({ "service": "web", "from": 2, "to": 6 })
    );

    // The same trial on a saved state, with no controller contacted (the
    // CLI here has no config naming one), gives the same answer.
    let saved = env.path().join("state.json");
    controller
        .run(&["state", "save", saved.to_str().unwrap()])
        .expect("levee state save");
    let offline = run_levee(&[
        "rules",
        "test",
        "--state",
        saved.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "-f",
        live.to_str().unwrap(),
        "--output",
        "json",
    ])
    .expect("levee rules test --state");
    let offline: Value = serde_json::from_str(&offline).unwrap();
    // Plan ids name log positions, which may have moved on; the rest must
    // be the same.
    let without_plan_ids = |trial: &Value| -> Vec<String> {
        trial["events"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|event| event["outcomes"].as_array().unwrap().clone())
            .map(|outcome| {
                let outcome = outcome.as_str().unwrap();
                outcome.split(": plan ").next().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(without_plan_ids(&offline), without_plan_ids(&trial));
    assert_eq!(offline["targets"], trial["targets"]);

    // The committed rules are dry: a real reading is reported, not acted on.
    agents[0].emit("app.load", r#"{"cpu": 95}"#).expect("emit");
    wait_until("the reading committed", TIMEOUT, || {
        let seen = outcomes(&controller);
        if seen
            .iter()
            .any(|o| o.contains("dry run: would scale web 2 -> 4"))
        {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });

    // Nothing changed anywhere: plans, tasks, status, history, hosts.
    assert_eq!(snapshot(&controller), before);
    assert_eq!(running_replicas(&agents), 2);
}

#[test]
fn a_workload_that_crashes_each_repair_is_repaired_only_to_the_chain_limit() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let specs = env.write_specs(
        "specs",
        &[
            (
                "crasher.yaml",
                "kind: Service\nname: crasher\nprocess:\n  argv: [\"/bin/sh\", \"-c\", \"echo $$ >> starts.log; exit 3\"]\n",
            ),
            (
                "repair.yaml",
                "kind: Rule\nname: repair-crasher\nmatch: { type: [host.process.exited], subject: [crasher] }\naction: { repair: { service: crasher } }\nguardrails: { max_chain_depth: 3 }\n",
            ),
        ],
    );
    controller.apply(&specs).expect("levee apply");
    let agent = env.start_agent("worker-1", &[], &[&controller]);
    wait_until("the loop to be refused", TIMEOUT, || {
        let refused = outcomes_with(
            &controller,
            "refused: this event ends a chain of 3 reactions",
        );
        if refused.is_empty() {
            Err(agent.log_tail())
        } else {
            Ok(())
        }
    });
    let starts = std::fs::read_to_string(agent.service_dir("crasher").join("starts.log")).unwrap();
    assert_eq!(
        starts.lines().count(),
        4,
        "placed once, repaired three times: {starts}"
    );
    let chains = controller
        .cli(&["why", "crasher", "--limit", "10"])
        .unwrap();
    assert_eq!(chains.as_array().unwrap().len(), 4, "{chains:#}");
}

fn outcomes_with(controller: &ControllerProcess, needle: &str) -> Vec<String> {
    let mut found = outcomes_of(controller, None);
    found.retain(|outcome| outcome.contains(needle));
    found
}

#[test]
fn a_rule_needing_approval_acts_when_an_operator_approves() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let agents = start_workers(&env, &controller, 4);
    let rules = RULES.replace("window_ms: 120000 }", "window_ms: 120000, approval: true }");
    let specs = env.write_specs("specs", &[("web.yaml", WEB), ("rules.yaml", &rules)]);
    controller.apply(&specs).expect("levee apply");
    wait_for_web(&controller, 2);
    agents[0].emit("app.load", r#"{"cpu": 95}"#).expect("emit");
    let waiting = wait_until("an action awaiting approval", TIMEOUT, || {
        let approvals = controller.cli(&["approvals"]).unwrap();
        match approvals.as_array().unwrap().first() {
            Some(approval) => Ok(approval.clone()),
            None => Err("none yet".to_string()),
        }
    });
    assert_eq!(waiting["rule"], "scale-up");
    assert_eq!(waiting["action"], "scale web by 2");
    assert_eq!(
        web_status(&controller)["target"],
        2,
        "nothing happens before approval"
    );
    let answer = controller
        .run(&["approve", waiting["id"].as_str().unwrap()])
        .unwrap();
    assert!(
        answer.contains("approved by operator/tester: scaled web 2 -> 4"),
        "{answer}"
    );
    wait_for_web(&controller, 4);
    assert_eq!(running_replicas(&agents), 4);
}

#[test]
fn a_timer_fires_on_its_schedule_and_a_rule_scales_on_it() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let agents = start_workers(&env, &controller, 3);
    let timer = "kind: Timer\nname: every-second\ncron: \"* * * * * *\"\n---\nkind: Rule\nname: scheduled-scale\nmatch: { type: [timer.fired], subject: [every-second] }\naction: { scale: { service: web, to: 3 } }\n";
    let specs = env.write_specs("specs", &[("web.yaml", WEB), ("timer.yaml", timer)]);
    controller.apply(&specs).expect("levee apply");
    wait_for_web(&controller, 3);
    assert_eq!(running_replicas(&agents), 3);
    wait_until("three timer events", TIMEOUT, || {
        let fired: Vec<i64> = rows(&controller, "events")
            .iter()
            .filter(|event| event["type"] == "timer.fired")
            .map(|event| event["data"]["scheduled_ms"].as_i64().unwrap())
            .collect();
        let increasing = fired.windows(2).all(|pair| pair[1] > pair[0]);
        match (fired.len() >= 3, increasing) {
            (true, true) => Ok(()),
            (_, false) => panic!("a scheduled time fired twice or out of order: {fired:?}"),
            _ => Err(format!("{fired:?}")),
        }
    });
}
