use levee_common::event::Event;
use levee_common::ids::EventKey;
use serde_json::json;

use super::records::ResourceOutcome;
use super::*;

const SPECS: &str = r#"
kind: Service
name: clock
process: { argv: [/bin/sleep, "1000"] }
files: [{ path: banner.txt, content: "hi\n" }]
---
kind: Rule
name: repair-clock
match: { type: [host.process.exited], subject: [clock] }
action: { repair: { service: clock } }
"#;

struct Log {
    state: ClusterState,
    index: u64,
    term: u64,
}

impl Log {
    fn new() -> Self {
        Self {
            state: ClusterState::default(),
            index: 0,
            term: 1,
        }
    }

    fn apply(&mut self, command: Command) -> Response {
        self.index += 1;
        self.state.apply(
            LogPosition {
                index: self.index,
                term: self.term,
            },
            command,
        )
    }

    fn hello(&mut self, agent: &str, epoch: u64) -> Response {
        self.apply(Command::AgentHello {
            agent_id: agent.into(),
            boot_epoch: epoch,
            labels: BTreeMap::new(),
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            at_ms: 1,
        })
    }

    fn put_specs(&mut self, yaml: &str) -> Response {
        let specs = SpecSet::parse([("specs.yaml", yaml)]).unwrap();
        self.apply(Command::PutSpecs {
            specs,
            reason: "test".into(),
            applied_by: "operator/test".into(),
            at_ms: 2,
        })
    }

    fn events(&mut self, agent: &str, epoch: u64, seqs: &[u64]) -> Response {
        let events = seqs.iter().map(|seq| exited(agent, epoch, *seq)).collect();
        self.apply(Command::RecordEvents {
            agent_id: agent.into(),
            events,
            at_ms: 3,
        })
    }
}

fn exited(agent: &str, epoch: u64, seq: u64) -> Event {
    Event {
        key: EventKey {
            agent_id: agent.into(),
            boot_epoch: epoch,
            seq,
        },
        source: format!("agent/{agent}"),
        event_type: "host.process.exited".into(),
        subject: "clock".into(),
        time_unix_ms: 0,
        data: json!({"service": "clock", "signal": 9}),
    }
}

#[test]
fn a_redelivered_event_is_committed_once_however_late() {
    let mut log = Log::new();
    log.hello("edge-1", 1);
    assert_eq!(
        log.events("edge-1", 1, &[1, 2, 3]),
        Response::EventsRecorded {
            accepted: 3,
            duplicates: 0,
            acks: vec![(1, 3)]
        }
    );
    // Thousands of entries later, the same batch arrives again.
    for _ in 0..1000 {
        log.hello("edge-2", 1);
    }
    assert_eq!(
        log.events("edge-1", 1, &[2, 3, 4]),
        Response::EventsRecorded {
            accepted: 1,
            duplicates: 2,
            acks: vec![(1, 4)]
        }
    );
    assert_eq!(log.state.events.len(), 4);
    assert_eq!(
        log.state.agents[&AgentId::from("edge-1")].events_committed,
        4
    );
}

#[test]
fn each_boot_epoch_has_its_own_sequence() {
    let mut log = Log::new();
    log.events("edge-1", 1, &[1, 2]);
    // The agent restarted; its old spool still held epoch 1 events.
    let response = log.events("edge-1", 2, &[1]);
    assert_eq!(
        response,
        Response::EventsRecorded {
            accepted: 1,
            duplicates: 0,
            acks: vec![(2, 1)]
        }
    );
    assert_eq!(
        log.events("edge-1", 1, &[2]),
        Response::EventsRecorded {
            accepted: 0,
            duplicates: 1,
            acks: vec![(1, 2)]
        }
    );
}

#[test]
fn specs_place_the_service_on_a_joining_agent() {
    let mut log = Log::new();
    let Response::SpecsApplied { version, plan_ids } = log.put_specs(SPECS) else {
        panic!()
    };
    assert_eq!(version, 1);
    assert!(plan_ids.is_empty(), "no agent yet");
    let Response::AgentRegistered { reconcile_plans } = log.hello("edge-1", 1) else {
        panic!()
    };
    assert_eq!(reconcile_plans.len(), 1);
    let edge_1 = AgentId::from("edge-1");
    let task: Vec<&TaskRecord> = log.state.pending_tasks_for(&edge_1).collect();
    assert_eq!(task.len(), 1);
    assert_eq!(task[0].service, "clock");
    assert_eq!(task[0].resources.len(), 2);
    // A reconnect of a known agent plans nothing new.
    let Response::AgentRegistered { reconcile_plans } = log.hello("edge-1", 2) else {
        panic!()
    };
    assert!(reconcile_plans.is_empty());
}

#[test]
fn a_matching_event_plans_a_repair_with_its_cause_chain() {
    let mut log = Log::new();
    log.put_specs(SPECS);
    log.hello("edge-1", 1);
    log.term = 7;
    log.events("edge-1", 1, &[1]);
    let record = log.state.events.back().unwrap();
    assert_eq!(record.rules, ["repair-clock"]);
    let plan = &log.state.plans[&record.plan_ids[0]];
    assert_eq!(plan.cause.event_id.as_deref(), Some("edge-1/1/1"));
    assert_eq!(plan.created.term, 7);
    let task = &log.state.tasks[&plan.task_ids[0]];
    assert_eq!(
        (task.agent_id.as_str(), task.state),
        ("edge-1", TaskState::Pending)
    );
    assert_eq!(task.cause.rule.as_deref(), Some("repair-clock"));
    // The earlier placement task for the same service is superseded.
    let superseded = log
        .state
        .tasks
        .values()
        .filter(|task| task.state == TaskState::Superseded)
        .count();
    assert_eq!(superseded, 1);
}

#[test]
fn an_event_for_another_agent_plans_nothing_there() {
    let mut log = Log::new();
    log.put_specs(SPECS);
    log.hello("edge-1", 1);
    log.hello("edge-2", 1);
    log.events("edge-2", 1, &[1]);
    let record = log.state.events.back().unwrap();
    assert_eq!(record.rules, ["repair-clock"], "the rule matched");
    assert!(
        record.plan_ids.is_empty(),
        "but clock does not run on edge-2"
    );
}

#[test]
fn the_first_task_report_wins_and_only_from_its_agent() {
    let mut log = Log::new();
    log.put_specs(SPECS);
    log.hello("edge-1", 1);
    let task_id = log.state.tasks.keys().next().unwrap().clone();
    let report = |state| TaskReport {
        task_id: task_id.clone(),
        state,
        outcomes: vec![ResourceOutcome {
            resource: "process:clock".into(),
            changed: true,
            detail: "started".into(),
        }],
        error: String::new(),
        finished_ms: 9,
    };
    log.apply(Command::RecordTaskReport {
        agent_id: "edge-2".into(),
        report: report(TaskState::Failed),
    });
    assert_eq!(
        log.state.tasks[&task_id].state,
        TaskState::Pending,
        "another agent cannot report on it"
    );
    log.apply(Command::RecordTaskReport {
        agent_id: "edge-1".into(),
        report: report(TaskState::Succeeded),
    });
    log.apply(Command::RecordTaskReport {
        agent_id: "edge-1".into(),
        report: report(TaskState::Failed),
    });
    assert_eq!(log.state.tasks[&task_id].state, TaskState::Succeeded);
    assert_eq!(
        log.state
            .pending_tasks_for(&AgentId::from("edge-1"))
            .count(),
        0
    );
}

#[test]
fn the_same_log_gives_the_same_state_and_survives_a_snapshot() {
    let build = || {
        let mut log = Log::new();
        log.put_specs(SPECS);
        log.hello("edge-1", 1);
        log.events("edge-1", 1, &[1, 2]);
        log.state
    };
    let state = build();
    assert_eq!(state, build());
    let bytes = serde_json::to_vec(&state).unwrap();
    assert_eq!(
        serde_json::from_slice::<ClusterState>(&bytes).unwrap(),
        state
    );
}

#[test]
fn event_history_is_bounded_but_dedup_is_not() {
    let mut log = Log::new();
    let seqs: Vec<u64> = (1..=(EVENT_HISTORY as u64 + 10)).collect();
    log.events("edge-1", 1, &seqs);
    assert_eq!(log.state.events.len(), EVENT_HISTORY);
    assert_eq!(
        log.events("edge-1", 1, &[1]),
        Response::EventsRecorded {
            accepted: 0,
            duplicates: 1,
            acks: vec![(1, seqs.len() as u64)]
        }
    );
}

#[test]
fn many_rules_matching_many_events_in_one_entry_never_share_a_plan_id() {
    let mut yaml = String::from(SPECS);
    for n in 0..20 {
        yaml.push_str(&format!(
            "---\nkind: Rule\nname: extra-{n}\nmatch: {{ type: [host.process.exited] }}\naction: {{ repair: {{ service: clock }} }}\n"
        ));
    }
    let mut log = Log::new();
    log.put_specs(&yaml);
    log.hello("edge-1", 1);
    log.events("edge-1", 1, &[1, 2, 3]);
    let plan_ids: Vec<&PlanId> = log
        .state
        .events
        .iter()
        .flat_map(|record| &record.plan_ids)
        .collect();
    assert_eq!(plan_ids.len(), 3 * 21);
    let unique: BTreeSet<&PlanId> = plan_ids.iter().copied().collect();
    assert_eq!(unique.len(), plan_ids.len());
    assert_eq!(
        log.state.plans.len(),
        1 + plan_ids.len(),
        "no plan overwrote another"
    );
}
