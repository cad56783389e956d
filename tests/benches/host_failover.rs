//! Host failure to workload running elsewhere, on a 3-node cluster: three
//! worker agents, a service `web` with one replica whose every start appends
//! its pid to `starts.log`. Each run SIGKILLs the agent running web and the
//! workload itself (the host dies), then waits until web runs (a new live
//! pid) on another agent. Measured from the kills to the new process
//! writing its pid: the modification time of the other agent's
//! `starts.log` (same host clock, coarse kernel timestamps of a few ms), so
//! the 50 ms poll of the wait does not add to the figure. Between runs the
//! killed agent is started again and the run waits until the controller has
//! it back (`host.recovered`) and web runs on exactly one agent (the
//! recovered host was told to drop its copy).
//!
//! The figure is `lost_after_ms` plus what Levee adds: up to one tick of the
//! leader's lost-agent monitor (`lost_after_ms / 4`), the Raft commit of the
//! loss, planning, dispatch and the process start. Both are reported. Each
//! kill comes after a random pause of up to one monitor tick: without it the
//! runs, each started by the previous loss, fall on the same phase of the
//! tick and all report the same point of its range.
//!
//! Run: `cargo bench -p levee-tests --bench host_failover` (RUNS=N,
//! default 10; LOST_AFTER_MS=N, default 1500).

use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

use levee_tests::{AgentProcess, ControllerProcess, TestEnv, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const WEB: &str = r#"
kind: Service
name: web
replicas: 1
placement: { selector: { role: worker } }
process:
  argv: ["/bin/sh", "-c", "echo $$ >> starts.log; exec sleep 3600"]
  stop_timeout_ms: 2000
"#;
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let runs: usize = env_number("RUNS", 10);
    let lost_after_ms: u64 = env_number("LOST_AFTER_MS", 1500);
    let mut env = TestEnv::new();
    env.agents_options = format!("lost_after_ms = {lost_after_ms}");
    let cluster = env.start_cluster(3);
    let controllers = cluster.node_refs();
    let controller = controllers[0];
    let mut agents: Vec<AgentProcess> = (1..=3)
        .map(|n| env.start_agent(&format!("worker-{n}"), &[("role", "worker")], &controllers))
        .collect();
    controller.wait_for_connected_agents(3);
    controller
        .apply(&env.write_specs("specs", &[("web.yaml", WEB)]))
        .expect("levee apply");
    wait_for_web_on_one(controller, &agents, "web to run on one agent");

    // The leader's lost-agent monitor tick, as the controller computes it.
    let tick = (Duration::from_millis(lost_after_ms) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut latencies_ms = Vec::with_capacity(runs);
    for run in 1..=runs {
        // A host fails at any moment, not in step with the monitor.
        std::thread::sleep(tick.mul_f64(random_fraction()));
        let victim = (0..agents.len())
            .find(|i| live_pid(&agents[*i]).is_some())
            .expect("web runs somewhere");
        let workload = live_pid(&agents[victim]).unwrap();
        let starts_before: Vec<usize> = agents.iter().map(|agent| starts(agent).len()).collect();

        // The host dies: its agent and its workload.
        agents[victim].kill();
        kill(Pid::from_raw(workload as i32), Signal::SIGKILL).expect("kill the workload");
        #[allow(clippy::disallowed_methods)] // Compared with agents' wall-clock start times.
        let killed_at = SystemTime::now();
        let (moved_to, pid) = wait_until(
            &format!(
                "run {run}: web to run on an agent other than {}",
                agents[victim].name
            ),
            TIMEOUT,
            || {
                (0..agents.len())
                    .filter(|i| *i != victim)
                    .find_map(|i| {
                        (starts(&agents[i]).len() > starts_before[i])
                            .then(|| live_pid(&agents[i]))
                            .flatten()
                            .map(|pid| (i, pid))
                    })
                    .ok_or_else(|| format!("controller log:\n{}", controller.log_tail()))
            },
        );
        let started_at = std::fs::metadata(agents[moved_to].service_dir("web").join("starts.log"))
            .and_then(|meta| meta.modified())
            .expect("starts.log modification time");
        let elapsed = started_at
            .duration_since(killed_at)
            .unwrap_or_else(|_| panic!("run {run}: web started before the kill"));
        latencies_ms.push(elapsed.as_millis() as u64);
        eprintln!(
            "run {run}: {} killed, web (pid {pid}) running on {} after {} ms",
            agents[victim].name,
            agents[moved_to].name,
            elapsed.as_millis()
        );

        // The host comes back: it is told to drop the replica that moved.
        agents[victim].start();
        wait_until(
            &format!("run {run}: {} back (host.recovered)", agents[victim].name),
            TIMEOUT,
            || {
                let events = rows(controller, &["events", "--limit", "10000"]);
                let count = |kind: &str| {
                    events
                        .iter()
                        .filter(|event| {
                            event["type"] == kind && event["subject"] == agents[victim].name
                        })
                        .count()
                };
                let connected = rows(controller, &["agents"]).iter().any(|agent| {
                    agent["agent_id"] == agents[victim].name && agent["connected"] == true
                });
                let (lost, recovered) = (count("host.lost"), count("host.recovered"));
                if connected && lost >= 1 && recovered == lost {
                    Ok(())
                } else {
                    Err(format!(
                        "connected {connected}, host.lost {lost}, host.recovered {recovered}"
                    ))
                }
            },
        );
        wait_for_web_on_one(
            controller,
            &agents,
            &format!("run {run}: web on exactly one agent again"),
        );
    }

    latencies_ms.sort_unstable();
    let at = |q: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * q).round() as usize];
    let added = |ms: u64| ms as i64 - lost_after_ms as i64;
    let (median, p90, min, max) = (
        at(0.5),
        at(0.9),
        latencies_ms[0],
        latencies_ms[latencies_ms.len() - 1],
    );
    println!(
        "host SIGKILL to workload running on another agent, 3 nodes, lost_after_ms {lost_after_ms}, {runs} runs: median {median} ms, p90 {p90} ms, min {min} ms, max {max} ms; minus lost_after_ms: median {} ms, p90 {} ms, min {} ms, max {} ms",
        added(median),
        added(p90),
        added(min),
        added(max)
    );
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Uniform in [0, 1), from the standard library's randomly keyed hasher.
fn random_fraction() -> f64 {
    let random = std::collections::hash_map::RandomState::new().hash_one(());
    (random >> 11) as f64 / (1u64 << 53) as f64
}

/// The pids in the agent's `web/starts.log`, one per start.
fn starts(agent: &AgentProcess) -> Vec<u32> {
    std::fs::read_to_string(agent.service_dir("web").join("starts.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// The pid of the agent's last web start, if it still runs.
fn live_pid(agent: &AgentProcess) -> Option<u32> {
    starts(agent).last().copied().filter(|pid| is_running(*pid))
}

fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// Waits until web runs on exactly one agent and the controller reports it
/// converged at one replica.
fn wait_for_web_on_one(controller: &ControllerProcess, agents: &[AgentProcess], what: &str) {
    wait_until(what, TIMEOUT, || {
        let running: Vec<&str> = agents
            .iter()
            .filter(|agent| live_pid(agent).is_some())
            .map(|agent| agent.name.as_str())
            .collect();
        let status = controller.cli(&["status"])?;
        let web = &status["services"][0];
        if running.len() == 1 && web["target"] == 1 && web["converged"] == 1 && web["placed"] == 1 {
            Ok(())
        } else {
            Err(format!("running on {running:?}; status {web}"))
        }
    });
}

fn rows(controller: &ControllerProcess, args: &[&str]) -> Vec<Value> {
    match controller.cli(args) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("levee {args:?}: {other:?}"),
    }
}
