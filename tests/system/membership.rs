//! Membership changes, log compaction and snapshot installation: a new
//! node catches up from a snapshot, and a removed node cannot rejoin under
//! its old id.

use std::time::Duration;

use levee_tests::load::{SimulatedAgent, run_fleet};
use levee_tests::{TestEnv, wait_until};
use serde_json::Value;

use crate::common::TIMEOUT;

/// Sends `events` events from `agents` simulated agents through `addrs`.
fn send_events(env: &TestEnv, addrs: Vec<String>, agents: usize, events: u64, batch: u64) {
    let fleet: Vec<SimulatedAgent> = (0..agents)
        .map(|index| SimulatedAgent {
            agent_id: format!("sim-{index}"),
            tls: env.pki.issue("agent", &format!("sim-{index}")),
            controllers: addrs.clone(),
            total: events,
            batch,
            pace: Duration::ZERO,
        })
        .collect();
    let reports = run_fleet(fleet, Duration::from_secs(60));
    assert!(
        reports.iter().all(|report| report.acked_up_to == events),
        "{reports:?}"
    );
}

fn number(status: &Value, field: &str) -> u64 {
    status[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` missing in {status}"))
}

#[test]
fn the_log_is_compacted_and_a_new_node_catches_up_from_a_snapshot() {
    let mut env = TestEnv::new();
    env.raft_options = "snapshot_every = 20".into();
    let first = env.start_controller(1);

    // Phase: a stream of small batches makes many log entries.
    send_events(&env, vec![first.addr.clone()], 2, 300, 5);
    let status = wait_until("the log to be compacted", TIMEOUT, || {
        let status = first.status()?;
        if number(&status, "purged") > 0 {
            Ok(status)
        } else {
            Err(format!("{status}"))
        }
    });
    let retained = number(&status, "last_log_index") - number(&status, "purged");
    assert!(
        retained <= 3 * 20,
        "the log keeps {retained} entries; compaction should bound it near 20: {status}"
    );

    // Phase: a new, empty node joins; the entries it lacks are gone from the
    // leader's log, so it must install a snapshot.
    let mut second = env.unjoined_controller(2);
    second.start_unjoined();
    let joined = first
        .run(&["cluster", "join", &second.addr])
        .expect("levee cluster join");
    assert!(joined.contains("voters: [1, 2]"), "{joined}");
    // Recorded under the name its certificate states.
    let status = first.status().unwrap();
    let second_member = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|member| member["node_id"] == 2)
        .cloned()
        .unwrap_or_default();
    assert_eq!(second_member["name"], "node-2", "{status}");
    let leader_applied = number(&first.status().unwrap(), "last_applied");
    let caught_up = wait_until("the new node to apply what the leader has", TIMEOUT, || {
        let status = second.status()?;
        if number(&status, "last_applied") >= leader_applied {
            Ok(status)
        } else {
            Err(format!("{status}"))
        }
    });
    assert!(
        number(&caught_up, "snapshot_index") > 0,
        "the new node holds a snapshot: {caught_up}"
    );
    let from_leader = first
        .cli(&["events", "--limit", "10000", "--stale"])
        .unwrap();
    let from_new_node = second
        .cli(&["events", "--limit", "10000", "--stale"])
        .unwrap();
    assert_eq!(from_new_node, from_leader);
    assert_eq!(from_new_node.as_array().unwrap().len(), 600);
}

#[test]
fn a_removed_node_cannot_rejoin_under_its_old_id() {
    let env = TestEnv::new();
    let mut cluster = env.start_cluster(3);
    let leader = cluster.wait_for_leader();
    let gone = (leader + 1) % 3;
    let gone_id = cluster.nodes[gone].node_id.to_string();

    let left = cluster.nodes[leader]
        .run(&["cluster", "leave", &gone_id])
        .expect("levee cluster leave");
    assert!(left.contains(&format!("node {gone_id} removed")), "{left}");
    let status = cluster.nodes[leader].status().unwrap();
    let members: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| member["node_id"].as_u64().unwrap())
        .collect();
    assert_eq!(members.len(), 2, "{status}");
    cluster.nodes[gone].kill();

    // The remaining two still commit.
    let specs = env.write_specs("specs", crate::common::TICKER_SPECS);
    cluster.nodes[leader]
        .apply(&specs)
        .expect("apply with two nodes");

    // The removed id is spent, even for a fresh node with an empty store.
    std::fs::remove_dir_all(env.path().join(format!("node-{gone_id}"))).unwrap();
    let mut again = env.unjoined_controller(gone_id.parse().unwrap());
    again.start_unjoined();
    let refused = cluster.nodes[leader]
        .run(&["cluster", "join", &again.addr])
        .expect_err("a removed id must not rejoin");
    assert!(refused.contains("was removed"), "{refused}");
}
