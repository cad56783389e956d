//! Trust boundaries from outside: a compromised agent forging the
//! controllers' events, naming other hosts, claiming labels; and secrets
//! that reach only the host a service is placed on.

use std::path::Path;

use levee_tests::hostile::{Forged, HostileAgent};
use levee_tests::https;
use levee_tests::{ControllerProcess, TestEnv, wait_until};
use serde_json::Value;

use crate::common::{TIMEOUT, rows};

/// Waits until the event `id` is listed, and returns it.
fn wait_for_event(controller: &ControllerProcess, id: &str) -> Value {
    wait_until(&format!("event {id} committed"), TIMEOUT, || {
        rows(controller, "events")
            .into_iter()
            .find(|event| event["id"] == id)
            .ok_or_else(|| "not yet".to_owned())
    })
}

const TIMER_SPECS: &str = r#"
kind: Timer
name: nightly
cron: "0 3 * * *"
---
kind: Rule
name: nightly-cleanup
match: { type: [timer.fired], subject: [nightly] }
action: { run: { argv: [/bin/true], timeout_ms: 5000, selector: { role: web } } }
---
kind: Rule
name: lost-drain
match: { type: [host.lost] }
action: { drain: {} }
"#;

#[test]
fn an_agent_forging_the_controllers_events_is_refused_and_counted() {
    let mut env = TestEnv::new();
    env.controller_keys = "metrics_listen = \"127.0.0.1:0\"".into();
    let controller = env.start_controller(1);
    let victim = env.start_agent("victim", &[("role", "web")], &[&controller]);
    controller.wait_for_connected_agents(1);
    let specs = env.write_specs("specs", &[("timer.yaml", TIMER_SPECS)]);
    controller.apply(&specs).expect("levee apply");

    let rogue = HostileAgent::new("rogue", &env.pki.issue("agent", "rogue"));
    let forged = [
        Forged::new(1, "timer.fired", "nightly", r#"{"timer":"nightly"}"#),
        Forged::new(2, " Timer.Fired ", "nightly", "{}"),
        Forged::new(3, "timer\u{200b}.fired", "nightly", "{}"),
        Forged::new(4, "host.lost", "victim", r#"{"agent":"victim"}"#),
        Forged::new(5, "levee.service.unplaced", "web", "{}"),
        // Then one it may send: once it is committed, the forged ones
        // before it were applied (or refused) too.
        Forged::new(6, "app.ok", "done", "{}"),
    ];
    let acked = rogue.send(&controller, &[], &forged).expect("acknowledged");
    assert_eq!(
        acked, 6,
        "refused events are acknowledged, so the outbox moves on"
    );
    wait_for_event(&controller, "rogue/1/6");
    let from_rogue: Vec<Value> = rows(&controller, "events")
        .into_iter()
        .filter(|event| event["source"] == "agent/rogue")
        .collect();
    assert_eq!(from_rogue.len(), 1, "only app.ok: {from_rogue:?}");
    let tasks = rows(&controller, "tasks");
    assert!(
        tasks
            .iter()
            .all(|task| task["service"] != "rule/nightly-cleanup"),
        "a forged timer.fired ran the Timer's rule: {tasks:?}"
    );
    let agents = rows(&controller, "agents");
    let victim_row = agents.iter().find(|a| a["agent_id"] == "victim").unwrap();
    assert_eq!(
        victim_row["drained_of"],
        serde_json::json!([]),
        "{victim_row}"
    );
    let metrics = https::get(&format!("http://{}/metrics", controller.metrics_addr()));
    assert!(
        metrics.body.contains("levee_events_refused_total 5"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("levee_refusals_total{boundary=\"agent_link\",reason=\"reserved_type\"} 1"),
        "the refused batch is counted at the boundary: {}",
        metrics.body
    );
    let warned = std::fs::read_to_string(&controller.log).unwrap_or_default();
    assert_eq!(
        warned
            .lines()
            .filter(|line| line.contains("refused a peer") && line.contains("reserved_type"))
            .count(),
        1,
        "logged once, visible without debug logging"
    );

    // Through the emit socket, a workload can raise none of them.
    for reserved in ["timer.fired", "host.lost", "levee.x", "HOST.process.exited"] {
        let err = victim.emit(reserved, "{}").unwrap_err();
        assert!(err.contains("reserved"), "{reserved}: {err}");
    }
}

#[test]
fn an_agent_s_event_naming_another_host_is_held_and_the_host_untouched() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let a1 = env.start_agent("a1", &[("role", "web")], &[&controller]);
    let _a2 = env.start_agent("a2", &[("role", "web")], &[&controller]);
    controller.wait_for_connected_agents(2);
    let specs = env.write_specs(
        "specs",
        &[(
            "drain.yaml",
            r#"
kind: Rule
name: drain-named
match: { type: [app.broken] }
agent_from: data.host
action: { drain: {} }
"#,
        )],
    );
    controller.apply(&specs).expect("levee apply");
    a1.emit_about("app.broken", "disk", r#"{"host":"a2"}"#)
        .expect("emit");
    let event = wait_until("a1's event committed", TIMEOUT, || {
        rows(&controller, "events")
            .into_iter()
            .find(|event| event["type"] == "app.broken")
            .ok_or_else(|| "not yet".to_owned())
    });
    let outcome = event.to_string();
    assert!(
        outcome.contains("held") && outcome.contains("names agent a2, but agent a1 sent the event"),
        "{event}"
    );
    let agents = rows(&controller, "agents");
    for agent in &agents {
        assert_eq!(agent["drained_of"], serde_json::json!([]), "{agents:?}");
    }
}

const SECRET: &str = "s3cr3t-Db-Passw0rd-7f2c";

const SECRET_SPECS: &str = r#"
kind: Service
name: web
replicas: 2
placement: { selector: { role: web } }
process:
  argv: ["/bin/sh", "-c", "echo \"$DB_PASSWORD\" > env.txt; exec sleep 3600"]
  env: { DB_PASSWORD: { secret: db-password }, PLAIN: visible }
  stop_timeout_ms: 2000
files:
  - path: creds.txt
    secret: db-password
    mode: 0o600
"#;

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            found.extend(files_holding(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn labels_an_agent_claims_attract_nothing_and_a_secret_reaches_only_its_host() {
    let mut env = TestEnv::new();
    let secrets = env.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("db-password"), format!("{SECRET}\n")).unwrap();
    env.controller_keys = format!(
        "metrics_listen = \"127.0.0.1:0\"\nsecrets_dir = \"{}\"",
        secrets.display()
    );
    let controller = env.start_controller(1);
    let web = env.start_agent("web-1", &[("role", "web")], &[&controller]);
    // Claims the label (and huge capacity) itself; no operator gave it.
    let intruder = env.start_agent_with("intruder", &[], &[&controller], |config| {
        config.labels.insert("role".into(), "web".into());
    });
    let rogue = HostileAgent::new("rogue", &env.pki.issue("agent", "rogue"));
    rogue
        .send(
            &controller,
            &[("role", "web")],
            &[Forged::new(1, "app.hi", "x", "{}")],
        )
        .expect("hello");
    controller.wait_for_connected_agents(2);

    // A spec naming a secret the controller lacks is refused, naming it.
    let missing = env.write_specs(
        "missing",
        &[("web.yaml", &SECRET_SPECS.replace("db-password", "api-key"))],
    );
    let err = controller.apply(&missing).unwrap_err();
    assert!(err.contains("`api-key`"), "{err}");

    let specs = env.write_specs("specs", &[("web.yaml", SECRET_SPECS)]);
    controller.apply(&specs).expect("levee apply");
    let env_file = web.service_dir("web").join("env.txt");
    wait_until("web-1 running with the secret", TIMEOUT, || {
        std::fs::read_to_string(&env_file)
            .map_err(|err| err.to_string())
            .and_then(|text| {
                (text.trim() == SECRET)
                    .then_some(())
                    .ok_or_else(|| format!("env.txt holds {text:?}"))
            })
    });
    let creds = std::fs::read_to_string(web.service_dir("web").join("creds.txt")).unwrap();
    assert_eq!(creds, SECRET);

    let tasks = rows(&controller, "tasks");
    assert!(
        tasks
            .iter()
            .all(|task| task["agent"] == "web-1" || task["agent_id"] == "web-1"),
        "only web-1 was given work: {tasks:?}"
    );
    let agents = rows(&controller, "agents");
    let intruder_row = agents.iter().find(|a| a["agent_id"] == "intruder").unwrap();
    assert_eq!(intruder_row["labels"], serde_json::json!({}));
    assert_eq!(intruder_row["facts"]["role"], "web", "kept as a fact");
    assert_eq!(intruder_row["services"], serde_json::json!([]));

    // The value is nowhere but on web-1.
    let saved = env.path().join("state.json");
    controller
        .run(&["state", "save", saved.to_str().unwrap()])
        .expect("levee state save");
    for args in [
        &["tasks", "-o", "json"][..],
        &["tasks"],
        &["events", "-o", "json"],
        &["agents", "-o", "json"],
        &["plans", "-o", "json"],
        &["status", "-o", "json"],
        &["why", "web"],
        &["history", "-o", "json"],
    ] {
        let out = controller.run(args).unwrap_or_else(|err| err);
        assert!(!out.contains(SECRET), "`levee {}` shows it", args.join(" "));
    }
    let saved_state = std::fs::read_to_string(&saved).unwrap();
    assert!(
        saved_state.contains("db-password"),
        "the state names the secret"
    );
    let metrics = https::get(&format!("http://{}/metrics", controller.metrics_addr()));
    assert!(!metrics.body.contains(SECRET));
    let controller_files = files_holding(&controller.data_dir, SECRET);
    assert!(
        controller_files.is_empty(),
        "the Raft log and snapshots hold it: {controller_files:?}"
    );
    for file in [
        saved.as_path(),
        controller.log.as_path(),
        intruder.log.as_path(),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        assert!(!text.contains(SECRET), "{} holds it", file.display());
    }
    let intruder_files = files_holding(&intruder.config.data_dir, SECRET);
    assert!(intruder_files.is_empty(), "{intruder_files:?}");
}
