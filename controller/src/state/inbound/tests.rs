//! Deduplication of events from outside, through `apply`: by time, whatever
//! the volume, and bounded by refusing rather than forgetting.

use serde_json::json;

use super::*;
use crate::state::command::Command;
use crate::state::test_log::Log;

const SOURCE: &str = "webhook/deploys";
const MINUTE_MS: i64 = 60_000;
/// When the tests' deliveries start: any time well past 0.
const START_MS: i64 = 1_800_000_000_000;

fn event(id: &str) -> InboundEvent {
    InboundEvent {
        event_type: "app.deployed".into(),
        subject: "web".into(),
        data: json!({ "id": id }),
        dedup_id: Some(id.into()),
        time_unix_ms: None,
        remember: None,
    }
}

fn deliver(log: &mut Log, events: Vec<InboundEvent>, at_ms: i64) -> cmd::InboundRecorded {
    match log.apply(Command::RecordInbound(cmd::RecordInbound {
        source: SOURCE.into(),
        events,
        at_ms,
        names_hosts: false,
    })) {
        Response::InboundRecorded(recorded) => recorded,
        other => panic!("not an inbound reply: {other:?}"),
    }
}

/// `count` deliveries of one event each, `"<prefix>-<n>"`, batched as a
/// leader batches concurrent requests, all at `at_ms`.
fn flood(log: &mut Log, prefix: &str, count: usize, at_ms: i64) {
    let ids: Vec<String> = (0..count).map(|n| format!("{prefix}-{n}")).collect();
    for chunk in ids.chunks(1000) {
        let events = chunk.iter().map(|id| event(id)).collect();
        let recorded = deliver(log, events, at_ms);
        assert_eq!(recorded.accepted as usize, chunk.len(), "{recorded:?}");
    }
}

fn committed(log: &Log) -> u64 {
    log.state.event_log.events_committed
}

#[test]
fn a_replay_after_twenty_thousand_others_inside_the_window_is_a_repeat() {
    let mut log = Log::new();
    assert_eq!(
        deliver(&mut log, vec![event("deploy-42")], START_MS).accepted,
        1
    );
    flood(&mut log, "other", 20_000, START_MS + MINUTE_MS);
    let replay = deliver(
        &mut log,
        vec![event("deploy-42")],
        START_MS + 19 * MINUTE_MS,
    );
    assert_eq!(
        replay,
        cmd::InboundRecorded {
            duplicates: 1,
            ..cmd::InboundRecorded::default()
        }
    );
    assert_eq!(committed(&log), 20_001, "committed once");
}

#[test]
fn ids_are_forgotten_once_past_their_time_beyond_the_floor() {
    let mut log = Log::new();
    deliver(&mut log, vec![event("deploy-42")], START_MS);
    flood(&mut log, "other", INBOUND_DEDUP_FLOOR, START_MS + MINUTE_MS);
    let seen = &log.state.event_log.inbound_seen[SOURCE];
    assert_eq!(seen.len(), INBOUND_DEDUP_FLOOR + 1);
    // One ms short of its time it is still a repeat...
    let early = deliver(
        &mut log,
        vec![event("deploy-42")],
        START_MS + INBOUND_DEDUP_MS - 1,
    );
    assert_eq!(early.duplicates, 1);
    // ...and at its time, forgotten: a delivery that late is refused as
    // stale by the receiver before it gets here.
    let late = deliver(
        &mut log,
        vec![event("deploy-42")],
        START_MS + INBOUND_DEDUP_MS,
    );
    assert_eq!(late.accepted, 1);
    assert_eq!(committed(&log), INBOUND_DEDUP_FLOOR as u64 + 2);
}

#[test]
fn at_the_limit_nothing_is_committed_and_nothing_forgotten_until_ids_expire() {
    let mut log = Log::new();
    // Filled directly: a million deliveries through apply would only be slower.
    let mut full = SeenIds::default();
    for n in 0..INBOUND_DEDUP_LIMIT - 1 {
        full.insert(&format!("flood-{n}"), START_MS);
    }
    log.state
        .event_log
        .inbound_seen
        .insert(SOURCE.to_owned(), full);
    // One more fits; a batch of two new ids does not fit in one place.
    let two = deliver(
        &mut log,
        vec![event("new-1"), event("new-2")],
        START_MS + MINUTE_MS,
    );
    assert_eq!(
        two,
        cmd::InboundRecorded {
            at_limit: true,
            ..cmd::InboundRecorded::default()
        }
    );
    assert_eq!(committed(&log), 0, "nothing of the batch was committed");
    assert!(!log.state.event_log.inbound_seen[SOURCE].contains("new-1"));
    let one = deliver(&mut log, vec![event("new-1")], START_MS + MINUTE_MS);
    assert_eq!(one.accepted, 1);
    let refused = deliver(&mut log, vec![event("new-2")], START_MS + 2 * MINUTE_MS);
    assert!(refused.at_limit, "{refused:?}");
    // A repeat needs no room: still answered as one.
    let repeat = deliver(&mut log, vec![event("flood-7")], START_MS + 2 * MINUTE_MS);
    assert_eq!(repeat.duplicates, 1, "{repeat:?}");
    assert_eq!(
        log.state.event_log.inbound_seen[SOURCE].len(),
        INBOUND_DEDUP_LIMIT
    );
    // Once the flood's ids are past their time, there is room again.
    let later = deliver(&mut log, vec![event("new-2")], START_MS + INBOUND_DEDUP_MS);
    assert_eq!(later.accepted, 1, "{later:?}");
    assert!(log.state.event_log.inbound_seen[SOURCE].len() <= INBOUND_DEDUP_FLOOR + 1);
}

#[test]
fn the_limit_is_per_source() {
    let mut log = Log::new();
    let mut full = SeenIds::default();
    for n in 0..INBOUND_DEDUP_LIMIT {
        full.insert(&format!("flood-{n}"), START_MS);
    }
    log.state
        .event_log
        .inbound_seen
        .insert("webhook/noisy".to_owned(), full);
    assert_eq!(
        deliver(&mut log, vec![event("deploy-42")], START_MS).accepted,
        1
    );
}
