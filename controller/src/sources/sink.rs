//! Where every inbound source hands its events: committed through Raft
//! here when this node leads, else forwarded once to the leader. The
//! caller acknowledges its sender only after `submit` returns `Ok`.

use levee_common::pb::RaftPayload;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::raft::network::Network;
use crate::raft::proposer::{ProposeError, Proposer};
use crate::state::command as cmd;
use crate::state::inbound::InboundEvent;

/// What the leader did with a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundOutcome {
    pub accepted: u32,
    pub duplicates: u32,
}

/// A submission forwarded from a follower to the leader.
#[derive(Debug, Serialize, Deserialize)]
pub struct Forwarded {
    pub source: String,
    pub events: Vec<InboundEvent>,
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

    /// Commits `events` from `source`; returns once they are committed
    /// (or known to be repeats).
    pub async fn submit(
        &self,
        source: &str,
        events: Vec<InboundEvent>,
    ) -> Result<InboundOutcome, SubmitError> {
        match commit(&self.proposer, source, events.clone()).await {
            Err(SubmitError::Forward { leader, .. }) => self.forward(&leader, source, events).await,
            other => other,
        }
    }

    async fn forward(
        &self,
        leader: &str,
        source: &str,
        events: Vec<InboundEvent>,
    ) -> Result<InboundOutcome, SubmitError> {
        let failed = |reason: String| SubmitError::Forward {
            leader: leader.to_owned(),
            reason,
        };
        let json = serde_json::to_vec(&Forwarded {
            source: source.to_owned(),
            events,
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

/// The sources events from outside may carry: a webhook endpoint or an
/// MQTT subscription. Anything else (`agent/...`, the controllers' own)
/// would let a forwarded call speak for someone else.
const INBOUND_SOURCE_PREFIXES: [&str; 2] = ["webhook/", "mqtt/"];

/// Refuses a source that is not `webhook/<name>` or `mqtt/<name>`.
pub fn check_source(source: &str) -> Result<(), SubmitError> {
    let named = INBOUND_SOURCE_PREFIXES.iter().any(|prefix| {
        source
            .strip_prefix(prefix)
            .is_some_and(|name| !name.is_empty())
    });
    if named {
        Ok(())
    } else {
        Err(SubmitError::Refused(format!(
            "`{source}` is not a source of events from outside (`webhook/<name>` or `mqtt/<name>`)"
        )))
    }
}

/// Proposes the events on this node. A follower answers `Forward` with
/// the leader's address (and an empty reason) for the caller to follow.
pub async fn commit(
    proposer: &Proposer,
    source: &str,
    events: Vec<InboundEvent>,
) -> Result<InboundOutcome, SubmitError> {
    check_source(source)?;
    let record = cmd::RecordInbound {
        source: source.to_owned(),
        events,
        at_ms: crate::clock::now_ms(),
    };
    match proposer.propose_for(record).await {
        Ok((_, Ok(recorded))) => Ok(InboundOutcome {
            accepted: recorded.accepted,
            duplicates: recorded.duplicates,
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
