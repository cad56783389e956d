//! A cluster of real controller processes under faults: any node serves
//! the CLI; a killed, frozen or isolated leader is replaced and loses no
//! acknowledged event; a full restart keeps the state identical; agents
//! follow the new leader; five nodes keep committing with two dead.

use std::collections::BTreeSet;
use std::time::Duration;

use levee_tests::load::{AgentReport, SimulatedAgent, run_fleet};
use levee_tests::{Cluster, ControllerProcess, TestEnv, wait_until};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::common::{TIMEOUT, rows};

/// Runs simulated agents to completion on a runtime of their own.
fn run_agents(
    env: &TestEnv,
    cluster: &Cluster,
    count: usize,
    events_each: u64,
) -> std::thread::JoinHandle<Vec<AgentReport>> {
    let agents: Vec<SimulatedAgent> = (0..count)
        .map(|index| SimulatedAgent {
            agent_id: format!("sim-{index}"),
            tls: env.pki.issue("agent", &format!("sim-{index}")),
            controllers: cluster.nodes.iter().map(|node| node.addr.clone()).collect(),
            total: events_each,
            batch: 20,
            pace: Duration::from_millis(20),
        })
        .collect();
    std::thread::spawn(move || run_fleet(agents, Duration::from_secs(90)))
}

/// Every acknowledged event is committed exactly once: per agent, the
/// committed sequence numbers are 1..=n with no repeat and n >= acked.
fn assert_acked_events_committed_once(node: &ControllerProcess, reports: &[AgentReport]) {
    let events = match node.cli(&["events", "--limit", "100000"]) {
        Ok(Value::Array(events)) => events,
        other => panic!("levee events: {other:?}"),
    };
    for report in reports {
        let prefix = format!("{}/1/", report.agent_id);
        let seqs: Vec<u64> = events
            .iter()
            .filter_map(|event| event["id"].as_str()?.strip_prefix(&prefix)?.parse().ok())
            .collect();
        let unique: BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(
            unique.len(),
            seqs.len(),
            "{}: an event was committed twice",
            report.agent_id
        );
        let expected: BTreeSet<u64> = (1..=unique.len() as u64).collect();
        assert_eq!(
            unique, expected,
            "{}: committed events have a gap",
            report.agent_id
        );
        assert!(
            unique.len() as u64 >= report.acked_up_to,
            "{}: acknowledged up to {} but only {} committed",
            report.agent_id,
            report.acked_up_to,
            unique.len()
        );
    }
}

#[test]
fn three_nodes_form_a_cluster_and_any_node_serves_the_cli() {
    let env = TestEnv::new();
    let cluster = env.start_cluster(3);
    let leader = cluster.wait_for_leader();
    let status = cluster.nodes[leader].status().unwrap();
    let voters: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["voter"] == true)
        .map(|m| m["node_id"].as_u64().unwrap())
        .collect();
    assert_eq!(voters, [1, 2, 3]);
    assert!(
        status["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|member| member["lag"].as_u64().is_some())
    );

    // A write sent to a follower reaches the leader by itself.
    let follower = &cluster.nodes[(leader + 1) % 3];
    let specs = env.write_specs("specs", crate::common::TICKER_SPECS);
    let applied = follower.apply(&specs).expect("apply through a follower");
    assert!(applied.contains("spec version 1 committed"), "{applied}");
    for node in &cluster.nodes {
        let status = node.status().unwrap();
        assert_eq!(
            status["spec_version"], 1,
            "node {} has not applied the specs",
            node.node_id
        );
    }
}

#[test]
fn a_sigkilled_leader_loses_and_repeats_no_acknowledged_event() {
    let env = TestEnv::new();
    let mut cluster = env.start_cluster(3);
    let load = run_agents(&env, &cluster, 4, 400);

    // Phase: once events flow, kill the leader.
    wait_until("events to flow", TIMEOUT, || {
        let count = rows(cluster.any(), "agents")
            .iter()
            .map(|agent| agent["events_committed"].as_u64().unwrap_or(0))
            .sum::<u64>();
        if count >= 100 {
            Ok(())
        } else {
            Err(format!("{count} events committed"))
        }
    });
    let leader = cluster.wait_for_leader();
    cluster.nodes[leader].kill();
    let new_leader = cluster.wait_for_leader();
    assert_ne!(new_leader, leader);

    // Phase: the agents finish through the new leader.
    let reports = load.join().expect("load thread");
    for report in &reports {
        assert_eq!(
            report.acked_up_to, 400,
            "{report:?} did not finish after the failover"
        );
    }
    assert_acked_events_committed_once(&cluster.nodes[new_leader], &reports);

    // Phase: the old leader comes back, catches up, and agrees.
    cluster.nodes[leader].start();
    let expected = rows(&cluster.nodes[new_leader], "agents");
    wait_until(
        "the restarted node to hold the same agents",
        TIMEOUT,
        || {
            let seen = cluster.nodes[leader].cli(&["agents", "--stale"])?;
            if seen == Value::Array(expected.clone()) {
                Ok(())
            } else {
                Err(format!("{seen}"))
            }
        },
    );
}

#[test]
fn a_frozen_leader_is_deposed_and_rejoins_as_a_follower() {
    let env = TestEnv::new();
    let cluster = env.start_cluster(3);
    let old = cluster.wait_for_leader();
    let old_term = cluster.nodes[old].status().unwrap()["term"]
        .as_u64()
        .unwrap();

    // Phase: freeze the leader well past the election timeout.
    cluster.nodes[old].signal(Signal::SIGSTOP);
    let others: Vec<&ControllerProcess> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != old)
        .map(|(_, node)| node)
        .collect();
    let new_leader = cluster.wait_for_leader_without(old);
    // A write during the freeze commits through the new leader.
    let specs = env.write_specs("specs", crate::common::TICKER_SPECS);
    others[0].apply(&specs).expect("apply during the freeze");

    // Phase: thaw it. It steps down and follows; there is one leader.
    cluster.nodes[old].signal(Signal::SIGCONT);
    wait_until("the thawed node to follow the new leader", TIMEOUT, || {
        let status = cluster.nodes[old].status()?;
        let follows =
            status["leader_id"].as_u64() == Some(new_leader) && status["state"] != "leader";
        if follows && status["spec_version"] == 1 {
            Ok(())
        } else {
            Err(format!("{status}"))
        }
    });
    let terms: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|node| node.status().unwrap()["term"].as_u64().unwrap())
        .collect();
    assert!(
        terms.iter().all(|term| *term > old_term),
        "a new term began: {terms:?}"
    );
    let leaders: BTreeSet<u64> = cluster
        .nodes
        .iter()
        .map(|node| node.status().unwrap()["leader_id"].as_u64().unwrap())
        .collect();
    assert_eq!(leaders, BTreeSet::from([new_leader]), "no split brain");
}

#[test]
fn stopping_and_restarting_every_node_keeps_the_state_identical() {
    let env = TestEnv::new();
    let mut cluster = env.start_cluster(3);
    let specs = env.write_specs("specs", crate::common::TICKER_SPECS);
    cluster.any().apply(&specs).unwrap();
    let reports = run_agents(&env, &cluster, 2, 100).join().unwrap();
    assert!(reports.iter().all(|report| report.acked_up_to == 100));
    let snapshot = |node: &ControllerProcess| -> Vec<Value> {
        ["agents", "events", "plans", "tasks"]
            .iter()
            // --stale: each node answers from its own state, not the leader's.
            .map(|what| node.cli(&[what, "--limit", "100000", "--stale"]).unwrap())
            .collect()
    };
    let before = snapshot(cluster.any());
    let applied_before = cluster.any().status().unwrap()["last_applied"]
        .as_u64()
        .unwrap();

    for node in &mut cluster.nodes {
        node.kill();
    }
    // All three must start together: one node alone has no quorum.
    let mut handles = Vec::new();
    for mut node in std::mem::take(&mut cluster.nodes) {
        handles.push(std::thread::spawn(move || {
            node.start();
            node
        }));
    }
    cluster.nodes = handles
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();
    cluster.wait_for_leader();
    for node in &cluster.nodes {
        wait_until(
            &format!("node {} to apply the whole log", node.node_id),
            TIMEOUT,
            || {
                let applied = node.status()?["last_applied"].as_u64().unwrap_or(0);
                if applied >= applied_before {
                    Ok(())
                } else {
                    Err(format!("applied {applied} < {applied_before}"))
                }
            },
        );
        let mut after = snapshot(node);
        // Connection state is not replicated; everything else must match.
        for agent in after[0].as_array_mut().unwrap() {
            agent["connected"] = Value::Bool(false);
        }
        let mut expected = before.clone();
        for agent in expected[0].as_array_mut().unwrap() {
            agent["connected"] = Value::Bool(false);
        }
        assert_eq!(
            after, expected,
            "node {} differs after the restart",
            node.node_id
        );
    }
}

#[test]
fn a_real_agent_follows_the_new_leader_and_repairs_continue() {
    let env = TestEnv::new();
    let mut cluster = env.start_cluster(3);
    let specs = env.write_specs("specs", crate::common::TICKER_SPECS);
    cluster.any().apply(&specs).unwrap();
    let agent = env.start_agent("worker-1", &[("role", "worker")], &cluster.node_refs());
    let first = crate::common::wait_for_starts(&agent, 1)[0];

    // Phase: the leader dies; the agent finds the new one by itself.
    let leader = cluster.wait_for_leader();
    cluster.nodes[leader].kill();
    let new_leader = cluster.wait_for_leader();
    wait_until("the agent to reconnect to the new leader", TIMEOUT, || {
        let agents = rows(&cluster.nodes[new_leader], "agents");
        if agents
            .first()
            .is_some_and(|agent| agent["connected"] == true)
        {
            Ok(())
        } else {
            Err(format!("{agents:?}"))
        }
    });

    // Phase: a failure now is repaired through the new leader, once.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    let pids = crate::common::wait_for_starts(&agent, 2);
    assert_eq!(pids.len(), 2);
    let tasks = rows(&cluster.nodes[new_leader], "tasks");
    let repair = tasks
        .iter()
        .find(|task| task["rule"] == "repair-ticker")
        .expect("a repair task");
    assert_eq!(repair["state"], "succeeded");
    let new_term = cluster.nodes[new_leader].status().unwrap()["term"]
        .as_u64()
        .unwrap();
    assert_eq!(
        repair["created_term"], new_term,
        "planned in the new leader's term"
    );
}

#[test]
fn an_isolated_leader_commits_nothing_while_the_majority_goes_on_and_catches_up_after_healing() {
    use levee_tests::cluster::source_address;

    let env = TestEnv::new();
    let (cluster, proxies) = env.start_cluster_behind_proxies(3);
    let old = cluster.wait_for_leader();
    let old_id = cluster.nodes[old].node_id;
    let others: Vec<usize> = (0..3).filter(|index| *index != old).collect();
    let committed_before = cluster.nodes[old].status().unwrap()["committed"]
        .as_u64()
        .unwrap();

    // Phase: cut every link between the leader and the other two, both ways.
    let other_sources: Vec<_> = others
        .iter()
        .map(|index| source_address(cluster.nodes[*index].node_id))
        .collect();
    proxies[old].block(&other_sources);
    for index in &others {
        proxies[*index].block(&[source_address(old_id)]);
    }

    // A write sent straight to the isolated leader does not commit.
    let operator = env.pki.issue("operator", "tester");
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap();
    levee_common::tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let minority_write = runtime.block_on(async {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(&operator.ca)))
            .domain_name(levee_common::identity::CONTROLLER_SERVER_NAME)
            .identity(tonic::transport::Identity::from_pem(
                read(&operator.cert),
                read(&operator.key),
            ));
        let channel =
            tonic::transport::Endpoint::from_shared(format!("https://{}", cluster.nodes[old].addr))
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect_lazy();
        let files = crate::common::TICKER_SPECS
            .iter()
            .map(|(name, content)| levee_common::pb::SpecFile {
                name: (*name).into(),
                content: (*content).into(),
            })
            .collect();
        let request = levee_common::pb::ApplySpecsRequest {
            files,
            reason: "from the minority".into(),
        };
        let mut client = levee_common::pb::control_client::ControlClient::new(channel);
        tokio::time::timeout(Duration::from_secs(3), client.apply_specs(request)).await
    });
    assert!(
        !matches!(minority_write, Ok(Ok(_))),
        "the isolated leader acknowledged a write: {minority_write:?}"
    );

    // Phase: the majority elects a leader of its own and commits.
    let new_leader = cluster.wait_for_leader_without(old);
    let specs = env.write_specs("specs", crate::common::TICKER_SPECS);
    let applied = cluster.nodes[others[0]]
        .apply(&specs)
        .expect("the majority commits");
    assert!(applied.contains("spec version 1 committed"), "{applied}");

    // The minority committed nothing meanwhile.
    let isolated = cluster.nodes[old].status().unwrap();
    assert_eq!(
        isolated["committed"].as_u64().unwrap(),
        committed_before,
        "{isolated}"
    );
    assert_eq!(isolated["spec_version"], 0, "{isolated}");

    // Phase: heal. The old leader follows the new one and catches up, and
    // the write it took while isolated never took effect anywhere.
    for proxy in &proxies {
        proxy.heal();
    }
    wait_until("the healed node to follow and catch up", TIMEOUT, || {
        let status = cluster.nodes[old].status()?;
        let follows =
            status["leader_id"].as_u64() == Some(new_leader) && status["state"] != "leader";
        if follows && status["spec_version"] == 1 {
            Ok(())
        } else {
            Err(format!("{status}"))
        }
    });
    for node in &cluster.nodes {
        assert_eq!(
            node.status().unwrap()["spec_version"],
            1,
            "node {}",
            node.node_id
        );
    }
}

#[test]
fn a_five_node_cluster_keeps_committing_with_two_nodes_dead() {
    let env = TestEnv::new();
    let mut cluster = env.start_cluster(5);
    let leader = cluster.wait_for_leader();
    // Kill the leader and one follower: a minority of five.
    let follower = (leader + 1) % 5;
    cluster.nodes[leader].kill();
    cluster.nodes[follower].kill();
    let new_leader = cluster.wait_for_leader();
    assert!(new_leader != leader && new_leader != follower);
    let specs = env.write_specs("specs", crate::common::TICKER_SPECS);
    let applied = cluster.any().apply(&specs).expect("three of five commit");
    assert!(applied.contains("spec version 1 committed"), "{applied}");
    // The dead come back and catch up.
    cluster.nodes[leader].start();
    cluster.nodes[follower].start();
    for node in &cluster.nodes {
        wait_until(
            &format!("node {} to hold spec version 1", node.node_id),
            TIMEOUT,
            || {
                let status = node.status()?;
                if status["spec_version"] == 1 {
                    Ok(())
                } else {
                    Err(format!("{status}"))
                }
            },
        );
    }
}
