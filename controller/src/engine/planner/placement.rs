//! Choosing agents for replicas. Pure and deterministic: every tie is
//! broken by agent id, and collections are ordered.
//!
//! Agents are addressed by their index in id order while placing, so the
//! bookkeeping per candidate is a vector access, not a map lookup: a full
//! placement of 100 services over 10,000 agents looks at a million
//! candidates.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use levee_common::ids::AgentId;
use levee_common::spec::{ResourceRequests, ServiceSpec};

use super::{PlanInput, target_of};
use crate::engine::fleet::AgentRecord;

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

/// Whether `agent` may run `service`: not lost, not drained of it, its
/// labels match the service's selector and its reported facts the
/// service's `facts`.
pub fn selects(service: &ServiceSpec, agent: &AgentRecord) -> bool {
    let placement = &service.placement;
    agent.takes(&service.name)
        && placement
            .selector
            .iter()
            .all(|(key, value)| agent.labels.get(key) == Some(value))
        && placement
            .facts
            .iter()
            .all(|(key, value)| agent.facts.get(key) == Some(value))
}

fn spread_value<'a>(service: &ServiceSpec, agent: &'a AgentRecord) -> &'a str {
    service
        .placement
        .spread
        .as_ref()
        .and_then(|label| agent.labels.get(label))
        .map_or("", String::as_str)
}

/// The placement being built: per agent (by index) what is used and how
/// many replicas it holds, and per service the indices it is placed on.
struct Board<'a> {
    agents: Vec<&'a AgentRecord>,
    usage: Vec<Usage>,
    load: Vec<usize>,
}

impl Board<'_> {
    fn fits(&self, at: usize, request: &ResourceRequests) -> bool {
        let used = self.usage[at];
        fits(self.agents[at], used.cpu_millis, used.memory_bytes, request)
    }

    fn add(&mut self, at: usize, request: &ResourceRequests) {
        let used = &mut self.usage[at];
        used.cpu_millis += u64::from(request.cpu_millis);
        used.memory_bytes = used
            .memory_bytes
            .saturating_add(request.memory_mb.saturating_mul(MIB));
        self.load[at] += 1;
    }

    fn remove(&mut self, at: usize, request: &ResourceRequests) {
        let used = &mut self.usage[at];
        used.cpu_millis = used
            .cpu_millis
            .saturating_sub(u64::from(request.cpu_millis));
        used.memory_bytes = used
            .memory_bytes
            .saturating_sub(request.memory_mb.saturating_mul(MIB));
        self.load[at] = self.load[at].saturating_sub(1);
    }
}

pub fn place(input: &PlanInput<'_>) -> Placed {
    let services = &input.specs.services;
    let ids: Vec<&AgentId> = input.agents.keys().collect();
    let index: HashMap<&AgentId, usize> =
        ids.iter().enumerate().map(|(at, id)| (*id, at)).collect();
    let mut board = Board {
        agents: input.agents.values().collect(),
        usage: vec![Usage::default(); ids.len()],
        load: vec![0; ids.len()],
    };
    let mut placed_at: BTreeMap<&String, BTreeSet<usize>> = BTreeMap::new();
    let mut problems = Vec::new();

    // Keep current placements that are still valid: the service and agent
    // exist, the selector matches, and the agent still has room.
    for (name, service) in services {
        let kept = placed_at.entry(name).or_default();
        for agent_id in input.placements.get(name).into_iter().flatten() {
            let Some(&at) = index.get(agent_id) else {
                continue;
            };
            let request = &service.placement.resources;
            if selects(service, board.agents[at]) && board.fits(at, request) {
                board.add(at, request);
                kept.insert(at);
            }
        }
    }

    for (name, service) in services {
        let request = &service.placement.resources;
        let target = target_of(service, input.targets) as usize;
        let placed = placed_at.entry(name).or_default();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for &at in placed.iter() {
            *counts
                .entry(spread_value(service, board.agents[at]))
                .or_default() += 1;
        }
        // Too many: take from the biggest spread group, then the most
        // loaded agent, then the highest id.
        while placed.len() > target {
            let Some(&victim) = placed.iter().max_by_key(|&&at| {
                let value = spread_value(service, board.agents[at]);
                (counts[value], board.load[at], at)
            }) else {
                break;
            };
            *counts
                .get_mut(spread_value(service, board.agents[victim]))
                .expect("counted above") -= 1;
            board.remove(victim, request);
            placed.remove(&victim);
        }
        if placed.len() >= target {
            continue;
        }
        // Too few: candidates grouped by spread value, least loaded first.
        let mut groups: BTreeMap<&str, BinaryHeap<Reverse<(usize, usize)>>> = BTreeMap::new();
        for at in 0..ids.len() {
            let agent = board.agents[at];
            if placed.contains(&at) || !selects(service, agent) || !board.fits(at, request) {
                continue;
            }
            groups
                .entry(spread_value(service, agent))
                .or_default()
                .push(Reverse((board.load[at], at)));
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
            let Some(Reverse((_, at))) = groups.get_mut(value).and_then(BinaryHeap::pop) else {
                break;
            };
            board.add(at, request);
            *counts.entry(value).or_default() += 1;
            placed.insert(at);
        }
        if placed.len() < target {
            problems.push(format!(
                "service `{name}`: placed {} of {target} replicas; no other agent matches its selector and has capacity",
                placed.len()
            ));
        }
    }
    let placements = placed_at
        .into_iter()
        .filter(|(_, agents)| !agents.is_empty())
        .map(|(name, agents)| {
            (
                name.clone(),
                agents.into_iter().map(|at| ids[at].clone()).collect(),
            )
        })
        .collect();
    Placed {
        placements,
        problems,
    }
}
