//! The planner: a pure, deterministic function from desired state (specs
//! and replica targets), the agents, and what each agent runs, to the
//! placements and the ordered, batched steps that converge them.
//!
//! - Placement honours selectors, never fills an agent past the capacity
//!   it announced, spreads replicas across a label's values, and then
//!   prefers the least loaded agents (by name on ties, for determinism).
//! - Steps come from comparing, per service and agent, the digest of the
//!   resources wanted with the digest of what the agent runs or is being
//!   asked to run. So planning again after a plan is applied gives nothing.

mod placement;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use levee_common::ids::AgentId;
use levee_common::resource::Resource;
use levee_common::spec::{AgentFacts, ServiceSpec, SpecSet};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::fleet::{AgentRecord, Deployment};

pub use self::placement::{fits, place};

/// What the planner reads.
pub struct PlanInput<'a> {
    pub specs: &'a SpecSet,
    pub agents: &'a BTreeMap<AgentId, AgentRecord>,
    /// Which agents each service is placed on now.
    pub placements: &'a BTreeMap<String, BTreeSet<AgentId>>,
    /// Replica targets set by scaling; missing means `replicas.initial`.
    pub targets: &'a BTreeMap<String, u32>,
    /// Per agent and service, the digest of what it runs or is being
    /// asked to run.
    pub current: &'a BTreeMap<AgentId, BTreeMap<String, Deployment>>,
}

/// Why we are planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Desired state, targets or agents changed: converge everything.
    Reconcile,
    /// Converge `service` again on `agent`, changed or not (its workload
    /// failed there).
    Repair { service: String, agent: AgentId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Remove,
    Repair,
    /// A rule's one-off command (`run`), outside any service.
    Run,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Remove => "remove",
            Action::Repair => "repair",
            Action::Run => "run",
        }
    }
}

/// One agent's part of a plan: converge (or remove) one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub agent: AgentId,
    pub service: String,
    pub action: Action,
    /// Empty for `Remove`. Shared between the steps of a service whose
    /// resources are the same on every agent.
    pub resources: Arc<Vec<Resource>>,
    /// Digest of `resources`; empty for `Remove`.
    pub digest: String,
    /// Batches of one service run in order, each once the one before has
    /// applied and is healthy. Creates and removes go in batch 0; updates
    /// are cut into batches of the service's `update.max_parallel`.
    pub batch: u32,
}

/// The planner's answer: placements after the plan, and steps in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub placements: BTreeMap<String, BTreeSet<AgentId>>,
    pub steps: Vec<Step>,
    /// Things the planner could not do, e.g. a template that failed to
    /// render for one agent, or too few agents with capacity.
    pub problems: Vec<String>,
}

pub fn plan(input: &PlanInput<'_>, trigger: &Trigger) -> Draft {
    match trigger {
        Trigger::Reconcile => reconcile(input),
        Trigger::Repair { service, agent } => repair(input, service, agent),
    }
}

/// The replica count a service aims for: its scaled target, or its
/// initial count, kept within `min..=max`.
pub fn target_of(service: &ServiceSpec, targets: &BTreeMap<String, u32>) -> u32 {
    service.replicas.clamp(
        targets
            .get(&service.name)
            .copied()
            .unwrap_or(service.replicas.initial),
    )
}

/// Digest of a resource list, the same on every node.
pub fn digest(resources: &[Resource]) -> String {
    let bytes = serde_json::to_vec(resources).unwrap_or_default();
    let hash = Sha256::digest(&bytes);
    hash[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn reconcile(input: &PlanInput<'_>) -> Draft {
    let placed = place(input);
    let mut problems = placed.problems;
    let mut removes = Vec::new();
    // What agents run but should not any more.
    for (agent, services) in input.current {
        // A lost agent cannot be reached; it gets its removals when it
        // comes back and says hello.
        if input.agents.get(agent).is_none_or(|record| record.lost) {
            continue;
        }
        for (service, deployment) in services {
            let wanted = placed
                .placements
                .get(service)
                .is_some_and(|agents| agents.contains(agent));
            if deployment.current().is_some() && !wanted {
                removes.push(Step {
                    agent: agent.clone(),
                    service: service.clone(),
                    action: Action::Remove,
                    resources: Arc::default(),
                    digest: String::new(),
                    batch: 0,
                });
            }
        }
    }
    removes.sort_by(|a, b| (&a.service, &a.agent).cmp(&(&b.service, &b.agent)));
    let mut steps = Vec::new();
    for (name, service) in &input.specs.services {
        let Some(agents) = placed.placements.get(name) else {
            continue;
        };
        // Resources without templates are the same on every agent:
        // render and digest them once, and share them between steps.
        let shared = service
            .files
            .iter()
            .all(|file| file.template.is_none())
            .then(|| render(service, None, input))
            .and_then(Result::ok);
        let per_batch = service.update.max_parallel.max(1) as usize;
        let mut updates = 0;
        for agent in agents {
            let rendered;
            let (resources, digest) = match &shared {
                Some(shared) => shared,
                None => match render(service, Some(agent), input) {
                    Ok(ok) => {
                        rendered = ok;
                        &rendered
                    }
                    Err(err) => {
                        problems.push(format!("service `{name}` on {agent}: {err}"));
                        continue;
                    }
                },
            };
            let current = input
                .current
                .get(agent)
                .and_then(|services| services.get(name))
                .and_then(Deployment::current);
            let (action, batch) = match current {
                None => (Action::Create, 0),
                Some(current) if current != digest => {
                    updates += 1;
                    (Action::Update, ((updates - 1) / per_batch) as u32)
                }
                Some(_) => continue,
            };
            steps.push(Step {
                agent: agent.clone(),
                service: name.clone(),
                action,
                resources: Arc::clone(resources),
                digest: digest.clone(),
                batch,
            });
        }
    }
    // Removes first (they free capacity), then batch by batch; within a
    // batch, by service and agent as generated (the sort is stable).
    steps.sort_by_key(|step| step.batch);
    removes.append(&mut steps);
    Draft {
        placements: placed.placements,
        steps: removes,
        problems,
    }
}

fn repair(input: &PlanInput<'_>, service: &str, agent: &AgentId) -> Draft {
    let mut draft = Draft {
        placements: input.placements.clone(),
        steps: Vec::new(),
        problems: Vec::new(),
    };
    let placed_here = input
        .placements
        .get(service)
        .is_some_and(|agents| agents.contains(agent));
    if let Some(spec) = input.specs.services.get(service)
        && placed_here
    {
        match render(spec, Some(agent), input) {
            Ok((resources, digest)) => draft.steps.push(Step {
                agent: agent.clone(),
                service: service.to_owned(),
                action: Action::Repair,
                resources,
                digest,
                batch: 0,
            }),
            Err(err) => draft
                .problems
                .push(format!("service `{service}` on {agent}: {err}")),
        }
    }
    draft
}

/// What differs between the resources an agent runs and the new ones, by
/// resource key: `+` added, `-` dropped, `~` changed.
pub fn changes(old: &[Resource], new: &[Resource]) -> Vec<String> {
    let old: BTreeMap<String, &Resource> = old.iter().map(|r| (r.key(), r)).collect();
    let new: BTreeMap<String, &Resource> = new.iter().map(|r| (r.key(), r)).collect();
    let mut changes = Vec::new();
    for (key, resource) in &new {
        match old.get(key) {
            None => changes.push(format!("+ {key}")),
            Some(previous) if previous != resource => changes.push(format!("~ {key}")),
            Some(_) => {}
        }
    }
    changes.extend(
        old.keys()
            .filter(|key| !new.contains_key(*key))
            .map(|key| format!("- {key}")),
    );
    changes
}

fn render(
    service: &ServiceSpec,
    agent: Option<&AgentId>,
    input: &PlanInput<'_>,
) -> Result<(Arc<Vec<Resource>>, String), String> {
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    let labels = agent
        .and_then(|agent| input.agents.get(agent))
        .map_or(&NO_LABELS, |record| &record.labels);
    let facts = AgentFacts {
        id: agent.map_or("", AgentId::as_str),
        labels,
    };
    let resources = service.resources_for(&facts)?;
    let digest = digest(&resources);
    Ok((Arc::new(resources), digest))
}

#[cfg(test)]
mod tests;
