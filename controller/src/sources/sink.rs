//! Where every inbound source hands its events: committed through Raft
//! here when this node leads, else forwarded once to the leader. The
//! caller acknowledges its sender only after `submit` returns `Ok`.

use levee_common::pb::RaftPayload;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::raft::network::Network;
use crate::raft::proposer::{ProposeError, Proposer};
use crate::state::command as cmd;
use crate::state::inbound::{INBOUND_DEDUP_LIMIT, INBOUND_DEDUP_MS, InboundEvent, source_problem};

/// What the leader did with a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundOutcome {
    pub accepted: u32,
    pub duplicates: u32,
    /// Nothing was committed: the source remembers as many ids as it may
    /// (`INBOUND_DEDUP_LIMIT`). Carried in the outcome, not as an error,
    /// so a follower that forwarded the events learns it typed.
    #[serde(default)]
    pub at_limit: bool,
}

/// A submission forwarded from a follower to the leader.
#[derive(Debug, Serialize, Deserialize)]
pub struct Forwarded {
    pub source: String,
    pub events: Vec<InboundEvent>,
    /// Whether the source's endpoint may name hosts; a follower of the
    /// previous release does not say, and then it may not.
    #[serde(default)]
    pub names_hosts: bool,
}

/// Where inbound events come from: the source's name (`webhook/<endpoint>`,
/// `mqtt/<subscription>`) and whether its config lets its events name the
/// hosts rules act on (`may_name_hosts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub source: String,
    pub names_hosts: bool,
}

#[derive(Debug, Error)]
pub enum SubmitError {
    /// No leader is known (an election is running): the sender should retry.
    #[error("no leader is known yet; retry shortly")]
    NoLeader,
    #[error("the leader at {leader} did not take the events: {reason}")]
    Forward { leader: String, reason: String },
    #[error("the cluster did not commit the events: {0}")]
    Unavailable(String),
    #[error("refused: {0}")]
    Refused(String),
    /// The source's remembered ids are at their limit; the sender should
    /// retry once older ones expire.
    #[error(
        "`{origin}` remembers {limit} event ids from the last {minutes} minutes, its limit; \
         nothing was committed, retry later"
    )]
    AtLimit {
        origin: String,
        limit: usize,
        minutes: i64,
    },
}

#[derive(Clone)]
pub struct InboundSink {
    proposer: Proposer,
    network: Network,
}

impl InboundSink {
    pub fn new(proposer: Proposer, network: Network) -> Self {
        Self { proposer, network }
    }

    /// Commits `events` from `origin`; returns once they are committed
    /// (or known to be repeats).
    pub async fn submit(
        &self,
        origin: &Origin,
        events: Vec<InboundEvent>,
    ) -> Result<InboundOutcome, SubmitError> {
        let outcome = match commit(&self.proposer, origin, events.clone()).await {
            Err(SubmitError::Forward { leader, .. }) => self.forward(&leader, origin, events).await,
            other => other,
        }?;
        if outcome.at_limit {
            return Err(SubmitError::AtLimit {
                origin: origin.source.clone(),
                limit: INBOUND_DEDUP_LIMIT,
                minutes: INBOUND_DEDUP_MS / 60_000,
            });
        }
        Ok(outcome)
    }

    async fn forward(
        &self,
        leader: &str,
        origin: &Origin,
        events: Vec<InboundEvent>,
    ) -> Result<InboundOutcome, SubmitError> {
        let failed = |reason: String| SubmitError::Forward {
            leader: leader.to_owned(),
            reason,
        };
        let json = serde_json::to_vec(&Forwarded {
            source: origin.source.clone(),
            events,
            names_hosts: origin.names_hosts,
        })
        .map_err(|err| failed(err.to_string()))?;
        let mut client = self.network.client(leader).map_err(failed)?;
        let reply = client
            .record_inbound(RaftPayload {
                json,
                data: Vec::new(),
            })
            .await
            .map_err(|status| failed(status.message().to_owned()))?;
        let result: Result<InboundOutcome, String> =
            serde_json::from_slice(&reply.get_ref().json).map_err(|err| failed(err.to_string()))?;
        result.map_err(failed)
    }
}

/// Refuses a source that is not `webhook/<name>` or `mqtt/<name>`
/// (`state::inbound::source_problem`, which apply checks again).
pub fn check_source(source: &str) -> Result<(), SubmitError> {
    match source_problem(source) {
        Some(problem) => Err(SubmitError::Refused(problem)),
        None => Ok(()),
    }
}

/// Proposes the events on this node. A follower answers `Forward` with
/// the leader's address (and an empty reason) for the caller to follow.
/// An outcome `at_limit` is returned as such, for `submit` to refuse.
pub async fn commit(
    proposer: &Proposer,
    origin: &Origin,
    events: Vec<InboundEvent>,
) -> Result<InboundOutcome, SubmitError> {
    check_source(&origin.source)?;
    let record = cmd::RecordInbound {
        source: origin.source.clone(),
        events,
        at_ms: crate::clock::now_ms(),
        names_hosts: origin.names_hosts,
    };
    match proposer.propose_for(record).await {
        Ok((_, Ok(recorded))) => Ok(InboundOutcome {
            accepted: recorded.accepted,
            duplicates: recorded.duplicates,
            at_limit: recorded.at_limit,
        }),
        Ok((_, Err(reason))) => Err(SubmitError::Refused(reason)),
        Err(wrong @ ProposeError::WrongReply { .. }) => {
            Err(SubmitError::Unavailable(wrong.to_string()))
        }
        Err(ProposeError::NotLeader {
            leader_addr: Some(leader),
        }) => Err(SubmitError::Forward {
            leader,
            reason: String::new(),
        }),
        Err(ProposeError::NotLeader { leader_addr: None }) => Err(SubmitError::NoLeader),
        Err(ProposeError::Unavailable(reason)) => Err(SubmitError::Unavailable(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_webhook_and_mqtt_sources_come_from_outside() {
        for allowed in ["webhook/alertmanager", "mqtt/site-a"] {
            assert!(check_source(allowed).is_ok(), "{allowed}");
        }
        for refused in [
            "agent/edge-1",
            "controller",
            "webhook/",
            "mqtt",
            "timer/x",
            "",
        ] {
            assert!(
                matches!(check_source(refused), Err(SubmitError::Refused(_))),
                "{refused}"
            );
        }
    }
}
