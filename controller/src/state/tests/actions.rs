//! Rule actions beyond repair and scale, the shortfall event, provisions
//! and inbound events, through `apply`.

use super::*;
use crate::state::inbound::InboundEvent;
use crate::state::records::ProvisionState;

const FLEET_SPECS: &str = r#"
kind: Service
name: web
replicas: { min: 1, max: 5, initial: 2 }
process: { argv: [/bin/web] }
---
kind: Service
name: db
replicas: 1
placement: { selector: { role: db } }
process: { argv: [/bin/db] }
---
kind: Provisioner
name: spare
argv: [/usr/local/bin/make-host]
max_hosts: 2
"#;

impl Log {
    fn hello_with(&mut self, agent: &str, labels: &[(&str, &str)]) {
        self.apply(Command::AgentHello {
            agent_id: agent.into(),
            boot_epoch: 1,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            highest_term_seen: 1,
            at_ms: 1,
        });
    }

    fn inbound(&mut self, source: &str, event: InboundEvent, at_ms: i64) -> Response {
        self.apply(Command::RecordInbound {
            source: source.into(),
            events: vec![event],
            at_ms,
        })
    }

    fn agents_running(&self, service: &str) -> Vec<String> {
        self.state
            .placements
            .get(service)
            .map(|agents| agents.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }
}

fn alert(name: &str, host: &str, id: &str) -> InboundEvent {
    InboundEvent {
        event_type: "alert.firing".into(),
        subject: name.into(),
        data: json!({ "labels": { "alertname": name, "instance": host } }),
        dedup_id: Some(id.into()),
        time_unix_ms: Some(500),
    }
}

fn fleet_with(rules: &str) -> Log {
    let mut log = Log::new();
    log.hello_with("a1", &[]);
    log.hello_with("a2", &[]);
    log.hello_with("a3", &[]);
    log.put_specs(&format!("{FLEET_SPECS}---\n{rules}"));
    log
}

#[test]
fn inbound_events_are_committed_once_per_sender_id_and_keep_their_source() {
    let mut log = fleet_with(
        "kind: Rule\nname: noop\nmatch: { type: [never] }\naction: { repair: { service: web } }\n",
    );
    let first = log.inbound("webhook/am", alert("DiskFull", "a1", "f1"), 10);
    assert_eq!(
        first,
        Response::InboundRecorded {
            accepted: 1,
            duplicates: 0
        }
    );
    // The sender retried; another source may use the same id.
    let again = log.inbound("webhook/am", alert("DiskFull", "a1", "f1"), 11);
    assert_eq!(
        again,
        Response::InboundRecorded {
            accepted: 0,
            duplicates: 1
        }
    );
    log.inbound("mqtt/site", alert("DiskFull", "a1", "f1"), 12);
    let sources: Vec<&str> = log
        .state
        .events
        .iter()
        .filter(|record| record.event.event_type == "alert.firing")
        .map(|record| record.event.source.as_str())
        .collect();
    assert_eq!(sources, ["webhook/am", "mqtt/site"]);
    let event = &log.state.events.back().unwrap().event;
    assert_eq!(event.time_unix_ms, 500, "the sender's time is kept");
}

#[test]
fn an_alert_drains_the_host_it_names_and_undrain_brings_work_back() {
    let mut log = fleet_with(
        r#"kind: Rule
name: drain-on-disk
match: { type: [alert.firing], subject: [DiskFull] }
agent_from: data.labels.instance
action: { drain: {} }
"#,
    );
    let on = log.agents_running("web");
    let victim = on[0].clone();
    log.inbound("webhook/am", alert("DiskFull", &victim, "f1"), 10);
    let outcome = &log.state.events.back().unwrap().outcomes[0];
    assert!(
        outcome.starts_with(&format!("drain-on-disk: drained {victim}: plan")),
        "{outcome}"
    );
    assert!(!log.agents_running("web").contains(&victim));
    assert_eq!(log.agents_running("web").len(), 2, "moved, not dropped");
    // The drained host is told to remove what it ran.
    let plan = log.state.events.back().unwrap().plan_ids[0].clone();
    let removes: Vec<_> = log.state.plans[&plan]
        .task_ids
        .iter()
        .map(|id| &log.state.tasks[id])
        .filter(|task| task.action == Action::Remove)
        .map(|task| task.agent_id.to_string())
        .collect();
    assert_eq!(removes, std::slice::from_ref(&victim));
    // An alert naming no known host does nothing, and says why.
    log.inbound("webhook/am", alert("DiskFull", "nowhere", "f2"), 11);
    let outcome = &log.state.events.back().unwrap().outcomes[0];
    assert!(outcome.contains("names no known agent"), "{outcome}");
    // The operator lets it take work again.
    let response = log.apply(Command::Undrain {
        agent_id: victim.as_str().into(),
        by: "operator/test".into(),
        at_ms: 20,
    });
    assert!(matches!(response, Response::Drained { .. }));
    assert!(
        log.state.agents[&AgentId::from(victim.as_str())]
            .avoid
            .is_empty()
    );
}

#[test]
fn reschedule_moves_one_service_and_keeps_the_rest() {
    let mut log = Log::new();
    log.hello_with("a1", &[("role", "db")]);
    log.hello_with("a2", &[("role", "db")]);
    log.put_specs(&format!(
        "{FLEET_SPECS}---\nkind: Rule\nname: move-web\nmatch: {{ type: [app.slow] }}\naction: {{ reschedule: {{ service: db }} }}\n"
    ));
    let db_on = log.agents_running("db")[0].clone();
    log.apply(Command::RecordEvents {
        agent_id: db_on.as_str().into(),
        events: vec![Event {
            key: EventKey {
                agent_id: db_on.as_str().into(),
                boot_epoch: 1,
                seq: 1,
            },
            source: format!("agent/{db_on}"),
            event_type: "app.slow".into(),
            subject: String::new(),
            time_unix_ms: 0,
            data: json!({}),
        }],
        at_ms: 5,
    });
    let now_on = log.agents_running("db");
    assert_eq!(now_on.len(), 1);
    assert_ne!(now_on[0], db_on, "db moved to the other db host");
    assert!(
        log.agents_running("web").contains(&db_on),
        "web stays on the host db left"
    );
}

#[test]
fn apply_version_restores_an_older_release_as_a_new_version() {
    let mut log = fleet_with(
        r#"kind: Rule
name: restore
match: { type: [alert.firing] }
action: { apply_version: { version: 1 } }
"#,
    );
    let v2 = format!(
        "{}---\nkind: Rule\nname: restore\nmatch: {{ type: [alert.firing] }}\naction: {{ apply_version: {{ version: 1 }} }}\n",
        FLEET_SPECS.replace("/bin/web", "/bin/web-v2")
    );
    log.put_specs(&v2);
    assert_eq!(log.state.spec_version, 2);
    log.inbound("webhook/am", alert("Errors", "a1", "e1"), 10);
    assert_eq!(log.state.spec_version, 3);
    assert_eq!(log.state.specs, log.state.versions[&1].specs);
    let outcome = &log.state.events.back().unwrap().outcomes[0];
    assert!(
        outcome.contains("applied version 1 as version 3: plan"),
        "{outcome}"
    );
    // Already there: nothing more.
    log.inbound("webhook/am", alert("Errors", "a1", "e2"), 11);
    assert_eq!(log.state.spec_version, 3);
}

#[test]
fn a_shortfall_raises_unplaced_once_and_a_rule_provisions_within_max_hosts() {
    let mut log = Log::new();
    log.hello_with("a1", &[]);
    log.put_specs(&format!(
        "{FLEET_SPECS}---\nkind: Rule\nname: more-hosts\nmatch: {{ type: [levee.service.unplaced] }}\naction: {{ provision: {{ provisioner: spare }} }}\n"
    ));
    // web wants 2 on one agent: short by 1; db has no `role: db` agent.
    let unplaced: Vec<(String, serde_json::Value)> = log
        .state
        .events
        .iter()
        .filter(|record| record.event.event_type == "levee.service.unplaced")
        .map(|record| {
            (
                record.event.subject.clone(),
                record.event.data["short"].clone(),
            )
        })
        .collect();
    assert_eq!(
        unplaced,
        [("db".to_owned(), json!(1)), ("web".to_owned(), json!(1))]
    );
    assert_eq!(log.state.provisions.len(), 2, "one per unplaced event");
    // max_hosts is 2: a third shortfall change asks for nothing more.
    log.apply(Command::Scale {
        service: "web".into(),
        replicas: 3,
        reason: "test".into(),
        requested_by: "operator/test".into(),
        at_ms: 5,
    });
    assert_eq!(log.state.provisions.len(), 2);
    let outcome = &log.state.events.back().unwrap().outcomes[0];
    assert!(
        outcome.contains("would pass its max_hosts of 2"),
        "{outcome}"
    );
    // Planning again with the same shortfall raises nothing new.
    let events = log.state.events.len();
    log.hello_with("a1", &[("x", "y")]);
    assert_eq!(log.state.events.len(), events);
}

#[test]
fn a_provision_runs_at_most_once_even_across_leaders() {
    let mut log = Log::new();
    log.hello_with("a1", &[]);
    log.put_specs(&format!(
        "{FLEET_SPECS}---\nkind: Rule\nname: more-hosts\nmatch: {{ type: [levee.service.unplaced], subject: [db] }}\naction: {{ provision: {{ provisioner: spare }} }}\n"
    ));
    assert_eq!(log.state.provisions_to_handle(1), [("h1".to_owned(), true)]);
    log.apply(Command::ProvisionStarted {
        id: "h1".into(),
        term: 1,
        at_ms: 10,
    });
    // Started twice (a retry): refused, it runs once.
    let again = log.apply(Command::ProvisionStarted {
        id: "h1".into(),
        term: 1,
        at_ms: 11,
    });
    assert!(matches!(again, Response::Rejected { .. }));
    assert!(log.state.provisions_to_handle(1).is_empty());
    // A new leader (term 2) finds it started by term 1: it must not run
    // it again, only close it.
    assert_eq!(
        log.state.provisions_to_handle(2),
        [("h1".to_owned(), false)]
    );
    log.apply(Command::ProvisionFinished {
        id: "h1".into(),
        result: Err("the leader running it changed".into()),
        at_ms: 12,
    });
    assert!(matches!(
        log.state.provisions["h1"].state,
        ProvisionState::Failed { .. }
    ));
    assert!(log.state.provisions_to_handle(2).is_empty());
}
