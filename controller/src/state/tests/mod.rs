use levee_common::event::Event;
use levee_common::ids::{EventKey, PlanId, TaskId};
use levee_common::spec::SpecSet;
use serde_json::json;

use super::records::{ResourceOutcome, TaskReport};
use super::*;
use crate::engine::planner::Action;
use crate::state::command as cmd;
use crate::state::test_log::Log;

mod actions;
mod determinism;
mod trust;
mod windows;

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

impl Log {
    fn events(&mut self, agent: &str, epoch: u64, seqs: &[u64]) -> Response {
        let events = seqs.iter().map(|seq| exited(agent, epoch, *seq)).collect();
        self.apply(Command::RecordEvents(cmd::RecordEvents {
            agent_id: agent.into(),
            events,
            at_ms: 3,
            strict: true,
        }))
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
        Response::EventsRecorded(cmd::EventsRecorded {
            accepted: 3,
            duplicates: 0,
            acks: vec![(1, 3)],
            ..Default::default()
        })
    );
    // Thousands of entries later, the same batch arrives again.
    for _ in 0..1000 {
        log.hello("edge-2", 1);
    }
    assert_eq!(
        log.events("edge-1", 1, &[2, 3, 4]),
        Response::EventsRecorded(cmd::EventsRecorded {
            accepted: 1,
            duplicates: 2,
            acks: vec![(1, 4)],
            ..Default::default()
        })
    );
    assert_eq!(log.state.event_log.events.len(), 4);
    assert_eq!(
        log.state.fleet.agents[&AgentId::from("edge-1")].events_committed,
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
        Response::EventsRecorded(cmd::EventsRecorded {
            accepted: 1,
            duplicates: 0,
            acks: vec![(2, 1)],
            ..Default::default()
        })
    );
    assert_eq!(
        log.events("edge-1", 1, &[2]),
        Response::EventsRecorded(cmd::EventsRecorded {
            accepted: 0,
            duplicates: 1,
            acks: vec![(1, 2)],
            ..Default::default()
        })
    );
}

#[test]
fn specs_place_the_service_on_a_joining_agent() {
    let mut log = Log::new();
    let Response::SpecsApplied(cmd::SpecsApplied {
        version, plan_ids, ..
    }) = log.put_specs(SPECS)
    else {
        panic!()
    };
    assert_eq!(version, 1);
    assert!(plan_ids.is_empty(), "no agent yet");
    let Response::AgentRegistered(cmd::AgentRegistered { reconcile_plans }) =
        log.hello("edge-1", 1)
    else {
        panic!()
    };
    assert_eq!(reconcile_plans.len(), 1);
    let edge_1 = AgentId::from("edge-1");
    let task: Vec<&TaskRecord> = log.state.pending_tasks_for(&edge_1).collect();
    assert_eq!(task.len(), 1);
    assert_eq!(task[0].service, "clock");
    assert_eq!(task[0].resources.len(), 2);
    // A reconnect of a known agent plans nothing new.
    let Response::AgentRegistered(cmd::AgentRegistered { reconcile_plans }) =
        log.hello("edge-1", 2)
    else {
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
    let record = log.state.event_log.events.back().unwrap();
    assert_eq!(record.rules, ["repair-clock"]);
    let plan = &log.state.work.plans[&record.plan_ids[0]];
    assert_eq!(plan.cause.event_id.as_deref(), Some("edge-1/1/1"));
    assert_eq!(plan.created.term, 7);
    let task = &log.state.work.tasks[&plan.task_ids[0]];
    assert_eq!(
        (task.agent_id.as_str(), task.state),
        ("edge-1", TaskState::Pending)
    );
    assert_eq!(task.cause.rule.as_deref(), Some("repair-clock"));
    // The earlier placement task for the same service is superseded.
    let superseded = log
        .state
        .work
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
    let record = log.state.event_log.events.back().unwrap();
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
    let task_id = log.state.work.tasks.keys().next().unwrap().clone();
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
    log.apply(Command::RecordTaskReport(cmd::RecordTaskReport {
        agent_id: "edge-2".into(),
        report: report(TaskState::Failed),
    }));
    assert_eq!(
        log.state.work.tasks[&task_id].state,
        TaskState::Pending,
        "another agent cannot report on it"
    );
    log.apply(Command::RecordTaskReport(cmd::RecordTaskReport {
        agent_id: "edge-1".into(),
        report: report(TaskState::Succeeded),
    }));
    log.apply(Command::RecordTaskReport(cmd::RecordTaskReport {
        agent_id: "edge-1".into(),
        report: report(TaskState::Failed),
    }));
    assert_eq!(log.state.work.tasks[&task_id].state, TaskState::Succeeded);
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
    assert_eq!(log.state.event_log.events.len(), EVENT_HISTORY);
    assert_eq!(
        log.events("edge-1", 1, &[1]),
        Response::EventsRecorded(cmd::EventsRecorded {
            accepted: 0,
            duplicates: 1,
            acks: vec![(1, seqs.len() as u64)],
            ..Default::default()
        })
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
        .event_log
        .events
        .iter()
        .flat_map(|record| &record.plan_ids)
        .collect();
    assert_eq!(plan_ids.len(), 3 * 21);
    let unique: BTreeSet<&PlanId> = plan_ids.iter().copied().collect();
    assert_eq!(unique.len(), plan_ids.len());
    assert_eq!(
        log.state.work.plans.len(),
        1 + plan_ids.len(),
        "no plan overwrote another"
    );
}

fn web(version: &str, auto_rollback: bool) -> String {
    format!(
        "kind: Service\nname: web\nreplicas: {{ min: 1, max: 4, initial: 3 }}\nupdate: {{ max_parallel: 1, auto_rollback: {auto_rollback} }}\nprocess: {{ argv: [/bin/web, \"{version}\"] }}\n"
    )
}

impl Log {
    fn report(&mut self, task_id: &TaskId, state: TaskState) {
        let agent_id = self.state.work.tasks[task_id].agent_id.clone();
        self.apply(Command::RecordTaskReport(cmd::RecordTaskReport {
            agent_id,
            report: TaskReport {
                task_id: task_id.clone(),
                state,
                outcomes: Vec::new(),
                error: if state == TaskState::Succeeded {
                    String::new()
                } else {
                    "health check failed".into()
                },
                finished_ms: 5,
            },
        }));
    }

    fn tasks_of(&self, plan_id: &PlanId) -> Vec<(TaskId, TaskState, u32)> {
        self.state.work.plans[plan_id]
            .task_ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    self.state.work.tasks[id].state,
                    self.state.work.tasks[id].batch,
                )
            })
            .collect()
    }

    /// Three agents running web v1, every task reported succeeded.
    fn running_web_v1(auto_rollback: bool) -> Self {
        let mut log = Log::new();
        for agent in ["a1", "a2", "a3"] {
            log.hello(agent, 1);
        }
        let Response::SpecsApplied(cmd::SpecsApplied { plan_ids, .. }) =
            log.put_specs(&web("v1", auto_rollback))
        else {
            panic!()
        };
        for (task_id, _, _) in log.tasks_of(&plan_ids[0]) {
            log.report(&task_id, TaskState::Succeeded);
        }
        log
    }
}

#[test]
fn a_rollout_sends_each_batch_only_after_the_one_before_succeeded() {
    let mut log = Log::running_web_v1(false);
    let Response::SpecsApplied(cmd::SpecsApplied { plan_ids, .. }) =
        log.put_specs(&web("v2", false))
    else {
        panic!()
    };
    let tasks = log.tasks_of(&plan_ids[0]);
    let states: Vec<(TaskState, u32)> = tasks
        .iter()
        .map(|(_, state, batch)| (*state, *batch))
        .collect();
    assert_eq!(
        states,
        [
            (TaskState::Pending, 0),
            (TaskState::Waiting, 1),
            (TaskState::Waiting, 2)
        ]
    );
    log.report(&tasks[0].0, TaskState::Succeeded);
    assert_eq!(log.tasks_of(&plan_ids[0])[1].1, TaskState::Pending);
    assert_eq!(log.tasks_of(&plan_ids[0])[2].1, TaskState::Waiting);
    log.report(&tasks[1].0, TaskState::Succeeded);
    log.report(&tasks[2].0, TaskState::Succeeded);
    assert!(
        log.tasks_of(&plan_ids[0])
            .iter()
            .all(|(_, state, _)| *state == TaskState::Succeeded)
    );
    // Everything applied: planning the same specs again changes nothing.
    assert!(
        log.state
            .preview(&log.state.desired.specs.clone())
            .steps
            .is_empty()
    );
}

#[test]
fn a_failed_batch_cancels_the_rest_and_rolls_back_when_asked() {
    let mut log = Log::running_web_v1(true);
    let Response::SpecsApplied(cmd::SpecsApplied {
        plan_ids, version, ..
    }) = log.put_specs(&web("v2", true))
    else {
        panic!()
    };
    let tasks = log.tasks_of(&plan_ids[0]);
    log.report(&tasks[0].0, TaskState::Failed);
    let after = log.tasks_of(&plan_ids[0]);
    assert_eq!(after[1].1, TaskState::Cancelled);
    assert_eq!(after[2].1, TaskState::Cancelled);
    let rollback = log.state.work.plans[&plan_ids[0]]
        .rolled_back_by
        .expect("rolled back");
    assert_eq!(rollback, version + 1);
    assert_eq!(log.state.desired.spec_version, rollback);
    assert!(matches!(
        log.state.desired.versions[&rollback].origin,
        VersionOrigin::AutoRollback { .. }
    ));
    assert_eq!(
        log.state.desired.specs.services["web"].process.argv[1],
        "v1"
    );
    // Only the agent that took v2 (and failed) is converged back to v1.
    let rollback_plan = &log.state.desired.versions[&rollback].plan_ids[0];
    let rolled: Vec<&AgentId> = log.state.work.plans[rollback_plan]
        .task_ids
        .iter()
        .map(|id| &log.state.work.tasks[id].agent_id)
        .collect();
    assert_eq!(rolled, [&log.state.work.tasks[&tasks[0].0].agent_id]);
    // A failing rollback does not roll back again.
    let task = log.state.work.plans[rollback_plan].task_ids[0].clone();
    log.report(&task, TaskState::Failed);
    assert_eq!(log.state.desired.spec_version, rollback);
}

#[test]
fn without_auto_rollback_a_failed_batch_stops_the_rollout_only() {
    let mut log = Log::running_web_v1(false);
    let Response::SpecsApplied(cmd::SpecsApplied {
        plan_ids, version, ..
    }) = log.put_specs(&web("v2", false))
    else {
        panic!()
    };
    let tasks = log.tasks_of(&plan_ids[0]);
    log.report(&tasks[0].0, TaskState::Failed);
    assert_eq!(log.state.desired.spec_version, version);
    assert_eq!(log.tasks_of(&plan_ids[0])[1].1, TaskState::Cancelled);
    assert_eq!(log.state.work.plans[&plan_ids[0]].rolled_back_by, None);
}

#[test]
fn rollback_restores_an_earlier_version_as_a_new_one() {
    let mut log = Log::running_web_v1(false);
    log.put_specs(&web("v2", false));
    let response = log.apply(Command::Rollback(cmd::Rollback {
        version: 1,
        reason: String::new(),
        requested_by: "operator/alice".into(),
        at_ms: 9,
    }));
    let Response::SpecsApplied(cmd::SpecsApplied { version: 3, .. }) = response else {
        panic!("{response:?}")
    };
    assert_eq!(
        log.state.desired.specs.services["web"].process.argv[1],
        "v1"
    );
    assert_eq!(
        log.state.desired.versions[&3].origin,
        VersionOrigin::Rollback { to: 1 }
    );
    assert_eq!(log.state.desired.versions[&3].applied_by, "operator/alice");
    let missing = log.apply(Command::Rollback(cmd::Rollback {
        version: 42,
        reason: String::new(),
        requested_by: "operator/alice".into(),
        at_ms: 9,
    }));
    assert!(
        matches!(missing, Response::Rejected(cmd::Rejected { reason }) if reason.contains("42"))
    );
}

#[test]
fn scaling_stays_within_bounds_and_plans_through_the_same_path() {
    let mut log = Log::running_web_v1(false);
    log.hello("a4", 1);
    let scale = |log: &mut Log, replicas| {
        log.apply(Command::Scale(cmd::Scale {
            service: "web".into(),
            replicas,
            reason: "load".into(),
            requested_by: "operator/alice".into(),
            at_ms: 10,
        }))
    };
    assert!(
        matches!(scale(&mut log, 5), Response::Rejected(cmd::Rejected { reason }) if reason.contains("1 to 4"))
    );
    let Response::Scaled(cmd::Scaled {
        from: 3,
        to: 4,
        plan_id: Some(plan),
    }) = scale(&mut log, 4)
    else {
        panic!()
    };
    assert_eq!(log.state.work.plans[&plan].task_ids.len(), 1);
    assert_eq!(log.state.work.placements["web"].len(), 4);
    let Response::Scaled(cmd::Scaled {
        from: 4,
        to: 1,
        plan_id: Some(plan),
    }) = scale(&mut log, 1)
    else {
        panic!()
    };
    let actions: Vec<Action> = log.state.work.plans[&plan]
        .task_ids
        .iter()
        .map(|id| log.state.work.tasks[id].action)
        .collect();
    assert_eq!(actions, [Action::Remove; 3]);
    // The target survives a new spec version.
    log.put_specs(&web("v2", false));
    assert_eq!(log.state.work.placements["web"].len(), 1);
}

#[test]
fn drift_events_mark_and_clear_an_agent() {
    let mut log = Log::new();
    log.hello("edge-1", 1);
    let drift = |seq, event_type: &str, data| Event {
        key: EventKey {
            agent_id: "edge-1".into(),
            boot_epoch: 1,
            seq,
        },
        source: "agent/edge-1".into(),
        event_type: event_type.into(),
        subject: "clock".into(),
        time_unix_ms: 0,
        data,
    };
    log.apply(Command::RecordEvents(cmd::RecordEvents {
        agent_id: "edge-1".into(),
        events: vec![drift(
            1,
            DRIFT_DETECTED,
            json!({"service": "clock", "resource": "file:banner.txt", "detail": "content differs"}),
        )],
        at_ms: 3,
        strict: true,
    }));
    let records = &log.state.fleet.drift[&AgentId::from("edge-1")];
    assert_eq!(records["clock/file:banner.txt"].detail, "content differs");
    log.apply(Command::RecordEvents(cmd::RecordEvents {
        agent_id: "edge-1".into(),
        events: vec![drift(
            2,
            DRIFT_RESOLVED,
            json!({"service": "clock", "resources": ["file:banner.txt"]}),
        )],
        at_ms: 4,
        strict: true,
    }));
    assert!(log.state.fleet.drift.is_empty());
}

#[test]
fn an_agent_that_lost_its_store_gets_everything_again() {
    let mut log = Log::running_web_v1(false);
    let again = log.apply(Command::AgentHello(cmd::AgentHello {
        agent_id: "a1".into(),
        boot_epoch: 2,
        labels: BTreeMap::new(),
        facts: Default::default(),
        cpu_millis: 1000,
        memory_bytes: 1 << 30,
        highest_term_seen: 1,
        at_ms: 5,
    }));
    assert_eq!(
        again,
        Response::AgentRegistered(cmd::AgentRegistered {
            reconcile_plans: Vec::new()
        })
    );
    let wiped = log.apply(Command::AgentHello(cmd::AgentHello {
        agent_id: "a1".into(),
        boot_epoch: 3,
        labels: BTreeMap::new(),
        facts: Default::default(),
        cpu_millis: 1000,
        memory_bytes: 1 << 30,
        highest_term_seen: 0,
        at_ms: 6,
    }));
    let Response::AgentRegistered(cmd::AgentRegistered { reconcile_plans }) = wiped else {
        panic!()
    };
    let plan = &log.state.work.plans[&reconcile_plans[0]];
    let task = &log.state.work.tasks[&plan.task_ids[0]];
    assert_eq!(
        (task.agent_id.as_str(), task.action),
        ("a1", Action::Create)
    );
}

#[test]
fn the_same_specs_again_make_no_version_but_retry_what_failed() {
    let mut log = Log::running_web_v1(false);
    let Response::SpecsApplied(cmd::SpecsApplied {
        version: 1,
        plan_ids,
        new_version: false,
    }) = log.put_specs(&web("v1", false))
    else {
        panic!()
    };
    assert!(plan_ids.is_empty(), "nothing to do");
    assert_eq!(log.state.desired.versions.len(), 1);
    // A failed converge is retried by applying the same specs again.
    let Response::SpecsApplied(cmd::SpecsApplied { plan_ids, .. }) =
        log.put_specs(&web("v2", false))
    else {
        panic!()
    };
    let first = log.tasks_of(&plan_ids[0])[0].0.clone();
    log.report(&first, TaskState::Failed);
    let Response::SpecsApplied(cmd::SpecsApplied {
        version: 2,
        plan_ids,
        new_version: false,
    }) = log.put_specs(&web("v2", false))
    else {
        panic!()
    };
    let retried = log.tasks_of(&plan_ids[0]);
    assert_eq!(
        retried.len(),
        3,
        "the failed agent and the two cancelled ones"
    );
}

fn scaling_specs(guardrails: &str) -> String {
    format!(
        r#"
kind: Service
name: web
replicas: {{ min: 2, max: 6 }}
process: {{ argv: [/bin/web] }}
---
kind: Rule
name: scale-up
match: {{ type: [app.load], data: {{ cpu: [{{ numeric: [">", 80] }}] }} }}
action: {{ scale: {{ service: web, by: 2 }} }}
guardrails: {guardrails}
---
kind: Rule
name: scale-down
match: {{ type: [app.load], data: {{ cpu: [{{ numeric: ["<", 20] }}] }} }}
action: {{ scale: {{ service: web, by: -2 }} }}
guardrails: {guardrails}
"#
    )
}

impl Log {
    fn load(&mut self, agent: &str, seq: u64, cpu: u32, at_ms: i64) -> Vec<String> {
        self.apply(Command::RecordEvents(cmd::RecordEvents {
            agent_id: agent.into(),
            events: vec![Event {
                key: EventKey {
                    agent_id: agent.into(),
                    boot_epoch: 1,
                    seq,
                },
                source: format!("agent/{agent}"),
                event_type: "app.load".into(),
                subject: "web".into(),
                time_unix_ms: at_ms,
                data: json!({ "cpu": cpu }),
            }],
            at_ms,
            strict: true,
        }));
        self.state.event_log.events.back().unwrap().outcomes.clone()
    }

    fn target(&self) -> u32 {
        crate::engine::planner::target_of(
            &self.state.desired.specs.services["web"],
            &self.state.desired.targets,
        )
    }
}

fn fleet(guardrails: &str) -> Log {
    let mut log = Log::new();
    for n in 1..=8 {
        log.hello(&format!("a{n}"), 1);
    }
    log.put_specs(&scaling_specs(guardrails));
    log
}

#[test]
fn a_scale_rule_moves_the_target_within_bounds_and_plans_it() {
    let mut log = fleet("{}");
    assert_eq!(log.target(), 2);
    let outcomes = log.load("a1", 1, 95, 1_000);
    assert!(
        outcomes[0].starts_with("scale-up: scaled web 2 -> 4: plan"),
        "{outcomes:?}"
    );
    assert_eq!(log.state.work.placements["web"].len(), 4);
    log.load("a1", 2, 95, 2_000);
    let outcomes = log.load("a1", 3, 95, 3_000);
    assert_eq!(log.target(), 6, "never above max");
    assert_eq!(outcomes, ["scale-up: web stays at 6 (its max)"]);
    log.load("a1", 4, 5, 4_000);
    assert_eq!(log.target(), 4);
    let plan = log.state.event_log.events.back().unwrap().plan_ids[0].clone();
    assert_eq!(
        log.state.work.plans[&plan].cause.rule.as_deref(),
        Some("scale-down")
    );
}

#[test]
fn cooldowns_and_windows_hold_a_flapping_signal() {
    let mut log = fleet(
        "{ cooldown_ms: 10000, scale_down_after_up_ms: 30000, max_actions: 2, window_ms: 60000 }",
    );
    log.load("a1", 1, 95, 1_000);
    assert_eq!(log.target(), 4);
    let held = log.load("a1", 2, 95, 5_000);
    assert!(held[0].contains("held: cooldown, 6000 ms left"), "{held:?}");
    let held = log.load("a1", 3, 5, 6_000);
    assert!(
        held[0].contains("held: web was scaled up 5000 ms ago"),
        "{held:?}"
    );
    log.load("a1", 4, 95, 12_000);
    assert_eq!(log.target(), 6);
    // Twenty alternating readings in a minute change nothing more.
    for seq in 5..25 {
        let cpu = if seq % 2 == 0 { 95 } else { 5 };
        log.load("a1", seq, cpu, 12_000 + seq as i64 * 1_000);
    }
    assert_eq!(log.target(), 6);
    assert_eq!(log.state.rule_book.rule_state["scale-up"].actions, 2);
    assert!(log.state.rule_book.rule_state["scale-up"].held >= 10);
}

#[test]
fn a_dry_run_rule_changes_nothing_but_says_what_it_would_do() {
    let mut log = fleet("{ dry_run: true }");
    let before_targets = log.state.desired.targets.clone();
    let before_plans = log.state.work.plans.clone();
    let before_tasks = log.state.work.tasks.clone();
    let outcomes = log.load("a1", 1, 95, 1_000);
    assert_eq!(outcomes, ["scale-up: dry run: would scale web 2 -> 4"]);
    assert_eq!(log.state.desired.targets, before_targets);
    assert_eq!(log.state.work.plans, before_plans);
    assert_eq!(log.state.work.tasks, before_tasks);
    assert!(log.state.rule_book.scaling.is_empty());
}

#[test]
fn a_lost_agent_s_replicas_move_and_it_gets_them_back_only_by_saying_hello() {
    let mut log = Log::new();
    log.hello("a1", 1);
    log.hello("a2", 1);
    log.put_specs(&web("v1", false).replace("initial: 3", "initial: 1"));
    let first: Vec<AgentId> = log.state.work.placements["web"].iter().cloned().collect();
    assert_eq!(first.len(), 1);
    let lost = first[0].clone();
    log.apply(Command::AgentLost(cmd::AgentLost {
        agent_id: lost.clone(),
        silent_ms: 30_000,
        last_hello_ms: 1,
        at_ms: 9,
    }));
    assert!(log.state.fleet.agents[&lost].lost);
    let placed: Vec<&AgentId> = log.state.work.placements["web"].iter().collect();
    assert_eq!(placed.len(), 1);
    assert_ne!(placed[0], &lost, "moved to the other agent");
    let event = log.state.event_log.events.back().unwrap();
    assert_eq!(
        (
            event.event.event_type.as_str(),
            event.event.subject.as_str()
        ),
        ("host.lost", lost.as_str())
    );
    assert_eq!(event.event.source, "controller");
    // No task is sent to the lost agent; it gets its removal on return.
    assert!(
        log.state
            .pending_tasks_for(&lost)
            .all(|task| task.action != Action::Remove)
    );
    log.apply(Command::AgentHello(cmd::AgentHello {
        agent_id: lost.clone(),
        boot_epoch: 2,
        labels: BTreeMap::new(),
        facts: Default::default(),
        cpu_millis: 1000,
        memory_bytes: 1 << 30,
        highest_term_seen: 1,
        at_ms: 10,
    }));
    assert!(!log.state.fleet.agents[&lost].lost);
    assert!(
        log.state
            .event_log
            .events
            .iter()
            .any(|record| record.event.event_type == "host.recovered")
    );
}

#[test]
fn why_follows_a_change_back_to_its_event_and_rule() {
    let mut log = fleet("{}");
    log.load("a1", 1, 95, 1_000);
    let chains = log.state.why("web", None, 10);
    assert_eq!(chains.len(), 2, "the scale-up, then the first placement");
    let scale = &chains[0];
    let event = scale.event.as_ref().expect("an event caused it");
    assert_eq!(
        (event.event_type.as_str(), event.id.as_str()),
        ("app.load", "a1/1/1")
    );
    assert_eq!(scale.rule.as_deref(), Some("scale-up"));
    assert!(
        scale
            .rule_outcome
            .as_deref()
            .unwrap()
            .starts_with("scaled web 2 -> 4")
    );
    assert_eq!(scale.tasks.len(), 2);
    assert!(
        scale
            .tasks
            .iter()
            .all(|task| task.action == "create" && task.state == "pending")
    );
    assert!(
        chains[1].reason.starts_with("spec version 1 (apply)"),
        "{}",
        chains[1].reason
    );
    assert!(chains[1].event.is_none());
    // One agent only, and a limit.
    let agent = scale.tasks[0].agent_id.clone();
    let mine = log
        .state
        .why("web", Some(&AgentId::from(agent.as_str())), 1);
    assert_eq!(mine.len(), 1);
    assert!(mine[0].tasks.iter().all(|task| task.agent_id == agent));
}

#[test]
fn a_trial_shows_what_rules_would_do_and_changes_nothing() {
    let log = fleet("{ cooldown_ms: 10000 }");
    let before = log.state.clone();
    let event = |cpu: u32, time_ms: i64| whatif::TrialEvent {
        agent_id: "a1".into(),
        event_type: "app.load".into(),
        subject: "web".into(),
        data: json!({ "cpu": cpu }),
        time_ms,
    };
    let trial = log.state.trial(
        None,
        vec![event(95, 1_000), event(95, 2_000), event(95, 20_000)],
        LogPosition {
            index: log.index,
            term: 1,
        },
    );
    assert_eq!(log.state, before, "the trial ran on a copy");
    assert!(trial.events[0].outcomes[0].starts_with("scale-up: scaled web 2 -> 4"));
    assert_eq!(trial.events[0].changes.len(), 2);
    assert!(
        trial.events[0]
            .changes
            .iter()
            .all(|change| change.starts_with("create web on a"))
    );
    assert!(trial.events[1].outcomes[0].contains("held: cooldown"));
    assert!(trial.events[2].outcomes[0].starts_with("scale-up: scaled web 4 -> 6"));
    assert_eq!(trial.targets["web"], (2, 6));
}

#[test]
fn a_repair_loop_stops_at_the_chain_limit_and_says_why() {
    let mut log = Log::new();
    log.put_specs(SPECS);
    log.hello("edge-1", 1);
    let first_task = log.state.work.tasks.keys().next().unwrap().clone();
    let crash = |seq: u64, task: &TaskId| Event {
        data: json!({ "service": "clock", "exit_code": 1, "caused_by_task": task.as_str() }),
        ..exited("edge-1", 1, seq)
    };
    // The placement (depth 0) starts it; it crashes; each repair starts it
    // again and it crashes again.
    let mut cause = first_task;
    let mut repairs = 0;
    for seq in 1..=10 {
        log.apply(Command::RecordEvents(cmd::RecordEvents {
            agent_id: "edge-1".into(),
            events: vec![crash(seq, &cause)],
            at_ms: seq as i64,
            strict: true,
        }));
        let record = log.state.event_log.events.back().unwrap();
        match record.plan_ids.first() {
            Some(plan) => {
                repairs += 1;
                cause = log.state.work.plans[plan].task_ids[0].clone();
                assert_eq!(log.state.work.tasks[&cause].cause.depth, repairs);
            }
            None => {
                assert!(
                    record.outcomes[0]
                        .contains("refused: this event ends a chain of 5 reactions (limit 5)"),
                    "{:?}",
                    record.outcomes
                );
                break;
            }
        }
    }
    assert_eq!(repairs, 5);
    // An exit nobody caused starts a fresh chain.
    log.events("edge-1", 1, &[11]);
    assert_eq!(log.state.event_log.events.back().unwrap().plan_ids.len(), 1);
}

#[test]
fn an_approval_rule_waits_for_an_operator_and_acts_only_when_approved() {
    let mut log = fleet("{ approval: true }");
    let outcomes = log.load("a1", 1, 95, 1_000);
    assert_eq!(
        outcomes,
        ["scale-up: awaiting approval: `levee approve a1` to scale web by 2"]
    );
    assert_eq!(log.target(), 2, "nothing happens yet");
    // Another reading while one waits is held, not queued.
    let held = log.load("a1", 2, 95, 2_000);
    assert!(held[0].contains("held: a1 awaits approval"), "{held:?}");
    let answer = |log: &mut Log, id: &str, approve: bool| {
        log.apply(Command::Answer(cmd::Answer {
            id: id.into(),
            approve,
            by: "operator/alice".into(),
            at_ms: 3_000,
        }))
    };
    let Response::Answered(cmd::Answered {
        outcome,
        plan_id: Some(plan),
    }) = answer(&mut log, "a1", true)
    else {
        panic!()
    };
    assert!(
        outcome.starts_with("scale-up: approved by operator/alice: scaled web 2 -> 4"),
        "{outcome}"
    );
    assert_eq!(log.target(), 4);
    assert!(
        log.state.work.plans[&plan]
            .cause
            .reason
            .contains("approved by operator/alice")
    );
    assert!(
        matches!(
            answer(&mut log, "a1", true),
            Response::Rejected(cmd::Rejected { .. })
        ),
        "answered once"
    );
    // A rejected one is dropped.
    log.load("a1", 3, 95, 4_000);
    let id = log.state.rule_book.approvals.keys().next().unwrap().clone();
    let Response::Answered(cmd::Answered {
        outcome,
        plan_id: None,
    }) = answer(&mut log, &id, false)
    else {
        panic!()
    };
    assert!(outcome.ends_with("rejected by operator/alice"));
    assert_eq!(log.target(), 4);
    assert!(log.state.rule_book.approvals.is_empty());
}

#[test]
fn a_timer_fires_once_per_scheduled_time_and_rules_act_on_it() {
    let mut log = fleet("{}");
    let mut yaml = scaling_specs("{}");
    yaml.push_str("---\nkind: Timer\nname: morning\ncron: \"0 7 * * *\"\ndata: { shift: day }\n---\nkind: Rule\nname: morning-scale\nmatch: { type: [timer.fired], subject: [morning] }\naction: { scale: { service: web, to: 6 } }\n");
    log.put_specs(&yaml);
    let fire = |log: &mut Log, scheduled_ms: i64| {
        log.apply(Command::TimerFired(cmd::TimerFired {
            timer: "morning".into(),
            scheduled_ms,
            at_ms: scheduled_ms + 5,
        }));
        log.state
            .event_log
            .events
            .iter()
            .filter(|record| record.event.event_type == "timer.fired")
            .count()
    };
    assert_eq!(fire(&mut log, 25_200_000), 1);
    assert_eq!(log.target(), 6);
    let record = log.state.event_log.events.back().unwrap();
    assert_eq!(record.event.subject, "morning");
    assert_eq!(record.event.data["data"]["shift"], "day");
    assert_eq!(
        fire(&mut log, 25_200_000),
        1,
        "the same time again (a new leader) raises nothing"
    );
    assert_eq!(fire(&mut log, 1_000), 1, "nor an older one");
    log.apply(Command::TimerFired(cmd::TimerFired {
        timer: "ghost".into(),
        scheduled_ms: 1,
        at_ms: 1,
    }));
    assert!(!log.state.rule_book.timers_fired.contains_key("ghost"));
}

#[test]
fn a_rollout_goes_on_when_a_batch_agent_is_lost() {
    let mut log = Log::running_web_v1(false);
    let Response::SpecsApplied(cmd::SpecsApplied { plan_ids, .. }) =
        log.put_specs(&web("v2", false))
    else {
        panic!()
    };
    let tasks = log.tasks_of(&plan_ids[0]);
    let first_agent = log.state.work.tasks[&tasks[0].0].agent_id.clone();
    log.apply(Command::AgentLost(cmd::AgentLost {
        agent_id: first_agent,
        silent_ms: 30_000,
        last_hello_ms: 1,
        at_ms: 9,
    }));
    let after = log.tasks_of(&plan_ids[0]);
    assert_eq!(after[0].1, TaskState::Superseded);
    assert_eq!(
        after[1].1,
        TaskState::Pending,
        "the next batch was released"
    );
}

#[test]
fn only_the_version_s_own_rollout_rolls_back() {
    let mut log = Log::running_web_v1(true);
    log.put_specs(&web("v2", true));
    let version = log.state.desired.spec_version;
    let plan = log.state.desired.versions[&version].plan_ids[0].clone();
    for (task_id, _, _) in log.tasks_of(&plan) {
        if log.state.work.tasks[&task_id].state == TaskState::Pending {
            log.report(&task_id, TaskState::Succeeded);
        }
        for (task_id, state, _) in log.tasks_of(&plan) {
            if state == TaskState::Pending {
                log.report(&task_id, TaskState::Succeeded);
            }
        }
    }
    // A later reconcile (a new agent) fails: no rollback of the service.
    let Response::AgentRegistered(cmd::AgentRegistered { reconcile_plans }) = log.hello("a4", 1)
    else {
        panic!()
    };
    assert!(reconcile_plans.is_empty(), "web is full at 3");
    log.apply(Command::Scale(cmd::Scale {
        service: "web".into(),
        replicas: 4,
        reason: String::new(),
        requested_by: "operator/alice".into(),
        at_ms: 20,
    }));
    let scale_plan = log.state.work.plans.keys().last().unwrap().clone();
    let task = log.state.work.plans[&scale_plan].task_ids[0].clone();
    log.report(&task, TaskState::Failed);
    assert_eq!(
        log.state.desired.spec_version, version,
        "a failed scale-out is not the version's rollout"
    );
}

#[test]
fn approvals_in_one_batch_get_their_own_ids_and_a_stale_lost_verdict_is_void() {
    let mut log = fleet("{ approval: true }");
    let reading = |seq, cpu| Event {
        key: EventKey {
            agent_id: "a1".into(),
            boot_epoch: 1,
            seq,
        },
        source: "agent/a1".into(),
        event_type: "app.load".into(),
        subject: "web".into(),
        time_unix_ms: 0,
        data: json!({ "cpu": cpu }),
    };
    log.apply(Command::RecordEvents(cmd::RecordEvents {
        agent_id: "a1".into(),
        events: vec![reading(1, 95), reading(2, 5)],
        at_ms: 1_000,
        strict: true,
    }));
    let ids: Vec<&String> = log.state.rule_book.approvals.keys().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    // The leader decided a2 was lost, but a2 said hello since.
    log.apply(Command::AgentHello(cmd::AgentHello {
        agent_id: "a2".into(),
        boot_epoch: 2,
        labels: BTreeMap::new(),
        facts: Default::default(),
        cpu_millis: 1000,
        memory_bytes: 1 << 30,
        highest_term_seen: 1,
        at_ms: 50,
    }));
    log.apply(Command::AgentLost(cmd::AgentLost {
        agent_id: "a2".into(),
        silent_ms: 30_000,
        last_hello_ms: 1,
        at_ms: 60,
    }));
    assert!(!log.state.fleet.agents[&AgentId::from("a2")].lost);
}

#[test]
fn a_rule_on_host_lost_sees_the_lost_agent_s_labels() {
    let mut log = Log::new();
    for (agent, site) in [("a1", "ams"), ("a2", "ams"), ("a3", "fra")] {
        log.apply(Command::AgentHello(cmd::AgentHello {
            agent_id: agent.into(),
            boot_epoch: 1,
            labels: [("site".to_owned(), site.to_owned())].into(),
            facts: Default::default(),
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            highest_term_seen: 1,
            at_ms: 1,
        }));
    }
    log.put_specs(&format!(
        "{}---\nkind: Rule\nname: ams-down\nmatch: {{ type: [host.lost], agent: {{ labels: {{ site: [ams] }} }} }}\naction: {{ scale: {{ service: web, to: 1 }} }}\n",
        web("v1", false)
    ));
    let lose = |log: &mut Log, agent: &str| {
        log.apply(Command::AgentLost(cmd::AgentLost {
            agent_id: agent.into(),
            silent_ms: 1,
            last_hello_ms: 1,
            at_ms: 5,
        }));
        log.state.event_log.events.back().unwrap().rules.clone()
    };
    assert!(lose(&mut log, "a3").is_empty(), "fra is not matched");
    assert_eq!(lose(&mut log, "a1"), ["ams-down"]);
}
