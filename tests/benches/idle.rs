//! What `levee dev` costs at rest: CPU of the one-node controller and of
//! its local agent, over a window in which nothing happens.
//!
//! Run: `cargo bench -p levee-tests --bench idle` (RUNS=N runs, default 3;
//! SECONDS=S window per run, default 60; SMOKE=1 for one 2 s run, as CI
//! does through the system tests). Prints each run and the medians, as
//! percent of one core.

use std::time::Duration;

use levee_tests::TestEnv;
use levee_tests::idle::measure_dev;

fn main() {
    let smoke = std::env::var_os("SMOKE").is_some();
    let number = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let (runs, seconds) = if smoke {
        (1, 2)
    } else {
        (number("RUNS", 3), number("SECONDS", 60))
    };
    let mut controller = Vec::new();
    let mut agent = Vec::new();
    for run in 1..=runs {
        let env = TestEnv::new();
        let idle = measure_dev(
            env.path(),
            Duration::from_secs(5),
            Duration::from_secs(seconds),
        );
        println!(
            "run {run}: controller {:.3} % of a core, agent {:.3} % over {:.1} s",
            idle.controller_percent,
            idle.agent_percent,
            idle.window.as_secs_f64()
        );
        controller.push(idle.controller_percent);
        agent.push(idle.agent_percent);
    }
    println!(
        "median over {runs} runs of {seconds} s: controller {:.3} %, agent {:.3} % of a core",
        median(&mut controller),
        median(&mut agent)
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
