//! Committed events per second on a 3-node cluster (fsync on, batching):
//! AGENTS simulated agents (default 100) in one load process, each sending
//! EVENTS events (default 2,000) in batches of BATCH (default 100), over
//! mTLS. Reported over RUNS runs (default 3), median first.
//!
//! Run: `cargo bench -p levee-tests --bench throughput`.

use std::time::{Duration, Instant};

use levee_tests::TestEnv;
use levee_tests::load::{SimulatedAgent, run_fleet};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    levee_common::tls::install_crypto_provider();
    let (agents, events, batch, runs) = (
        env_number("AGENTS", 100),
        env_number("EVENTS", 2_000),
        env_number("BATCH", 100),
        env_number("RUNS", 3),
    );
    let mut rates = Vec::new();
    for run in 0..runs {
        let env = TestEnv::new();
        let cluster = env.start_cluster(3);
        let controllers: Vec<String> = cluster.nodes.iter().map(|node| node.addr.clone()).collect();
        let fleet: Vec<SimulatedAgent> = (0..agents)
            .map(|index| SimulatedAgent {
                agent_id: format!("load-{index}"),
                tls: env.pki.issue("agent", &format!("load-{index}")),
                controllers: controllers.clone(),
                total: events,
                batch,
                pace: Duration::ZERO,
            })
            .collect();
        let started = Instant::now();
        let reports = run_fleet(fleet, Duration::from_secs(600));
        let elapsed = started.elapsed();
        let acked: u64 = reports.iter().map(|report| report.acked_up_to).sum();
        let rate = acked as f64 / elapsed.as_secs_f64();
        eprintln!(
            "run {}: {acked} events acknowledged in {elapsed:?}: {rate:.0} events/s",
            run + 1
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "committed events/s, {agents} agents x {events} events, batches of {batch}, 3 nodes: median {:.0} (min {:.0}, max {:.0}) over {} runs",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1],
        rates.len()
    );
}
