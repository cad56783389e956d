use std::collections::{BTreeMap, BTreeSet};

use levee_common::ids::AgentId;
use levee_common::spec::SpecSet;
use proptest::prelude::*;

use super::placement::selects;
use super::*;
use crate::engine::fleet::Deployment;

fn agent(name: &str, labels: &[(&str, &str)], cpu_millis: u32) -> AgentRecord {
    AgentRecord {
        agent_id: name.into(),
        boot_epoch: 1,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        facts: Default::default(),
        cpu_millis,
        memory_bytes: 1 << 30,
        first_seen_ms: 0,
        last_hello_ms: 0,
        events_committed: 0,
        lost: false,
        avoid: Default::default(),
    }
}

fn agents(list: &[AgentRecord]) -> BTreeMap<AgentId, AgentRecord> {
    list.iter()
        .map(|record| (record.agent_id.clone(), record.clone()))
        .collect()
}

fn service(name: &str, replicas: &str, placement: &str) -> String {
    format!(
        "kind: Service\nname: {name}\nreplicas: {replicas}\nplacement: {{ {placement} }}\nprocess: {{ argv: [/bin/true] }}\n---\n"
    )
}

fn specs(yaml: &str) -> SpecSet {
    SpecSet::parse([("t.yaml", yaml)]).unwrap()
}

/// The world the planner sees, owned, so tests can change one part.
#[derive(Debug, Default)]
struct World {
    specs: SpecSet,
    agents: BTreeMap<AgentId, AgentRecord>,
    placements: BTreeMap<String, BTreeSet<AgentId>>,
    targets: BTreeMap<String, u32>,
    current: BTreeMap<AgentId, BTreeMap<String, Deployment>>,
}

impl World {
    fn new(specs: SpecSet, agents: BTreeMap<AgentId, AgentRecord>) -> Self {
        Self {
            specs,
            agents,
            ..Self::default()
        }
    }

    fn plan(&self, trigger: &Trigger) -> Draft {
        plan(
            &PlanInput {
                specs: &self.specs,
                agents: &self.agents,
                placements: &self.placements,
                targets: &self.targets,
                current: &self.current,
            },
            trigger,
        )
    }

    /// Plans a reconcile and records it as applied by every agent.
    fn converge(&mut self) -> Draft {
        let draft = self.plan(&Trigger::Reconcile);
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
        draft
    }
}

fn placed(draft: &Draft, service: &str) -> Vec<String> {
    draft.placements[service]
        .iter()
        .map(|agent| agent.to_string())
        .collect()
}

#[test]
fn replicas_go_to_matching_agents_least_loaded_first() {
    let mut world = World::new(
        specs(&(service("web", "2", "selector: { tier: web }") + &service("db", "1", ""))),
        agents(&[
            agent("a", &[("tier", "web")], 1000),
            agent("b", &[], 1000),
            agent("c", &[("tier", "web")], 1000),
        ]),
    );
    world.placements = BTreeMap::from([("db".to_string(), BTreeSet::from([AgentId::from("a")]))]);
    let draft = world.converge();
    assert_eq!(placed(&draft, "web"), ["a", "c"]);
    assert_eq!(placed(&draft, "db"), ["a"]);
    assert!(draft.steps.iter().all(|step| step.action == Action::Create));
    assert_eq!(draft.steps.len(), 3);
    assert!(
        world.plan(&Trigger::Reconcile).steps.is_empty(),
        "converged"
    );
}

#[test]
fn replicas_spread_across_a_label_before_filling_one_value() {
    let world = World::new(
        specs(&service("web", "3", "spread: site")),
        agents(&[
            agent("ams-1", &[("site", "ams")], 1000),
            agent("ams-2", &[("site", "ams")], 1000),
            agent("ams-3", &[("site", "ams")], 1000),
            agent("fra-1", &[("site", "fra")], 1000),
            agent("par-1", &[("site", "par")], 1000),
        ]),
    );
    assert_eq!(
        placed(&world.plan(&Trigger::Reconcile), "web"),
        ["ams-1", "fra-1", "par-1"]
    );
}

#[test]
fn capacity_is_never_exceeded_and_shortfalls_are_reported() {
    let world = World::new(
        specs(&service("big", "3", "resources: { cpu_millis: 600 }")),
        agents(&[agent("a", &[], 1000), agent("b", &[], 1000)]),
    );
    let draft = world.plan(&Trigger::Reconcile);
    assert_eq!(placed(&draft, "big"), ["a", "b"]);
    assert_eq!(draft.problems.len(), 1);
    assert!(
        draft.problems[0].contains("placed 2 of 3"),
        "{:?}",
        draft.problems
    );
}

#[test]
fn scaling_down_removes_from_the_largest_spread_group_and_removes_first() {
    let mut world = World::new(
        specs(&service(
            "web",
            "{ min: 1, max: 6, initial: 4 }",
            "spread: site",
        )),
        agents(&[
            agent("ams-1", &[("site", "ams")], 1000),
            agent("ams-2", &[("site", "ams")], 1000),
            agent("fra-1", &[("site", "fra")], 1000),
            agent("fra-2", &[("site", "fra")], 1000),
            agent("par-1", &[("site", "par")], 1000),
        ]),
    );
    world.converge();
    assert_eq!(world.placements["web"].len(), 4);
    world.targets.insert("web".into(), 2);
    let draft = world.converge();
    assert_eq!(draft.steps.len(), 2);
    assert!(draft.steps.iter().all(|step| step.action == Action::Remove));
    let sites: BTreeSet<&str> = draft.placements["web"]
        .iter()
        .map(|agent| world.agents[agent].labels["site"].as_str())
        .collect();
    assert_eq!(sites.len(), 2, "two replicas stay on two sites");
    // Targets outside min..=max are clamped.
    world.targets.insert("web".into(), 99);
    world.converge();
    assert_eq!(
        world.placements["web"].len(),
        5,
        "all five agents, max is 6"
    );
}

#[test]
fn updates_roll_out_in_batches_of_max_parallel() {
    let yaml = |arg: &str| {
        format!(
            "kind: Service\nname: web\nreplicas: 5\nupdate: {{ max_parallel: 2 }}\nprocess: {{ argv: [/bin/web, \"{arg}\"] }}\n"
        )
    };
    let agents = agents(
        &(1..=5)
            .map(|n| agent(&format!("a{n}"), &[], 1000))
            .collect::<Vec<_>>(),
    );
    let mut world = World::new(specs(&yaml("v1")), agents);
    let first = world.converge();
    assert!(
        first.steps.iter().all(|step| step.batch == 0),
        "creates are not batched"
    );
    world.specs = specs(&yaml("v2"));
    let update = world.plan(&Trigger::Reconcile);
    let batches: Vec<u32> = update.steps.iter().map(|step| step.batch).collect();
    assert_eq!(batches, [0, 0, 1, 1, 2]);
    assert!(
        update
            .steps
            .iter()
            .all(|step| step.action == Action::Update)
    );
}

#[test]
fn a_service_no_longer_declared_is_removed_from_its_agents() {
    let mut world = World::new(
        specs(&(service("web", "1", "") + &service("db", "1", ""))),
        agents(&[agent("a", &[], 1000)]),
    );
    world.converge();
    world.specs = specs(&service("web", "1", ""));
    let draft = world.converge();
    assert_eq!(draft.steps.len(), 1);
    assert_eq!(
        (draft.steps[0].service.as_str(), draft.steps[0].action),
        ("db", Action::Remove)
    );
    assert!(!draft.placements.contains_key("db"));
}

#[test]
fn templates_render_per_agent_and_a_failure_is_a_problem_not_a_panic() {
    let yaml = "kind: Service\nname: web\nreplicas: 2\nprocess: { argv: [/bin/web] }\nfiles:\n  - path: site.txt\n    template: \"{{ agent.labels.site }}\"\n";
    let world = World::new(
        specs(yaml),
        agents(&[agent("a", &[("site", "ams")], 1000), agent("b", &[], 1000)]),
    );
    let draft = world.plan(&Trigger::Reconcile);
    assert_eq!(draft.steps.len(), 1, "{:?}", draft.problems);
    let Resource::File(file) = &draft.steps[0].resources[0] else {
        panic!("{:?}", draft.steps[0].resources)
    };
    assert_eq!(file.content, "ams");
    assert!(draft.problems[0].contains("on b"), "{:?}", draft.problems);
}

#[test]
fn repair_converges_one_placed_service_even_when_unchanged() {
    let mut world = World::new(
        specs(&service("web", "1", "")),
        agents(&[agent("a", &[], 1000), agent("b", &[], 1000)]),
    );
    world.converge();
    let repair = |agent: &str| Trigger::Repair {
        service: "web".into(),
        agent: agent.into(),
    };
    let draft = world.plan(&repair("a"));
    assert_eq!(draft.steps.len(), 1);
    assert_eq!(draft.steps[0].action, Action::Repair);
    assert!(
        world.plan(&repair("b")).steps.is_empty(),
        "web is not placed on b"
    );
}

#[test]
fn changes_name_added_dropped_and_changed_resources() {
    let one = specs(
        "kind: Service\nname: s\nprocess: { argv: [a] }\nfiles: [{ path: x, content: \"1\" }, { path: y, content: \"1\" }]\n",
    );
    let two = specs(
        "kind: Service\nname: s\nprocess: { argv: [a] }\nfiles: [{ path: x, content: \"2\" }, { path: z, content: \"1\" }]\n",
    );
    let labels = BTreeMap::new();
    let facts = AgentFacts {
        id: "a",
        labels: &labels,
    };
    let old = one.services["s"].resources_for(&facts).unwrap();
    let new = two.services["s"].resources_for(&facts).unwrap();
    assert_eq!(changes(&old, &new), ["~ file:x", "+ file:z", "- file:y"]);
}

fn arbitrary_world() -> impl Strategy<Value = World> {
    let sites = prop::sample::select(vec!["ams", "fra", "par"]);
    let agent_specs = prop::collection::vec(
        (
            prop::sample::select(vec!["edge", "core"]),
            sites,
            prop::sample::select(vec![500u32, 1000, 2000]),
        ),
        0..14,
    );
    let services = prop::collection::vec(
        (
            0u32..6,
            prop::option::of(prop::sample::select(vec!["edge", "core"])),
            prop::bool::ANY,
            prop::sample::select(vec![0u32, 300, 700]),
            1u32..4,
        ),
        1..6,
    );
    (agent_specs, services).prop_map(|(agent_specs, services)| {
        let yaml: String = services
            .iter()
            .enumerate()
            .map(|(index, (replicas, tier, spread, cpu, parallel))| {
                let mut placement = format!("resources: {{ cpu_millis: {cpu} }}");
                if let Some(tier) = tier {
                    placement.push_str(&format!(", selector: {{ tier: {tier} }}"));
                }
                if *spread {
                    placement.push_str(", spread: site");
                }
                service(&format!("s{index}"), &replicas.to_string(), &placement).replace(
                    "---\n",
                    &format!("update: {{ max_parallel: {parallel} }}\n---\n"),
                )
            })
            .collect();
        let records: Vec<AgentRecord> = agent_specs
            .iter()
            .enumerate()
            .map(|(index, (tier, site, cpu))| {
                agent(
                    &format!("agent-{index:02}"),
                    &[("tier", tier), ("site", site)],
                    *cpu,
                )
            })
            .collect();
        World::new(specs(&yaml), agents(&records))
    })
}

fn used_cpu(
    world: &World,
    placements: &BTreeMap<String, BTreeSet<AgentId>>,
    agent: &AgentId,
) -> u64 {
    placements
        .iter()
        .filter(|(_, agents)| agents.contains(agent))
        .map(|(name, _)| u64::from(world.specs.services[name].placement.resources.cpu_millis))
        .sum()
}

proptest! {
    #[test]
    fn placement_honours_selectors_capacity_and_spread_and_settles(mut world in arbitrary_world()) {
        let first = world.plan(&Trigger::Reconcile);
        // Capacity is never exceeded.
        for (agent_id, agent) in &world.agents {
            prop_assert!(used_cpu(&world, &first.placements, agent_id) <= u64::from(agent.cpu_millis));
        }
        for (name, spec) in &world.specs.services {
            let placed = first.placements.get(name).cloned().unwrap_or_default();
            let target = target_of(spec, &world.targets) as usize;
            prop_assert!(placed.len() <= target);
            for agent_id in &placed {
                prop_assert!(selects(spec, &world.agents[agent_id]), "{} placed on {} against its selector", name, agent_id);
            }
            // An eligible agent with room left was not needed, or would
            // have been used; and spread groups never differ by more than
            // one while the smaller group still had room.
            let has_room: Vec<&AgentRecord> = world.agents.values().filter(|agent| {
                !placed.contains(&agent.agent_id) && selects(spec, agent)
                    && fits(agent, used_cpu(&world, &first.placements, &agent.agent_id), 0, &spec.placement.resources)
            }).collect();
            if placed.len() < target {
                prop_assert!(has_room.is_empty(), "{} short of replicas while {} had room", name, has_room[0].agent_id);
            }
            if let Some(label) = &spec.placement.spread {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for agent_id in &placed {
                    *counts.entry(world.agents[agent_id].labels[label].as_str()).or_default() += 1;
                }
                for agent in &has_room {
                    let value = agent.labels[label].as_str();
                    let here = counts.get(value).copied().unwrap_or(0);
                    let most = counts.values().copied().max().unwrap_or(0);
                    prop_assert!(most <= here + 1, "{}: {} has room but {} has {} and another value {}", name, agent.agent_id, value, here, most);
                }
            }
        }
        // The same inputs give the same plan.
        prop_assert_eq!(&world.plan(&Trigger::Reconcile), &first);
        // Planning again once the plan is applied changes nothing.
        world.converge();
        let again = world.plan(&Trigger::Reconcile);
        prop_assert!(again.steps.is_empty(), "{:?}", again.steps);
        prop_assert_eq!(&again.placements, &first.placements);
    }
}
