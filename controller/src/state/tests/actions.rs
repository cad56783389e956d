//! Rule actions beyond repair and scale, the shortfall event, provisions
//! and inbound events, through `apply`.

use super::*;
use crate::state::command as cmd;
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
    /// An event from an endpoint allowed to name hosts.
    fn inbound(&mut self, source: &str, event: InboundEvent, at_ms: i64) -> Response {
        self.inbound_from(source, true, event, at_ms)
    }

    fn inbound_from(
        &mut self,
        source: &str,
        names_hosts: bool,
        event: InboundEvent,
        at_ms: i64,
    ) -> Response {
        self.apply(Command::RecordInbound(cmd::RecordInbound {
            source: source.into(),
            events: vec![event],
            at_ms,
            names_hosts,
        }))
    }

    fn agents_running(&self, service: &str) -> Vec<String> {
        self.state
            .work
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
        remember: None,
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
        Response::InboundRecorded(cmd::InboundRecorded {
            accepted: 1,
            duplicates: 0,
            refused: 0,
            at_limit: false
        })
    );
    // The sender retried; another source may use the same id.
    let again = log.inbound("webhook/am", alert("DiskFull", "a1", "f1"), 11);
    assert_eq!(
        again,
        Response::InboundRecorded(cmd::InboundRecorded {
            accepted: 0,
            duplicates: 1,
            refused: 0,
            at_limit: false
        })
    );
    log.inbound("mqtt/site", alert("DiskFull", "a1", "f1"), 12);
    let sources: Vec<&str> = log
        .state
        .event_log
        .events
        .iter()
        .filter(|record| record.event.event_type == "alert.firing")
        .map(|record| record.event.source.as_str())
        .collect();
    assert_eq!(sources, ["webhook/am", "mqtt/site"]);
    let event = &log.state.event_log.events.back().unwrap().event;
    assert_eq!(event.time_unix_ms, 500, "the sender's time is kept");
    // However it got here, an outsider cannot raise the fleet's own types.
    for reserved in ["timer.fired", "host.lost", "levee.rule.silent"] {
        let mut forged = alert("x", "a1", reserved);
        forged.event_type = reserved.into();
        let response = log.inbound("webhook/am", forged, 13);
        assert_eq!(
            response,
            Response::InboundRecorded(cmd::InboundRecorded {
                accepted: 0,
                duplicates: 0,
                refused: 1,
                at_limit: false
            }),
            "{reserved}"
        );
    }
}

#[test]
fn a_retained_replay_of_content_already_committed_live_is_dropped() {
    let mut log = fleet_with(
        "kind: Rule\nname: noop\nmatch: { type: [never] }\naction: { repair: { service: web } }\n",
    );
    let message = |dedup_id: Option<&str>, remember: Option<&str>| InboundEvent {
        event_type: "mqtt.message".into(),
        subject: "site/a/state".into(),
        data: json!({ "payload": "open" }),
        dedup_id: dedup_id.map(str::to_owned),
        time_unix_ms: None,
        remember: remember.map(str::to_owned),
    };
    let key = "content site/a/state 0123";
    for _ in 0..2 {
        // Live, twice: both committed.
        let live = log.inbound("mqtt/site", message(None, Some(key)), 10);
        assert!(matches!(
            live,
            Response::InboundRecorded(cmd::InboundRecorded { accepted: 1, .. })
        ));
    }
    // The broker replays it as retained on the next subscription.
    let replay = log.inbound("mqtt/site", message(Some(key), None), 11);
    assert!(
        matches!(
            replay,
            Response::InboundRecorded(cmd::InboundRecorded {
                accepted: 0,
                duplicates: 1,
                ..
            })
        ),
        "{replay:?}"
    );
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
    let outcome = &log.state.event_log.events.back().unwrap().outcomes[0];
    assert!(
        outcome.starts_with(&format!("drain-on-disk: drained {victim}: plan")),
        "{outcome}"
    );
    assert!(!log.agents_running("web").contains(&victim));
    assert_eq!(log.agents_running("web").len(), 2, "moved, not dropped");
    // The drained host is told to remove what it ran.
    let plan = log.state.event_log.events.back().unwrap().plan_ids[0].clone();
    let removes: Vec<_> = log.state.work.plans[&plan]
        .task_ids
        .iter()
        .map(|id| &log.state.work.tasks[id])
        .filter(|task| task.action == Action::Remove)
        .map(|task| task.agent_id.to_string())
        .collect();
    assert_eq!(removes, std::slice::from_ref(&victim));
    // An alert naming no known host does nothing, and says why.
    log.inbound("webhook/am", alert("DiskFull", "nowhere", "f2"), 11);
    let outcome = &log.state.event_log.events.back().unwrap().outcomes[0];
    assert!(outcome.contains("names no known agent"), "{outcome}");
    // The operator lets it take work again.
    let response = log.apply(Command::Undrain(cmd::Undrain {
        agent_id: victim.as_str().into(),
        by: "operator/test".into(),
        at_ms: 20,
    }));
    assert!(matches!(response, Response::Drained(cmd::Drained { .. })));
    assert!(
        log.state.fleet.agents[&AgentId::from(victim.as_str())]
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
    log.apply(Command::RecordEvents(cmd::RecordEvents {
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
        strict: true,
    }));
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
    assert_eq!(log.state.desired.spec_version, 2);
    log.inbound("webhook/am", alert("Errors", "a1", "e1"), 10);
    assert_eq!(log.state.desired.spec_version, 3);
    assert_eq!(
        log.state.desired.specs,
        log.state.desired.versions[&1].specs
    );
    let outcome = &log.state.event_log.events.back().unwrap().outcomes[0];
    assert!(
        outcome.contains("applied version 1 as version 3: plan"),
        "{outcome}"
    );
    // Already there: nothing more.
    log.inbound("webhook/am", alert("Errors", "a1", "e2"), 11);
    assert_eq!(log.state.desired.spec_version, 3);
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
        .event_log
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
    assert_eq!(
        log.state.effects.provisions.len(),
        2,
        "one per unplaced event"
    );
    // max_hosts is 2: a third shortfall change asks for nothing more.
    log.apply(Command::Scale(cmd::Scale {
        service: "web".into(),
        replicas: 3,
        reason: "test".into(),
        requested_by: "operator/test".into(),
        at_ms: 5,
    }));
    assert_eq!(log.state.effects.provisions.len(), 2);
    let outcome = &log.state.event_log.events.back().unwrap().outcomes[0];
    assert!(
        outcome.contains("would pass its max_hosts of 2"),
        "{outcome}"
    );
    // Planning again with the same shortfall raises nothing new.
    let unplaced = |log: &Log| {
        log.state
            .event_log
            .events
            .iter()
            .filter(|record| record.event.event_type == "levee.service.unplaced")
            .count()
    };
    let before = unplaced(&log);
    log.label("a1", &[("x", "y")]);
    assert_eq!(unplaced(&log), before);
}

#[test]
fn a_provision_runs_at_most_once_even_across_leaders() {
    let mut log = Log::new();
    log.hello_with("a1", &[]);
    log.put_specs(&format!(
        "{FLEET_SPECS}---\nkind: Rule\nname: more-hosts\nmatch: {{ type: [levee.service.unplaced], subject: [db] }}\naction: {{ provision: {{ provisioner: spare }} }}\n"
    ));
    assert_eq!(log.state.provisions_to_handle(1), [("h1".to_owned(), true)]);
    log.apply(Command::ProvisionStarted(cmd::ProvisionStarted {
        id: "h1".into(),
        term: 1,
        at_ms: 10,
    }));
    // Started twice (a retry): refused, it runs once.
    let again = log.apply(Command::ProvisionStarted(cmd::ProvisionStarted {
        id: "h1".into(),
        term: 1,
        at_ms: 11,
    }));
    assert!(matches!(again, Response::Rejected(cmd::Rejected { .. })));
    assert!(log.state.provisions_to_handle(1).is_empty());
    // A new leader (term 2) finds it started by term 1: it must not run
    // it again, only close it as unknown, still holding a host.
    assert_eq!(
        log.state.provisions_to_handle(2),
        [("h1".to_owned(), false)]
    );
    log.apply(Command::ProvisionAbandoned(cmd::ProvisionAbandoned {
        id: "h1".into(),
        term: 2,
        at_ms: 12,
    }));
    assert!(matches!(
        log.state.effects.provisions["h1"].state,
        ProvisionState::Unknown { .. }
    ));
    assert!(log.state.effects.provisions["h1"].state.holds_a_host());
    assert!(log.state.provisions_to_handle(2).is_empty());
    // An operator looks and finds no host: it stops counting.
    let refused = log.apply(Command::ProvisionResolved(cmd::ProvisionResolved {
        id: "h9".into(),
        host_made: false,
        by: "operator/test".into(),
        at_ms: 12,
    }));
    assert!(matches!(refused, Response::Rejected(cmd::Rejected { .. })));
    log.apply(Command::ProvisionResolved(cmd::ProvisionResolved {
        id: "h1".into(),
        host_made: false,
        by: "operator/test".into(),
        at_ms: 12,
    }));
    assert!(!log.state.effects.provisions["h1"].state.holds_a_host());
    // The old leader's late result changes nothing now.
    log.apply(Command::ProvisionFinished(cmd::ProvisionFinished {
        id: "h1".into(),
        result: Ok("made".into()),
        at_ms: 13,
    }));
    assert!(matches!(
        log.state.effects.provisions["h1"].state,
        ProvisionState::Failed { .. }
    ));
}

#[test]
fn a_run_rule_sends_one_command_task_to_each_matching_live_agent() {
    let mut log = Log::new();
    log.hello_with("a1", &[("role", "db")]);
    log.hello_with("a2", &[("role", "db")]);
    log.hello_with("a3", &[("role", "web")]);
    log.put_specs(&format!(
        "{FLEET_SPECS}---\nkind: Rule\nname: vacuum\nmatch: {{ type: [alert.firing] }}\naction: {{ run: {{ argv: [/usr/bin/vacuumdb, --all], timeout_ms: 5000, selector: {{ role: db }} }} }}\n"
    ));
    log.apply(Command::AgentLost(cmd::AgentLost {
        agent_id: "a2".into(),
        silent_ms: 1,
        last_hello_ms: 1,
        at_ms: 4,
    }));
    log.inbound("webhook/am", alert("Bloat", "a1", "b1"), 10);
    let record = log.state.event_log.events.back().unwrap();
    assert!(
        record.outcomes[0].contains("running [\"/usr/bin/vacuumdb\", \"--all\"] on 1 agent(s)"),
        "{:?}",
        record.outcomes
    );
    let plan = &log.state.work.plans[&record.plan_ids[0]];
    let tasks: Vec<&TaskRecord> = plan
        .task_ids
        .iter()
        .map(|id| &log.state.work.tasks[id])
        .collect();
    assert_eq!(tasks.len(), 1, "the lost db agent is skipped");
    let task = tasks[0];
    assert_eq!(task.agent_id.as_str(), "a1");
    assert_eq!(task.service, "rule/vacuum");
    assert_eq!(task.action, Action::Run);
    assert_eq!(task.run.as_ref().unwrap().timeout_ms, 5000);
    assert_eq!(task.state, TaskState::Pending);
    // Its report finishes it and touches no deployment.
    let deployments = log.state.work.deployments.clone();
    log.apply(Command::RecordTaskReport(cmd::RecordTaskReport {
        agent_id: "a1".into(),
        report: TaskReport {
            task_id: task.task_id.clone(),
            state: TaskState::Succeeded,
            outcomes: Vec::new(),
            error: String::new(),
            finished_ms: 11,
        },
    }));
    let task_id = log.state.work.plans[&log.state.event_log.events.back().unwrap().plan_ids[0]]
        .task_ids[0]
        .clone();
    assert_eq!(log.state.work.tasks[&task_id].state, TaskState::Succeeded);
    assert_eq!(log.state.work.deployments, deployments);
}

#[test]
fn rules_feeding_on_their_own_shortfalls_stop_at_the_chain_limit() {
    let mut log = Log::new();
    log.hello_with("a1", &[]);
    log.put_specs(
        r#"
kind: Service
name: web
replicas: { min: 1, max: 100 }
placement: { resources: { cpu_millis: 1000 } }
process: { argv: [/bin/web] }
---
kind: Rule
name: grow-when-short
match: { type: [levee.service.unplaced] }
action: { scale: { service: web, by: 1 } }
"#,
    );
    assert!(log.state.rule_book.shortfalls.is_empty());
    // One agent with room for one: scaling to 2 leaves one unplaced, the
    // rule scales again, which leaves two unplaced...
    log.apply(Command::Scale(cmd::Scale {
        service: "web".into(),
        replicas: 2,
        reason: "test".into(),
        requested_by: "operator/test".into(),
        at_ms: 5,
    }));
    let outcomes: Vec<String> = log
        .state
        .event_log
        .events
        .iter()
        .filter(|record| record.event.event_type == "levee.service.unplaced")
        .flat_map(|record| record.outcomes.clone())
        .collect();
    assert_eq!(outcomes.len(), 6, "{outcomes:?}");
    assert!(
        outcomes[0].contains("scaled web 2 -> 3"),
        "in order: {outcomes:?}"
    );
    assert!(
        outcomes[5].contains(
            "refused: this event ends a chain of 5 reactions (limit 5): raised by the controllers"
        ),
        "{outcomes:?}"
    );
    assert_eq!(log.target(), 7, "2, then five rule steps");
}
