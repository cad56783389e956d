//! Hosts asked of provisioners, and agents drained by hand. A provision
//! runs at most once: the leader commits that it starts before running the
//! command, and a later leader finding it started but unfinished marks it
//! `unknown` rather than run it again (that could make a second host).

use levee_common::ids::AgentId;

use super::ClusterState;
use super::command::Response;
use super::records::{Cause, DRAINED, ProvisionState};
use crate::engine::planner::Trigger;
use crate::state::Entry;
use crate::state::command as cmd;

impl ClusterState {
    /// Provisions waiting for the leader: pending ones to run, and running
    /// ones whose leader (an older term) can no longer finish them.
    pub fn provisions_to_handle(&self, term: u64) -> Vec<(String, bool)> {
        self.effects
            .provisions
            .values()
            .filter_map(|record| match record.state {
                ProvisionState::Pending => Some((record.id.clone(), true)),
                ProvisionState::Running { term: started, .. } if started < term => {
                    Some((record.id.clone(), false))
                }
                _ => None,
            })
            .collect()
    }

    pub(super) fn provision_started(&mut self, id: &str, term: u64, entry: &mut Entry) -> Response {
        match self.effects.provisions.get_mut(id) {
            Some(record) if record.state == ProvisionState::Pending => {
                record.state = ProvisionState::Running {
                    term,
                    started_ms: entry.at_ms,
                };
                Response::Nothing
            }
            Some(record) => Response::Rejected(cmd::Rejected {
                reason: format!("provision {id} is {:?}, not pending", record.state),
            }),
            None => Response::Rejected(cmd::Rejected {
                reason: format!("no provision {id}"),
            }),
        }
    }

    pub(super) fn provision_finished(
        &mut self,
        id: &str,
        result: Result<String, String>,
        entry: &mut Entry,
    ) -> Response {
        let Some(record) = self.effects.provisions.get_mut(id) else {
            return Response::Rejected(cmd::Rejected {
                reason: format!("no provision {id}"),
            });
        };
        record.state = match (&record.state, result) {
            (ProvisionState::Running { .. }, Ok(output)) => ProvisionState::Succeeded {
                finished_ms: entry.at_ms,
                output,
            },
            (ProvisionState::Running { .. }, Err(error)) => ProvisionState::Failed {
                finished_ms: entry.at_ms,
                error,
            },
            // Never started (its provisioner left the specs): nothing ran.
            (ProvisionState::Pending, Err(error)) => ProvisionState::Failed {
                finished_ms: entry.at_ms,
                error,
            },
            _ => return Response::Nothing,
        };
        Response::Nothing
    }

    /// A new leader found a provision started under an older term: its
    /// command's fate is unknown, and it is never run again.
    pub(super) fn provision_abandoned(
        &mut self,
        id: &str,
        term: u64,
        entry: &mut Entry,
    ) -> Response {
        let Some(record) = self.effects.provisions.get_mut(id) else {
            return Response::Nothing;
        };
        if let ProvisionState::Running { term: started, .. } = record.state
            && started < term
        {
            record.state = ProvisionState::Unknown {
                finished_ms: entry.at_ms,
                reason: format!(
                    "the leader of term {started} ran it and lost leadership before it finished; check whether the host was made"
                ),
            };
        }
        Response::Nothing
    }

    /// An operator settles a provision left `unknown` by a leader change.
    pub(super) fn provision_resolved(
        &mut self,
        id: &str,
        host_made: bool,
        by: &str,
        entry: &mut Entry,
    ) -> Response {
        let Some(record) = self.effects.provisions.get_mut(id) else {
            return Response::Rejected(cmd::Rejected {
                reason: format!("no provision {id} (see `levee provisions`)"),
            });
        };
        let ProvisionState::Unknown { reason, .. } = &record.state else {
            return Response::Rejected(cmd::Rejected {
                reason: format!(
                    "provision {id} is not unknown; only a provision a leader change left unknown is resolved by hand"
                ),
            });
        };
        let note = format!("{reason}; resolved by {by}");
        record.state = if host_made {
            ProvisionState::Succeeded {
                finished_ms: entry.at_ms,
                output: format!("{note}: the host was made"),
            }
        } else {
            ProvisionState::Failed {
                finished_ms: entry.at_ms,
                error: format!("{note}: no host was made"),
            }
        };
        Response::Nothing
    }

    /// An operator drains an agent (of one service, or everything).
    pub(super) fn drain(
        &mut self,
        entry: &mut Entry,
        agent_id: &AgentId,
        service: Option<&str>,
        by: &str,
    ) -> Response {
        if let Some(service) = service
            && !self.desired.specs.services.contains_key(service)
        {
            return Response::Rejected(cmd::Rejected {
                reason: format!(
                    "no service `{service}` in spec version {}",
                    self.desired.spec_version
                ),
            });
        }
        let Some(record) = self.fleet.agents.get_mut(agent_id) else {
            return Response::Rejected(cmd::Rejected {
                reason: format!("no agent {agent_id} (see `levee agents`)"),
            });
        };
        let what = service.unwrap_or(DRAINED);
        if !record.avoid.insert(what.to_owned()) {
            return Response::Drained(cmd::Drained { plan_id: None });
        }
        let reason = match service {
            Some(service) => format!("{service} moved off {agent_id} by {by}"),
            None => format!("{agent_id} drained by {by}"),
        };
        let plan_id = self.plan(entry, operator(reason), &Trigger::Reconcile);
        Response::Drained(cmd::Drained { plan_id })
    }

    /// An operator lets an agent take work again.
    pub(super) fn undrain(&mut self, entry: &mut Entry, agent_id: &AgentId, by: &str) -> Response {
        let Some(record) = self.fleet.agents.get_mut(agent_id) else {
            return Response::Rejected(cmd::Rejected {
                reason: format!("no agent {agent_id} (see `levee agents`)"),
            });
        };
        if std::mem::take(&mut record.avoid).is_empty() {
            return Response::Drained(cmd::Drained { plan_id: None });
        }
        let reason = format!("{agent_id} undrained by {by}");
        let plan_id = self.plan(entry, operator(reason), &Trigger::Reconcile);
        Response::Drained(cmd::Drained { plan_id })
    }
}

fn operator(reason: String) -> Cause {
    Cause {
        reason,
        event_id: None,
        rule: None,
        depth: 0,
    }
}
