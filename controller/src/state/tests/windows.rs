//! Rule windows, stale signals and blast radius, through `apply`.

use super::*;
use crate::state::command as cmd;

fn windowed(window: &str, guardrails: &str) -> String {
    format!(
        r#"
kind: Service
name: web
replicas: {{ min: 2, max: 6 }}
process: {{ argv: [/bin/web] }}
---
kind: Rule
name: scale-up
match: {{ type: [app.load] }}
window: {window}
action: {{ scale: {{ service: web, by: 1 }} }}
guardrails: {guardrails}
"#
    )
}

fn labelled_fleet(yaml: &str) -> Log {
    let mut log = Log::new();
    for (agent, zone) in [("a1", "x"), ("a2", "x"), ("a3", "y"), ("a4", "y")] {
        log.hello_with(agent, &[("zone", zone)]);
    }
    log.put_specs(yaml);
    log
}

#[test]
fn a_count_window_acts_on_the_nth_event_and_then_starts_afresh() {
    let mut log = labelled_fleet(&windowed("{ count: 3, within_ms: 10000 }", "{}"));
    assert!(log.load("a1", 1, 50, 1_000)[0].contains("window: 1 of 3 events"));
    assert!(log.load("a1", 2, 50, 2_000)[0].contains("window: 2 of 3 events"));
    let acted = log.load("a1", 3, 50, 3_000);
    assert!(
        acted[0].starts_with("scale-up: scaled web 2 -> 3: plan"),
        "{acted:?}"
    );
    let plan = log.state.event_log.events.back().unwrap().plan_ids[0].clone();
    assert!(
        log.state.work.plans[&plan]
            .cause
            .reason
            .contains("3 events in 10000 ms"),
        "the plan says which window acted"
    );
    // The window starts afresh: the fourth event alone does nothing.
    assert!(log.load("a1", 4, 50, 4_000)[0].contains("window: 1 of 3 events"));
    assert_eq!(log.target(), 3);
}

#[test]
fn events_spread_wider_than_the_window_never_act() {
    let mut log = labelled_fleet(&windowed("{ count: 3, within_ms: 10000 }", "{}"));
    for seq in 1..=10 {
        log.load("a1", seq, 50, seq as i64 * 6_000);
    }
    assert_eq!(log.target(), 2);
    assert_eq!(log.state.rule_book.rule_state["scale-up"].actions, 0);
}

#[test]
fn a_per_label_window_counts_each_zone_apart() {
    let mut log = labelled_fleet(&windowed(
        "{ count: 2, within_ms: 10000, per: { label: zone } }",
        "{}",
    ));
    // One event from each zone: neither window is full.
    assert!(log.load("a1", 1, 50, 1_000)[0].contains("1 of 2"));
    assert!(log.load("a3", 1, 50, 1_100)[0].contains("1 of 2"));
    assert_eq!(log.target(), 2);
    // A second from zone x (another agent, same zone) fills x's window.
    let acted = log.load("a2", 1, 50, 1_200);
    assert!(acted[0].contains("scaled web 2 -> 3"), "{acted:?}");
}

#[test]
fn an_average_window_ignores_a_spike_and_refuses_a_missing_reading() {
    let mut log = labelled_fleet(&windowed(
        "{ average: data.cpu, above: 80, min_samples: 3, within_ms: 60000, per: agent }",
        "{}",
    ));
    log.load("a1", 1, 100, 1_000);
    log.load("a1", 2, 10, 2_000);
    let gathering = log.load("a1", 3, 10, 3_000);
    assert!(
        gathering[0].contains("window: average 40.000 over 3 samples"),
        "{gathering:?}"
    );
    assert_eq!(
        log.target(),
        2,
        "one spike among low readings scales nothing"
    );
    // A reading without the field is held, never counted as 0.
    log.apply(Command::RecordEvents(cmd::RecordEvents {
        agent_id: "a1".into(),
        events: vec![Event {
            key: EventKey {
                agent_id: "a1".into(),
                boot_epoch: 1,
                seq: 4,
            },
            source: "agent/a1".into(),
            event_type: "app.load".into(),
            subject: "web".into(),
            time_unix_ms: 4_000,
            data: json!({ "memory": 3 }),
        }],
        at_ms: 4_000,
        strict: true,
    }));
    let held = &log.state.event_log.events.back().unwrap().outcomes;
    assert!(
        held[0].contains("held: not counted: `data.cpu` is missing or not a number"),
        "{held:?}"
    );
    // Sustained high load on another agent acts on its own window.
    for seq in 1..=3 {
        log.load("a2", seq, 95, 5_000 + seq as i64);
    }
    assert_eq!(log.target(), 3);
}

#[test]
fn a_silent_signal_holds_alerts_or_falls_back_and_clears_when_it_returns() {
    let yaml = |on_silent: &str| {
        format!(
            r#"
kind: Service
name: web
replicas: {{ min: 2, max: 6 }}
process: {{ argv: [/bin/web] }}
---
kind: Rule
name: load
match: {{ type: [app.load] }}
window: {{ average: data.cpu, above: 80, within_ms: 60000 }}
action: {{ scale: {{ service: web, by: 1 }} }}
signal: {on_silent}
"#
        )
    };
    for (mode, expect_event, expect_target) in [
        ("{ silent_after_ms: 30000 }", false, 2),
        ("{ silent_after_ms: 30000, on_silent: alert }", true, 2),
        (
            "{ silent_after_ms: 30000, on_silent: fallback, fallback: { scale: { service: web, to: 5 } } }",
            true,
            5,
        ),
    ] {
        let mut log = labelled_fleet(&yaml(mode));
        log.load("a1", 1, 50, 10_000);
        assert!(
            log.state.overdue_signals(39_999).is_empty(),
            "{mode}: not silent before its time"
        );
        let overdue = log.state.overdue_signals(40_000);
        assert_eq!(overdue, [("load".to_owned(), 10_000)], "{mode}");
        log.apply(Command::SignalSilent(cmd::SignalSilent {
            rule: "load".into(),
            last_signal_ms: 10_000,
            at_ms: 40_000,
        }));
        let state = &log.state.rule_book.rule_state["load"];
        assert!(state.silent, "{mode}");
        assert!(
            state.windows.is_empty(),
            "{mode}: stale samples are dropped"
        );
        let silent_events = |log: &Log| -> Vec<serde_json::Value> {
            log.state
                .event_log
                .events
                .iter()
                .filter(|record| record.event.event_type == "levee.rule.silent")
                .map(|record| record.event.data.clone())
                .collect()
        };
        let raised = silent_events(&log);
        assert_eq!(raised.len(), usize::from(expect_event), "{mode}");
        if let Some(data) = raised.first() {
            assert_eq!(data["silent_ms"], 30_000);
        }
        assert_eq!(log.target(), expect_target, "{mode}");
        // Proposed twice (a new leader): nothing more happens.
        log.apply(Command::SignalSilent(cmd::SignalSilent {
            rule: "load".into(),
            last_signal_ms: 10_000,
            at_ms: 41_000,
        }));
        assert_eq!(silent_events(&log).len(), raised.len(), "{mode}");
        assert!(log.state.overdue_signals(90_000).is_empty(), "{mode}");
        // The signal returns.
        let back = log.load("a1", 2, 50, 50_000);
        assert!(
            back[0].contains("signal back after 40000 ms silent"),
            "{back:?}"
        );
        assert!(!log.state.rule_book.rule_state["load"].silent);
    }
}

#[test]
fn a_silence_verdict_made_before_an_event_arrived_is_void() {
    let mut log = labelled_fleet(&windowed("{ count: 5, within_ms: 1000 }", "{}").replace(
        "guardrails: {}",
        "signal: { silent_after_ms: 1000, on_silent: alert }",
    ));
    log.load("a1", 1, 50, 5_000);
    // The leader decided on the reading before this one.
    log.apply(Command::SignalSilent(cmd::SignalSilent {
        rule: "scale-up".into(),
        last_signal_ms: 2,
        at_ms: 5_500,
    }));
    assert!(!log.state.rule_book.rule_state["scale-up"].silent);
}

#[test]
fn a_new_rule_s_silence_counts_from_when_it_was_added() {
    let log = labelled_fleet(
        &windowed("{ count: 5, within_ms: 1000 }", "{}")
            .replace("guardrails: {}", "signal: { silent_after_ms: 1000 }"),
    );
    // put_specs ran at 2 ms.
    assert_eq!(log.state.overdue_signals(1_001), []);
    assert_eq!(
        log.state.overdue_signals(1_002),
        [("scale-up".to_owned(), 2)]
    );
}

/// web at 1 of up to 4 replicas, and a rule `grow` scaling it `by` on
/// every `app.load` under `guardrails`.
fn growing(by: u32, guardrails: &str) -> String {
    format!(
        r#"
kind: Service
name: web
replicas: {{ min: 1, max: 4 }}
process: {{ argv: [/bin/web] }}
---
kind: Rule
name: grow
match: {{ type: [app.load] }}
action: {{ scale: {{ service: web, by: {by} }} }}
guardrails: {guardrails}
"#
    )
}

#[test]
fn the_blast_radius_holds_an_action_that_would_touch_too_many_hosts() {
    let mut log = labelled_fleet(&growing(1, "{ max_hosts: 2, window_ms: 60000 }"));
    assert_eq!(log.target(), 1);
    let first = log.load("a1", 1, 50, 1_000);
    assert!(first[0].contains("scaled web 1 -> 2"), "{first:?}");
    let second = log.load("a1", 2, 50, 2_000);
    assert!(second[0].contains("scaled web 2 -> 3"), "{second:?}");
    let third = log.load("a1", 3, 50, 3_000);
    assert!(
        third[0].contains(
            "held: blast radius: scale web by 1 would touch 1 host(s), 3 in the last 60000 ms"
        ),
        "{third:?}"
    );
    assert_eq!(log.target(), 3, "the held action changed nothing");
    assert_eq!(log.state.rule_book.rule_state["grow"].touched.len(), 2);
    // Once the window has passed, it may act again.
    let later = log.load("a1", 4, 50, 70_000);
    assert!(later[0].contains("scaled web 3 -> 4"), "{later:?}");
}

#[test]
fn a_share_blast_radius_counts_live_hosts() {
    // Four live hosts: half is two, and +3 replicas touch three.
    let mut log = labelled_fleet(&growing(3, "{ max_hosts_share: 0.5, window_ms: 60000 }"));
    let held = log.load("a1", 1, 50, 1_000);
    assert!(
        held[0].contains("the limit is 2 of 4 live hosts"),
        "{held:?}"
    );
    assert_eq!(log.target(), 1);
    assert!(
        log.state
            .work
            .plans
            .values()
            .all(|plan| plan.cause.rule.is_none())
    );
}
