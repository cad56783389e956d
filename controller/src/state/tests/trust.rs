//! Trust boundaries inside `apply`: what an agent's events may claim,
//! which hosts an event may name, and who owns an agent's labels.

use super::*;
use crate::state::command as cmd;
use crate::state::inbound::InboundEvent;
use crate::state::test_log::hello_in;

const SPECS: &str = r#"
kind: Service
name: web
replicas: 1
placement: { selector: { role: web } }
process: { argv: [/bin/web] }
---
kind: Timer
name: nightly
cron: "0 3 * * *"
---
kind: Rule
name: nightly-run
match: { type: [timer.fired], subject: [nightly] }
action: { run: { argv: [/usr/bin/cleanup], timeout_ms: 1000, selector: { role: web } } }
---
kind: Rule
name: drain-named
match: { type: [app.broken, alert.firing] }
agent_from: data.host
action: { drain: {} }
"#;

fn event(agent: &str, seq: u64, event_type: &str, data: serde_json::Value) -> Event {
    Event {
        key: EventKey {
            agent_id: agent.into(),
            boot_epoch: 1,
            seq,
        },
        source: format!("agent/{agent}"),
        event_type: event_type.into(),
        subject: "x".into(),
        time_unix_ms: 0,
        data,
    }
}

fn send(log: &mut Log, agent: &str, events: Vec<Event>) -> cmd::EventsRecorded {
    match log.apply(Command::RecordEvents(cmd::RecordEvents {
        agent_id: agent.into(),
        events,
        at_ms: 5,
        strict: true,
    })) {
        Response::EventsRecorded(recorded) => recorded,
        other => panic!("{other:?}"),
    }
}

fn fleet() -> Log {
    let mut log = Log::new();
    log.hello_with("a1", &[("role", "web")]);
    log.hello_with("a2", &[("role", "web")]);
    log.put_specs(SPECS);
    log
}

fn last_outcome(log: &Log) -> String {
    log.state
        .event_log
        .events
        .back()
        .unwrap()
        .outcomes
        .join("; ")
}

#[test]
fn an_agent_s_events_of_reserved_types_are_acknowledged_but_never_committed() {
    let mut log = fleet();
    let events_before = log.state.event_log.events.len();
    let tasks_before = log.state.work.tasks.len();
    let forged = [
        "timer.fired",
        " Timer.Fired",
        "host.lost",
        "HOST.recovered",
        "levee.service.unplaced",
        "levee.agent.labelled",
    ];
    let batch = forged
        .iter()
        .enumerate()
        .map(|(n, kind)| {
            let mut forged = event("a1", n as u64 + 1, kind, json!({"timer": "nightly"}));
            forged.subject = "nightly".into();
            forged
        })
        .collect();
    let recorded = send(&mut log, "a1", batch);
    assert_eq!(recorded.accepted, 0);
    assert_eq!(recorded.refused, forged.len() as u32);
    assert_eq!(
        recorded.acks,
        vec![(1, forged.len() as u64)],
        "acknowledged"
    );
    assert!(
        recorded.refusal.unwrap().contains("reserved"),
        "the reason is kept"
    );
    assert_eq!(log.state.event_log.events.len(), events_before);
    assert_eq!(log.state.event_log.events_refused, forged.len() as u64);
    assert_eq!(
        log.state.work.tasks.len(),
        tasks_before,
        "a forged timer.fired ran no Timer rule"
    );
    // The agent's own host events still go through.
    let fine = send(
        &mut log,
        "a1",
        vec![event("a1", 7, "host.process.exited", json!({}))],
    );
    assert_eq!((fine.accepted, fine.refused), (1, 0));
}

#[test]
fn the_sender_of_an_agent_s_event_is_the_session_s_agent_whatever_the_event_says() {
    let mut log = fleet();
    let mut lying = event("a2", 1, "app.load", json!({}));
    lying.source = "webhook/am".into();
    send(&mut log, "a1", vec![lying]);
    let committed = &log.state.event_log.events.back().unwrap().event;
    assert_eq!(committed.source, "agent/a1");
    assert_eq!(committed.key.agent_id, AgentId::from("a1"));
}

#[test]
fn an_agent_s_event_acts_on_another_host_never() {
    let mut log = fleet();
    send(
        &mut log,
        "a1",
        vec![event("a1", 1, "app.broken", json!({"host": "a2"}))],
    );
    let outcome = last_outcome(&log);
    assert!(outcome.contains("held"), "{outcome}");
    assert!(
        outcome.contains("names agent a2, but agent a1 sent the event"),
        "the reason is on the event: {outcome}"
    );
    assert!(
        log.state.fleet.agents[&AgentId::from("a2")]
            .avoid
            .is_empty()
    );
    assert_eq!(log.state.rule_book.rule_state["drain-named"].held, 1);
    // Naming itself is fine.
    send(
        &mut log,
        "a1",
        vec![event("a1", 2, "app.broken", json!({"host": "a1"}))],
    );
    assert!(
        last_outcome(&log).contains("drained a1"),
        "{}",
        last_outcome(&log)
    );
}

fn alert(host: &str, id: &str) -> InboundEvent {
    InboundEvent {
        event_type: "alert.firing".into(),
        subject: "Down".into(),
        data: json!({ "host": host }),
        dedup_id: Some(id.into()),
        time_unix_ms: None,
        remember: None,
    }
}

fn inbound(log: &mut Log, source: &str, names_hosts: bool, event: InboundEvent) -> Response {
    log.apply(Command::RecordInbound(cmd::RecordInbound {
        source: source.into(),
        events: vec![event],
        at_ms: 9,
        names_hosts,
    }))
}

#[test]
fn an_outside_event_names_hosts_only_through_an_endpoint_allowed_to() {
    let mut log = fleet();
    inbound(&mut log, "webhook/open", false, alert("a2", "1"));
    let outcome = last_outcome(&log);
    assert!(
        outcome.contains("webhook/open may not name hosts"),
        "{outcome}"
    );
    assert!(
        log.state.fleet.agents[&AgentId::from("a2")]
            .avoid
            .is_empty()
    );
    inbound(&mut log, "webhook/am", true, alert("a2", "2"));
    assert!(
        last_outcome(&log).contains("drained a2"),
        "{}",
        last_outcome(&log)
    );
}

#[test]
fn inbound_entries_of_the_previous_release_could_name_hosts() {
    let old = r#"{"RecordInbound":{"source":"webhook/am","events":[],"at_ms":1}}"#;
    let Command::RecordInbound(record) = serde_json::from_str(old).unwrap() else {
        panic!("not an inbound record");
    };
    assert!(
        record.names_hosts,
        "replayed as the previous release decided"
    );
    // A follower of the previous release forwarding events does not say:
    // then they may not.
    let forwarded: crate::sources::sink::Forwarded =
        serde_json::from_str(r#"{"source":"webhook/am","events":[]}"#).unwrap();
    assert!(!forwarded.names_hosts);
}

#[test]
fn only_webhook_and_mqtt_sources_bring_events_from_outside() {
    let mut log = fleet();
    for forged in ["agent/a1", "controller", "webhook/", "", "timer"] {
        let response = inbound(&mut log, forged, true, alert("a1", forged));
        assert!(
            matches!(&response, Response::Rejected(rejected) if rejected.reason.contains("not a source")),
            "{forged:?}: {response:?}"
        );
    }
}

#[test]
fn labels_an_agent_claims_attract_nothing_but_labels_the_cluster_gives_do() {
    let mut log = Log::new();
    log.put_specs(SPECS);
    // The agent claims the label and huge capacity in its hello.
    log.apply(Command::AgentHello(cmd::AgentHello {
        facts: [("role".to_owned(), "web".to_owned())].into(),
        cpu_millis: u32::MAX,
        memory_bytes: u64::MAX,
        ..hello_in("intruder", 1)
    }));
    let intruder = &log.state.fleet.agents[&AgentId::from("intruder")];
    assert!(intruder.labels.is_empty());
    assert_eq!(intruder.facts["role"], "web", "kept apart, as a fact");
    assert!(log.state.work.tasks.is_empty(), "nothing placed on it");
    // An operator labels a host that has not connected yet; its hello
    // then takes the service.
    log.label("edge-1", &[("role", "web")]);
    assert!(log.state.work.tasks.is_empty());
    log.hello("edge-1", 1);
    let placed: Vec<String> = log.state.work.placements["web"]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(placed, ["edge-1"]);
    // Relabelling re-plans like any other change: the service moves.
    log.label("edge-1", &[("role", "db")]);
    assert!(
        log.state
            .work
            .placements
            .get("web")
            .is_none_or(|agents| agents.is_empty()),
        "{:?}",
        log.state.work.placements
    );
    let raised = log
        .state
        .event_log
        .events
        .iter()
        .rev()
        .map(|record| &record.event)
        .find(|event| event.event_type == "levee.agent.labelled")
        .expect("the change is raised");
    assert_eq!(raised.data["by"], "operator/test", "audited");
    assert_eq!(raised.data["previous"]["role"], "web");
}

#[test]
fn a_service_opts_in_to_facts_agents_report() {
    let mut log = Log::new();
    log.put_specs(
        "kind: Service\nname: gpu\nreplicas: 1\nplacement: { facts: { gpu: \"yes\" } }\nprocess: { argv: [/bin/train] }\n",
    );
    log.apply(Command::AgentHello(cmd::AgentHello {
        facts: [("gpu".to_owned(), "yes".to_owned())].into(),
        ..hello_in("rig", 1)
    }));
    log.hello("plain", 1);
    let placed: Vec<String> = log.state.work.placements["gpu"]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(placed, ["rig"]);
}

#[test]
fn bad_labels_are_refused_naming_the_label() {
    let mut log = Log::new();
    for (key, value, says) in [
        ("", "x", "label key"),
        ("has space", "x", "label key"),
        (&*"k".repeat(64), "x", "label key"),
        ("ok", "line\nbreak", "control characters"),
        ("ok", &*"v".repeat(257), "at most 256"),
    ] {
        let response = log.label("a1", &[(key, value)]);
        assert!(
            matches!(&response, Response::Rejected(rejected) if rejected.reason.contains(says)),
            "{key:?}={value:?}: {response:?}"
        );
    }
    let many: Vec<(String, String)> = (0..65).map(|n| (format!("k{n}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(matches!(log.label("a1", &many), Response::Rejected(_)));
    assert!(log.state.fleet.assigned_labels.is_empty());
}

#[test]
fn a_removed_controller_s_name_is_spent_like_its_id() {
    let mut log = Log::new();
    log.apply(Command::NodeRemoved(cmd::NodeRemoved {
        node_id: 3,
        name: "node-3".into(),
        at_ms: 1,
    }));
    assert!(log.state.members.removed_nodes.contains(&3));
    assert!(log.state.members.removed_names.contains("node-3"));
    // Entries of earlier releases name nobody.
    let old: Command = serde_json::from_str(r#"{"NodeRemoved":{"node_id":4,"at_ms":2}}"#).unwrap();
    log.apply(old);
    assert_eq!(log.state.members.removed_names.len(), 1);
}

#[test]
fn upgrading_keeps_the_labels_the_previous_release_gave_from_hellos() {
    let mut log = Log::new();
    log.put_specs(SPECS);
    // The previous release: the agent's hello carried its labels, and
    // replaying it places the service as that release did.
    log.apply(Command::AgentHello(cmd::AgentHello {
        labels: [("role".to_owned(), "web".to_owned())].into(),
        ..hello_in("old", 1)
    }));
    assert!(log.state.work.placements["web"].contains(&AgentId::from("old")));
    // After the upgrade it says hello the new way: it keeps its labels
    // and its service, now as the cluster's labels.
    log.hello("old", 2);
    let record = &log.state.fleet.agents[&AgentId::from("old")];
    assert_eq!(record.labels["role"], "web");
    assert_eq!(
        log.state.fleet.assigned_labels[&AgentId::from("old")]["role"],
        "web"
    );
    assert!(log.state.work.placements["web"].contains(&AgentId::from("old")));
    // An operator may still take them away, and they stay away.
    log.apply(Command::LabelAgent(cmd::LabelAgent {
        agent_id: "old".into(),
        set: Default::default(),
        remove: ["role".to_owned()].into(),
        by: "operator/test".into(),
        at_ms: 4,
    }));
    log.hello("old", 3);
    assert!(
        log.state.fleet.agents[&AgentId::from("old")]
            .labels
            .is_empty()
    );
}
