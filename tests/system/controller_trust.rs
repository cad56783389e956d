//! Trust boundaries: every certificate speaks only for itself. A
//! controller certificate the CA issued is served by the Raft transport
//! only while it maps to a current member, and only for that member's own
//! messages; agents take tasks only from a member that leads; refusals are
//! counted, and logged once per peer and reason, not once per attempt.

use std::time::Duration;

use levee_common::identity::{Identity, Role};
use levee_common::pki::CertificateAuthority;
use levee_common::tls::TlsMaterial;
use levee_tests::raft_impostor::RaftImpostor;
use levee_tests::rogue_controller::RogueController;
use levee_tests::{AgentProcess, ControllerProcess, TestEnv, https, tls_client, wait_until};
use time::OffsetDateTime;
use tonic::{Code, Status};

use crate::common::TIMEOUT;

/// Far above any term a test cluster reaches: served, it would force
/// every node into a new election at that term.
const HUGE_TERM: u64 = 1_000_000_000;

/// Slow elections, so that no term changes by itself while a test
/// compares terms before and after.
const CALM_RAFT: &str = "heartbeat_ms = 100\nelection_min_ms = 2000\nelection_max_ms = 4000";

fn calm_env() -> TestEnv {
    let mut env = TestEnv::new();
    env.raft_options = CALM_RAFT.into();
    env.controller_keys = "metrics_listen = \"127.0.0.1:0\"".into();
    env
}

/// Each running node's (term, last log index), from its own status.
fn terms_and_logs(nodes: &[&ControllerProcess]) -> Vec<(u64, u64, u64)> {
    nodes
        .iter()
        .map(|node| {
            let status = node.status().expect("cluster status");
            (
                node.node_id,
                status["term"].as_u64().unwrap(),
                status["last_log_index"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Asserts `result` is a PERMISSION_DENIED whose message says `why`.
#[track_caller]
fn denied(result: Result<(), Status>, why: &str) {
    match result {
        Err(status) if status.code() == Code::PermissionDenied => assert!(
            status.message().contains(why),
            "refused, but not for `{why}`: {status:?}"
        ),
        other => panic!("expected PERMISSION_DENIED ({why}), got {other:?}"),
    }
}

/// The value of the sample `series` (name and labels) in a scrape of
/// `metrics_addr`, 0 when absent.
fn sample(metrics_addr: &str, series: &str) -> u64 {
    let reply = https::get(&format!("http://{metrics_addr}/metrics"));
    reply
        .body
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

fn refusals(boundary: &str, reason: &str) -> String {
    format!("levee_refusals_total{{boundary=\"{boundary}\",reason=\"{reason}\"}} ")
}

fn agent_refusals(reason: &str) -> String {
    format!("levee_agent_refusals_total{{boundary=\"controller\",reason=\"{reason}\"}} ")
}

#[test]
fn a_controller_certificate_that_never_joined_is_refused_every_raft_call() {
    let env = calm_env();
    let cluster = env.start_cluster(3);
    let nodes = cluster.node_refs();
    let before = terms_and_logs(&nodes);
    let stranger = env.pki.issue("controller", "stranger");
    let status = nodes[0].status().unwrap();
    let names: Vec<&str> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| member["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-1", "node-2", "node-3"], "{status}");

    // Phase: a CA-issued controller certificate that never joined, on every node.
    for node in &nodes {
        let mut impostor = RaftImpostor::dial(&node.addr, &stranger);
        for claimed in [1, 42] {
            denied(
                impostor.append_entries(claimed, HUGE_TERM),
                "is not a member",
            );
        }
        denied(impostor.vote(42, HUGE_TERM), "is not a member");
        denied(impostor.install_snapshot(42, HUGE_TERM), "is not a member");
        denied(impostor.record_inbound("agent/worker-1"), "is not a member");
        denied(impostor.join(42, "127.0.0.1:1"), "may not add itself");
    }

    // Phase: a member speaks only for itself, and forwards only outside events.
    let member = env.pki.issue("controller", "node-2");
    let mut node_two = RaftImpostor::dial(&nodes[0].addr, &member);
    denied(
        node_two.append_entries(1, HUGE_TERM),
        "is node 2, but the message is from node 1",
    );
    denied(
        node_two.vote(3, HUGE_TERM),
        "is node 2, but the message is from node 3",
    );
    denied(
        node_two.record_inbound("agent/worker-1"),
        "is not a source of events from outside",
    );

    // Phase: nothing changed: no term moved, nothing was committed.
    assert_eq!(terms_and_logs(&nodes), before);
    let leader = &cluster.nodes[cluster.wait_for_leader()];
    let events = leader.cli(&["events", "--limit", "1000"]).unwrap();
    assert!(
        !events.to_string().contains("forged"),
        "a forged event was committed: {events}"
    );

    // Phase: each refusal is counted; each (peer, reason) logged once.
    let first = nodes[0];
    let metrics = first.metrics_addr();
    assert_eq!(sample(&metrics, &refusals("raft", "not_member")), 5);
    assert_eq!(sample(&metrics, &refusals("raft", "join_not_allowed")), 1);
    assert_eq!(sample(&metrics, &refusals("raft", "wrong_sender")), 2);
    assert_eq!(sample(&metrics, &refusals("raft", "bad_source")), 1);
    let lines = first.log_lines_with(&[
        "\"peer\":\"controller/stranger\"",
        "\"reason\":\"not_member\"",
    ]);
    assert_eq!(lines, 1, "{}", first.log_tail());
}

#[test]
fn a_removed_members_certificate_is_refused_from_its_removal_on() {
    let env = calm_env();
    let mut cluster = env.start_cluster(3);
    let leader = cluster.wait_for_leader();
    let gone = (leader + 1) % 3;
    let gone_id = cluster.nodes[gone].node_id;
    let gone_addr = cluster.nodes[gone].addr.clone();
    let gone_cert = env.pki.issue("controller", &format!("node-{gone_id}"));

    // Phase: while a member, its certificate is served for its own id.
    let mut while_member = RaftImpostor::dial(&cluster.nodes[leader].addr, &gone_cert);
    // Term 0 is below every vote: served, and refused by Raft itself.
    while_member
        .append_entries(gone_id, 0)
        .expect("a member's call is served");

    // Phase: removed, its certificate is refused every call.
    cluster.nodes[leader]
        .run(&["cluster", "leave", &gone_id.to_string()])
        .expect("levee cluster leave");
    cluster.nodes[gone].kill();
    let remaining: Vec<&ControllerProcess> = cluster
        .nodes
        .iter()
        .filter(|node| node.is_running())
        .collect();
    let before = terms_and_logs(&remaining);
    for node in &remaining {
        let mut removed = RaftImpostor::dial(&node.addr, &gone_cert);
        denied(removed.append_entries(gone_id, HUGE_TERM), "was removed");
        denied(removed.vote(gone_id, HUGE_TERM), "was removed");
        denied(removed.install_snapshot(gone_id, HUGE_TERM), "was removed");
        denied(removed.record_inbound("webhook/alerts"), "is not a member");
    }
    let mut rejoin = RaftImpostor::dial(&cluster.nodes[leader].addr, &gone_cert);
    denied(rejoin.join(gone_id, &gone_addr), "was removed");
    // Nor under a new id: the name is spent too.
    denied(
        rejoin.join(gone_id + 10, &gone_addr),
        "may not rejoin under any id",
    );

    // Phase: nothing changed.
    assert_eq!(terms_and_logs(&remaining), before);
    assert_eq!(
        sample(
            &cluster.nodes[leader].metrics_addr(),
            &refusals("raft", "removed")
        ),
        5
    );
    assert_eq!(cluster.wait_for_leader(), leader, "the leader changed");
}

#[test]
fn an_agent_that_knows_its_cluster_refuses_a_rogue_controller() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let rogue_tls = env.pki.issue("controller", "rogue");
    let marks = env.path().join("rogue-marks");
    std::fs::create_dir_all(&marks).unwrap();
    let with_metrics = |config: &mut levee_common::agent_config::AgentConfig| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    };

    // Phase: the rogue is real: an agent that never met a cluster obeys it.
    let naive_mark = marks.join("naive");
    {
        let rogue = RogueController::start(&rogue_tls, &naive_mark);
        let _naive = env.start_agent_with("naive", &[], &[], |config| {
            config.controllers = vec![rogue.addr.clone()];
        });
        wait_until("the rogue's task to run on a naive agent", TIMEOUT, || {
            naive_mark
                .exists()
                .then_some(())
                .ok_or_else(|| format!("{} welcomed", rogue.welcomed()))
        });
    }

    // Phase: an agent that talked to the cluster remembers its members.
    let mut agent = env.start_agent_with("worker-1", &[], &[&controller], with_metrics);
    controller.wait_for_connected_agents(1);
    agent.kill();

    // Phase: pointed at the rogue, it refuses it in the handshake.
    let mark = marks.join("worker-1");
    let rogue = RogueController::start(&rogue_tls, &mark);
    agent.reconfigure(|config| config.controllers = vec![rogue.addr.clone()]);
    agent.start();
    let refused = wait_for_refusals(&agent, 3);
    assert_eq!(rogue.welcomed(), 0, "the rogue got a session");
    assert!(!mark.exists(), "the rogue's task ran");
    // Several attempts, one log line.
    let lines = agent.log_lines_with(&["\"boundary\":\"controller\"", "\"reason\":\"not_member\""]);
    assert_eq!(lines, 1, "{refused} refusals: {}", agent.log_tail());

    // Phase: names pinned in the config are refused nothing else, from the start.
    let pinned_mark = marks.join("pinned");
    let pinned_rogue = RogueController::start(&rogue_tls, &pinned_mark);
    let pinned = env.start_agent_with("pinned", &[], &[], |config| {
        with_metrics(config);
        config.controllers = vec![pinned_rogue.addr.clone()];
        config.controller_names = vec!["node-1".into()];
    });
    wait_for_refusals(&pinned, 1);
    assert_eq!(pinned_rogue.welcomed(), 0, "the rogue got a session");
    assert!(!pinned_mark.exists(), "the rogue's task ran");
}

/// Waits until `agent` counted at least `count` refusals of a controller
/// that is not a member; returns how many.
fn wait_for_refusals(agent: &AgentProcess, count: u64) -> u64 {
    let metrics = agent.metrics_addr();
    wait_until(
        &format!("agent {} to refuse the rogue {count} times", agent.name),
        TIMEOUT,
        || {
            let refused = sample(&metrics, &agent_refusals("not_member"));
            if refused >= count {
                Ok(refused)
            } else {
                Err(format!("{refused} refusals; log:\n{}", agent.log_tail()))
            }
        },
    )
}

#[test]
fn a_flood_of_untrusted_handshakes_is_counted_each_and_logged_once() {
    let mut env = TestEnv::new();
    env.controller_keys = "metrics_listen = \"127.0.0.1:0\"".into();
    let controller = env.start_controller(1);
    let ca_pem = std::fs::read_to_string(env.pki.dir.join("ca.crt")).unwrap();
    let now = OffsetDateTime::now_utc();
    let day = Duration::from_secs(86_400);
    let other_ca = CertificateAuthority::create("impostor", now - day, 2 * day).unwrap();
    let forged = other_ca
        .issue(
            &Identity::new(Role::Operator, "tester"),
            &[],
            now - day,
            2 * day,
        )
        .unwrap();

    // Phase: 200 connections with a certificate of another CA.
    let forged = TlsMaterial {
        ca_pem,
        cert_pem: forged.cert_pem,
        key_pem: forged.key_pem,
    };
    const FLOOD: u64 = 200;
    for _ in 0..FLOOD {
        let refused = tls_client::handshake(&controller.addr, &forged);
        assert!(refused.is_err(), "an untrusted certificate was served");
    }

    // Phase: every one counted, one line logged.
    let metrics = controller.metrics_addr();
    let series = refusals("tls", "untrusted_certificate");
    wait_until(
        "the controller to count every refused handshake",
        TIMEOUT,
        || match sample(&metrics, &series) {
            FLOOD => Ok(()),
            counted => Err(format!("{counted} counted")),
        },
    );
    let lines = controller.log_lines_with(&[
        "\"boundary\":\"tls\"",
        "\"reason\":\"untrusted_certificate\"",
    ]);
    assert_eq!(lines, 1, "{}", controller.log_tail());
}
