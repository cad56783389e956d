//! Planner speed at fleet scale, pure (no I/O): 10,000 agents and 100
//! services, in two shapes:
//!
//! - `spread`: each service wants 100 replicas spread across 10 sites
//!   (10,000 placements);
//! - `everywhere`: each service runs on every agent (1,000,000 placements).
//!
//! For each shape it times the first plan (placing everything), a replan
//! once that plan is applied (must be empty), and a plan after every
//! service changed (updates cut into batches).
//!
//! Run: `cargo bench -p levee-controller --bench planner` (RUNS=N, default 5).
//! Prints the median and extremes of each.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use levee_common::ids::AgentId;
use levee_common::spec::SpecSet;
use levee_controller::engine::planner::{Action, Draft, PlanInput, Trigger, plan};
use levee_controller::state::records::{AgentRecord, Deployment};

const AGENTS: usize = 10_000;
const SERVICES: usize = 100;
const SITES: usize = 10;

fn agents() -> BTreeMap<AgentId, AgentRecord> {
    (0..AGENTS)
        .map(|n| {
            let id = AgentId::from(format!("agent-{n:05}").as_str());
            let labels = BTreeMap::from([
                ("site".to_owned(), format!("site-{}", n % SITES)),
                (
                    "tier".to_owned(),
                    if n % 4 == 0 { "edge" } else { "core" }.to_owned(),
                ),
            ]);
            let record = AgentRecord {
                agent_id: id.clone(),
                boot_epoch: 1,
                labels,
                facts: Default::default(),
                cpu_millis: 64_000,
                memory_bytes: 256 << 30,
                first_seen_ms: 0,
                last_hello_ms: 0,
                events_committed: 0,
                lost: false,
                avoid: Default::default(),
            };
            (id, record)
        })
        .collect()
}

fn specs(replicas: usize, version: &str) -> SpecSet {
    let yaml: String = (0..SERVICES)
        .map(|n| {
            format!(
                "kind: Service\nname: svc-{n:03}\nreplicas: {{ min: 1, max: {AGENTS}, initial: {replicas} }}\n\
                 placement: {{ spread: site, resources: {{ cpu_millis: 100, memory_mb: 64 }} }}\n\
                 update: {{ max_parallel: 10 }}\n\
                 process: {{ argv: [/usr/bin/svc, \"{version}\"] }}\n\
                 files: [{{ path: svc.conf, content: \"port {n}\\n\" }}]\n---\n"
            )
        })
        .collect();
    SpecSet::parse([("bench.yaml", yaml.as_str())]).expect("bench specs parse")
}

struct World {
    agents: BTreeMap<AgentId, AgentRecord>,
    placements: BTreeMap<String, std::collections::BTreeSet<AgentId>>,
    targets: BTreeMap<String, u32>,
    current: BTreeMap<AgentId, BTreeMap<String, Deployment>>,
}

impl World {
    fn plan(&self, specs: &SpecSet) -> (Draft, Duration) {
        let input = PlanInput {
            specs,
            agents: &self.agents,
            placements: &self.placements,
            targets: &self.targets,
            current: &self.current,
        };
        let started = Instant::now();
        let draft = plan(&input, &Trigger::Reconcile);
        (draft, started.elapsed())
    }

    fn record(&mut self, draft: &Draft) {
        self.placements = draft.placements.clone();
        for step in &draft.steps {
            let services = self.current.entry(step.agent.clone()).or_default();
            if step.action == Action::Remove {
                services.remove(&step.service);
            } else {
                services.insert(
                    step.service.clone(),
                    Deployment {
                        applied: Some(step.digest.clone()),
                        ..Deployment::default()
                    },
                );
            }
        }
    }
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let agents = agents();
    for (shape, replicas) in [("spread", 100), ("everywhere", AGENTS)] {
        let v1 = specs(replicas, "v1");
        let v2 = specs(replicas, "v2");
        let mut timings: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        let mut steps: BTreeMap<&str, usize> = BTreeMap::new();
        for _ in 0..runs {
            let mut world = World {
                agents: agents.clone(),
                placements: BTreeMap::new(),
                targets: BTreeMap::new(),
                current: BTreeMap::new(),
            };
            let (first, took) = world.plan(&v1);
            timings.entry("first plan").or_default().push(took);
            steps.insert("first plan", first.steps.len());
            world.record(&first);
            let (again, took) = world.plan(&v1);
            assert!(
                again.steps.is_empty(),
                "replanning an applied plan must give nothing"
            );
            timings.entry("replan, converged").or_default().push(took);
            steps.insert("replan, converged", 0);
            let (update, took) = world.plan(&v2);
            timings
                .entry("update every service")
                .or_default()
                .push(took);
            steps.insert("update every service", update.steps.len());
        }
        println!("planner, {shape}: {AGENTS} agents x {SERVICES} services, {runs} runs");
        for (name, mut times) in timings {
            times.sort();
            println!(
                "  {name:<22} median {:>8.1} ms  min {:>8.1} ms  max {:>8.1} ms  ({} steps)",
                ms(times[times.len() / 2]),
                ms(times[0]),
                ms(times[times.len() - 1]),
                steps[name]
            );
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
