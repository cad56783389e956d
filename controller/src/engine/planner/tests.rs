use std::collections::{BTreeMap, BTreeSet};

use levee_common::ids::AgentId;
use levee_common::spec::SpecSet;
use proptest::prelude::*;

use super::*;

fn agent(name: &str, labels: &[(&str, &str)]) -> AgentRecord {
    AgentRecord {
        agent_id: name.into(),
        boot_epoch: 1,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cpu_millis: 1000,
        memory_bytes: 1 << 30,
        first_seen_ms: 0,
        last_hello_ms: 0,
        events_committed: 0,
    }
}

fn agents(list: &[AgentRecord]) -> BTreeMap<AgentId, AgentRecord> {
    list.iter()
        .map(|record| (record.agent_id.clone(), record.clone()))
        .collect()
}

fn service(name: &str, replicas: u32, selector: &str) -> String {
    format!(
        "kind: Service\nname: {name}\nreplicas: {replicas}\nselector: {{ {selector} }}\nprocess: {{ argv: [/bin/true] }}\n---\n"
    )
}

fn specs(yaml: &str) -> SpecSet {
    SpecSet::parse([("t.yaml", yaml)]).unwrap()
}

fn reconcile_all(specs: &SpecSet) -> Trigger {
    Trigger::Reconcile {
        changed_services: specs.services.keys().cloned().collect(),
    }
}

#[test]
fn replicas_go_to_matching_agents_least_loaded_first() {
    let specs = specs(&(service("web", 2, "tier: web") + &service("db", 1, "")));
    let agents = agents(&[
        agent("a", &[("tier", "web")]),
        agent("b", &[]),
        agent("c", &[("tier", "web")]),
    ]);
    let placements = BTreeMap::from([("db".to_string(), BTreeSet::from([AgentId::from("a")]))]);
    let draft = plan(
        &PlanInput {
            specs: &specs,
            agents: &agents,
            placements: &placements,
        },
        &reconcile_all(&specs),
    );
    assert_eq!(
        draft.placements["web"],
        BTreeSet::from(["a".into(), "c".into()])
    );
    assert_eq!(draft.placements["db"], BTreeSet::from(["a".into()]));
    let targets: Vec<(String, String)> = draft
        .steps
        .iter()
        .map(|step| (step.service.clone(), step.agent.to_string()))
        .collect();
    assert_eq!(
        targets,
        [
            ("db".into(), "a".into()),
            ("web".into(), "a".into()),
            ("web".into(), "c".into())
        ]
    );
}

#[test]
fn repair_converges_only_where_the_service_is_placed() {
    let specs = specs(&service("web", 1, ""));
    let agents = agents(&[agent("a", &[]), agent("b", &[])]);
    let placements = BTreeMap::from([("web".to_string(), BTreeSet::from([AgentId::from("a")]))]);
    let input = PlanInput {
        specs: &specs,
        agents: &agents,
        placements: &placements,
    };
    let here = plan(
        &input,
        &Trigger::Repair {
            service: "web".into(),
            agent: "a".into(),
        },
    );
    assert_eq!(here.steps.len(), 1);
    assert_eq!(here.steps[0].resources, specs.services["web"].resources());
    let elsewhere = plan(
        &input,
        &Trigger::Repair {
            service: "web".into(),
            agent: "b".into(),
        },
    );
    assert!(elsewhere.steps.is_empty());
    let unknown = plan(
        &input,
        &Trigger::Repair {
            service: "ghost".into(),
            agent: "a".into(),
        },
    );
    assert!(unknown.steps.is_empty());
}

#[test]
fn services_removed_from_the_specs_lose_their_placement() {
    let specs = specs(&service("web", 1, ""));
    let agents = agents(&[agent("a", &[])]);
    let placements = BTreeMap::from([
        ("web".to_string(), BTreeSet::from([AgentId::from("a")])),
        ("old".to_string(), BTreeSet::from([AgentId::from("a")])),
    ]);
    let draft = plan(
        &PlanInput {
            specs: &specs,
            agents: &agents,
            placements: &placements,
        },
        &Trigger::Reconcile {
            changed_services: BTreeSet::new(),
        },
    );
    assert!(!draft.placements.contains_key("old"));
    assert!(
        draft.steps.is_empty(),
        "web was already placed and unchanged"
    );
}

fn arbitrary_world() -> impl Strategy<Value = (SpecSet, BTreeMap<AgentId, AgentRecord>)> {
    let tiers = prop::collection::vec(prop::sample::select(vec!["edge", "core"]), 0..12);
    let services = prop::collection::vec(
        (
            1u32..5,
            prop::option::of(prop::sample::select(vec!["edge", "core"])),
        ),
        1..6,
    );
    (tiers, services).prop_map(|(agent_tiers, services)| {
        let yaml: String = services
            .iter()
            .enumerate()
            .map(|(index, (replicas, tier))| {
                service(
                    &format!("s{index}"),
                    *replicas,
                    &tier.map(|tier| format!("tier: {tier}")).unwrap_or_default(),
                )
            })
            .collect();
        let records: Vec<AgentRecord> = agent_tiers
            .iter()
            .enumerate()
            .map(|(index, tier)| agent(&format!("agent-{index:02}"), &[("tier", tier)]))
            .collect();
        (specs(&yaml), agents(&records))
    })
}

proptest! {
    #[test]
    fn placement_honours_selectors_and_replicas_and_settles((specs, agents) in arbitrary_world()) {
        let empty = BTreeMap::new();
        let trigger = reconcile_all(&specs);
        let first = plan(&PlanInput { specs: &specs, agents: &agents, placements: &empty }, &trigger);
        for (name, placed) in &first.placements {
            let spec = &specs.services[name];
            prop_assert!(placed.len() <= spec.replicas as usize);
            let eligible = agents.values().filter(|record| selects(spec, record)).count();
            prop_assert_eq!(placed.len(), eligible.min(spec.replicas as usize));
            for agent_id in placed {
                prop_assert!(selects(spec, &agents[agent_id]), "{} placed on {} against its selector", name, agent_id);
            }
        }
        // The same inputs give the same plan.
        prop_assert_eq!(&plan(&PlanInput { specs: &specs, agents: &agents, placements: &empty }, &trigger), &first);
        // Planning again once the plan is applied changes nothing.
        let settled = PlanInput { specs: &specs, agents: &agents, placements: &first.placements };
        let again = plan(&settled, &Trigger::Reconcile { changed_services: BTreeSet::new() });
        prop_assert!(again.steps.is_empty());
        prop_assert_eq!(again.placements, first.placements);
    }
}
