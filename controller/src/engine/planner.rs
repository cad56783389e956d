//! The planner: a pure, deterministic function from desired state, actual
//! state and a trigger to the steps that converge them.

use std::collections::{BTreeMap, BTreeSet};

use levee_common::ids::AgentId;
use levee_common::resource::Resource;
use levee_common::spec::{ServiceSpec, SpecSet};

use crate::state::records::AgentRecord;

/// What the planner reads.
pub struct PlanInput<'a> {
    pub specs: &'a SpecSet,
    pub agents: &'a BTreeMap<AgentId, AgentRecord>,
    /// Which agents each service is placed on.
    pub placements: &'a BTreeMap<String, BTreeSet<AgentId>>,
}

/// Why we are planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Desired state or the set of agents changed: place what is short of
    /// replicas, and converge again every service whose spec changed.
    Reconcile { changed_services: BTreeSet<String> },
    /// Converge `service` again on `agent` (its workload failed there).
    Repair { service: String, agent: AgentId },
}

/// One agent's part of a plan: converge one service's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub agent: AgentId,
    pub service: String,
    pub resources: Vec<Resource>,
}

/// The planner's answer: placements after the plan, and steps in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub placements: BTreeMap<String, BTreeSet<AgentId>>,
    pub steps: Vec<Step>,
}

pub fn plan(input: &PlanInput<'_>, trigger: &Trigger) -> Draft {
    match trigger {
        Trigger::Reconcile { changed_services } => reconcile(input, changed_services),
        Trigger::Repair { service, agent } => repair(input, service, agent),
    }
}

fn reconcile(input: &PlanInput<'_>, changed_services: &BTreeSet<String>) -> Draft {
    // Services no longer declared lose their placement.
    let mut placements: BTreeMap<String, BTreeSet<AgentId>> = input
        .placements
        .iter()
        .filter(|(service, _)| input.specs.services.contains_key(*service))
        .map(|(service, agents)| (service.clone(), agents.clone()))
        .collect();
    let mut steps = Vec::new();
    for (name, service) in &input.specs.services {
        let placed = placements.entry(name.clone()).or_default();
        placed.retain(|agent| {
            input
                .agents
                .get(agent)
                .is_some_and(|record| selects(service, record))
        });
        let before = placed.clone();
        let wanted = service.replicas as usize;
        if placed.len() < wanted {
            let mut candidates: Vec<&AgentRecord> = input
                .agents
                .values()
                .filter(|record| !placed.contains(&record.agent_id) && selects(service, record))
                .collect();
            // Spread: least loaded first, then by name for determinism.
            candidates.sort_by_key(|record| {
                (
                    load(input.placements, &record.agent_id),
                    record.agent_id.clone(),
                )
            });
            placed.extend(
                candidates
                    .into_iter()
                    .take(wanted - placed.len())
                    .map(|record| record.agent_id.clone()),
            );
        }
        for agent in placed.iter() {
            if !before.contains(agent) || changed_services.contains(name) {
                steps.push(Step {
                    agent: agent.clone(),
                    service: name.clone(),
                    resources: service.resources(),
                });
            }
        }
    }
    Draft { placements, steps }
}

fn repair(input: &PlanInput<'_>, service: &str, agent: &AgentId) -> Draft {
    let placements = input.placements.clone();
    let steps = match input.specs.services.get(service) {
        Some(spec)
            if placements
                .get(service)
                .is_some_and(|agents| agents.contains(agent)) =>
        {
            vec![Step {
                agent: agent.clone(),
                service: service.to_owned(),
                resources: spec.resources(),
            }]
        }
        _ => Vec::new(),
    };
    Draft { placements, steps }
}

fn selects(service: &ServiceSpec, agent: &AgentRecord) -> bool {
    service
        .selector
        .iter()
        .all(|(key, value)| agent.labels.get(key) == Some(value))
}

fn load(placements: &BTreeMap<String, BTreeSet<AgentId>>, agent: &AgentId) -> usize {
    placements
        .values()
        .filter(|agents| agents.contains(agent))
        .count()
}

#[cfg(test)]
mod tests;
