//! Failover on a 3-node cluster: SIGKILL the leader KILLS times (default
//! 20) while a probe agent streams events, and report
//! - the election gap: kill until the two survivors agree on a new leader
//!   (polled every 50 ms, so it is over-estimated by up to that much);
//! - the agent-observed gap: the longest time the probe waited for an
//!   acknowledgement, which adds reconnecting and resending to the election.
//!
//! Run: `cargo bench -p levee-tests --bench failover` (KILLS=N to change it).

use std::time::{Duration, Instant};

use levee_tests::TestEnv;
use levee_tests::load::SimulatedAgent;

fn main() {
    levee_common::tls::install_crypto_provider();
    let kills: usize = std::env::var("KILLS")
        .ok()
        .and_then(|kills| kills.parse().ok())
        .unwrap_or(20);
    let env = TestEnv::new();
    let mut cluster = env.start_cluster(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut elections = Vec::new();
    let mut agent_gaps = Vec::new();
    for kill in 0..kills {
        let probe = SimulatedAgent {
            agent_id: format!("probe-{kill}"),
            tls: env.pki.issue("agent", &format!("probe-{kill}")),
            controllers: cluster.nodes.iter().map(|node| node.addr.clone()).collect(),
            total: 1_000_000,
            batch: 1,
            pace: Duration::from_millis(5),
        };
        let handle = runtime.spawn(probe.run(Duration::from_secs(6)));
        // Let the probe reach a steady stream before the kill.
        std::thread::sleep(Duration::from_secs(2));
        let leader = cluster.wait_for_leader();
        let killed_at = Instant::now();
        cluster.nodes[leader].kill();
        cluster.wait_for_leader_without(leader);
        elections.push(killed_at.elapsed());
        let report = runtime.block_on(handle).unwrap();
        agent_gaps.push(report.longest_ack_gap);
        cluster.nodes[leader].start();
        cluster.wait_for_leader();
        eprintln!(
            "kill {}: election {:?}, agent gap {:?}",
            kill + 1,
            elections[kill],
            agent_gaps[kill]
        );
    }
    report("election gap", &mut elections);
    report("agent-observed gap", &mut agent_gaps);
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what} over {} kills: median {:?}, p90 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        samples[samples.len() - 1]
    );
}
