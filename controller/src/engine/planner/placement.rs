//! Choosing agents for replicas. Pure and deterministic: every tie is
//! broken by agent id, and collections are ordered.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use levee_common::ids::AgentId;
use levee_common::spec::{ResourceRequests, ServiceSpec};

use super::{PlanInput, target_of};
use crate::state::records::AgentRecord;

const MIB: u64 = 1024 * 1024;

/// Placements after planning, and what could not be placed.
pub struct Placed {
    pub placements: BTreeMap<String, BTreeSet<AgentId>>,
    pub problems: Vec<String>,
}

/// What the replicas placed on one agent request in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    cpu_millis: u64,
    memory_bytes: u64,
}

/// Whether one more replica requesting `request` fits on `agent` given
/// what is placed there already. A zero request always fits.
pub fn fits(
    agent: &AgentRecord,
    used_cpu: u64,
    used_memory: u64,
    request: &ResourceRequests,
) -> bool {
    let cpu = u64::from(request.cpu_millis);
    let memory = request.memory_mb.saturating_mul(MIB);
    (cpu == 0 || used_cpu + cpu <= u64::from(agent.cpu_millis))
        && (memory == 0 || used_memory.saturating_add(memory) <= agent.memory_bytes)
}

pub fn selects(service: &ServiceSpec, agent: &AgentRecord) -> bool {
    service
        .placement
        .selector
        .iter()
        .all(|(key, value)| agent.labels.get(key) == Some(value))
}

fn spread_value<'a>(service: &ServiceSpec, agent: &'a AgentRecord) -> &'a str {
    service
        .placement
        .spread
        .as_ref()
        .and_then(|label| agent.labels.get(label))
        .map_or("", String::as_str)
}

pub fn place(input: &PlanInput<'_>) -> Placed {
    let services = &input.specs.services;
    let mut usage: BTreeMap<&AgentId, Usage> = BTreeMap::new();
    let mut load: BTreeMap<&AgentId, usize> = BTreeMap::new();
    let mut placements: BTreeMap<String, BTreeSet<AgentId>> = BTreeMap::new();
    let mut problems = Vec::new();

    // Keep current placements that are still valid: the service and agent
    // exist, the selector matches, and the agent still has room.
    for (name, service) in services {
        let kept = placements.entry(name.clone()).or_default();
        for agent_id in input.placements.get(name).into_iter().flatten() {
            let Some((agent_id, agent)) = input.agents.get_key_value(agent_id) else {
                continue;
            };
            let used = usage.entry(agent_id).or_default();
            if selects(service, agent)
                && fits(
                    agent,
                    used.cpu_millis,
                    used.memory_bytes,
                    &service.placement.resources,
                )
            {
                add_usage(used, &service.placement.resources);
                *load.entry(agent_id).or_default() += 1;
                kept.insert(agent_id.clone());
            }
        }
    }

    for (name, service) in services {
        let target = target_of(service, input.targets) as usize;
        let placed = placements.entry(name.clone()).or_default();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for agent_id in placed.iter() {
            *counts
                .entry(spread_value(service, &input.agents[agent_id]))
                .or_default() += 1;
        }
        // Too many: take from the biggest spread group, then the most
        // loaded agent, then the highest id.
        while placed.len() > target {
            let Some(victim) = placed
                .iter()
                .max_by_key(|agent_id| {
                    let value = spread_value(service, &input.agents[*agent_id]);
                    (
                        counts[value],
                        load.get(agent_id).copied().unwrap_or(0),
                        (*agent_id).clone(),
                    )
                })
                .cloned()
            else {
                break;
            };
            let (agent_id, agent) = input
                .agents
                .get_key_value(&victim)
                .expect("placed agents exist");
            *counts
                .get_mut(spread_value(service, agent))
                .expect("counted") -= 1;
            if let Some(used) = usage.get_mut(agent_id) {
                sub_usage(used, &service.placement.resources);
            }
            if let Some(count) = load.get_mut(agent_id) {
                *count -= 1;
            }
            placed.remove(&victim);
        }
        if placed.len() >= target {
            continue;
        }
        // Too few: candidates grouped by spread value, least loaded first.
        let mut groups: BTreeMap<&str, BinaryHeap<Reverse<(usize, &AgentId)>>> = BTreeMap::new();
        for (agent_id, agent) in input.agents {
            if placed.contains(agent_id) || !selects(service, agent) {
                continue;
            }
            let used = usage.get(agent_id).copied().unwrap_or_default();
            if !fits(
                agent,
                used.cpu_millis,
                used.memory_bytes,
                &service.placement.resources,
            ) {
                continue;
            }
            groups
                .entry(spread_value(service, agent))
                .or_default()
                .push(Reverse((
                    load.get(agent_id).copied().unwrap_or(0),
                    agent_id,
                )));
        }
        while placed.len() < target {
            // The spread value with the fewest replicas that has a candidate.
            let Some(value) = groups
                .iter()
                .filter(|(_, heap)| !heap.is_empty())
                .min_by_key(|(value, _)| (counts.get(*value).copied().unwrap_or(0), **value))
                .map(|(value, _)| *value)
            else {
                break;
            };
            let Some(Reverse((_, agent_id))) = groups.get_mut(value).and_then(BinaryHeap::pop)
            else {
                break;
            };
            add_usage(
                usage.entry(agent_id).or_default(),
                &service.placement.resources,
            );
            *load.entry(agent_id).or_default() += 1;
            *counts.entry(value).or_default() += 1;
            placed.insert(agent_id.clone());
        }
        if placed.len() < target {
            problems.push(format!(
                "service `{name}`: placed {} of {target} replicas; no other agent matches its selector and has capacity",
                placed.len()
            ));
        }
    }
    placements.retain(|_, agents| !agents.is_empty());
    Placed {
        placements,
        problems,
    }
}

fn add_usage(used: &mut Usage, request: &ResourceRequests) {
    used.cpu_millis += u64::from(request.cpu_millis);
    used.memory_bytes = used
        .memory_bytes
        .saturating_add(request.memory_mb.saturating_mul(MIB));
}

fn sub_usage(used: &mut Usage, request: &ResourceRequests) {
    used.cpu_millis = used
        .cpu_millis
        .saturating_sub(u64::from(request.cpu_millis));
    used.memory_bytes = used
        .memory_bytes
        .saturating_sub(request.memory_mb.saturating_mul(MIB));
}
