//! The AgentLink service: one long-lived session per agent.
//!
//! Events are acknowledged only after their batch is committed through
//! Raft; task reports are committed before anything else happens to them.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use levee_common::event::Event;
use levee_common::identity::Identity;
use levee_common::ids::AgentId;
use levee_common::pb::agent_link_server::AgentLink;
use levee_common::pb::{self, AgentMessage, ControllerMessage, agent_message, controller_message};
use levee_common::refusals::RefusalLog;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use super::auth::caller;
use super::error::ApiError;
use super::refusals::{AGENT_LINK, refuse};
use crate::clock::now_ms;
use crate::convert::task_report;
use crate::leader::sessions::{Outbound, SessionGuard, Sessions};
use crate::raft::proposer::Proposer;
use crate::state::agents::{MAX_LABELS, label_problem};
use crate::state::command as cmd;
use crate::state::command::Command;

/// How long an agent has to say hello after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest event batch accepted in one message.
pub const MAX_EVENTS_PER_BATCH: usize = 1000;
/// Messages queued toward one agent before the dispatcher backs off.
const OUTBOUND_QUEUE: usize = 256;
/// Heartbeat interval the controller asks agents to keep.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

pub struct AgentLinkService {
    pub node_id: u64,
    pub proposer: Proposer,
    pub sessions: Sessions,
    pub shutdown: CancellationToken,
    /// Refused hellos and events, counted and logged once a minute per
    /// agent and reason.
    pub refusals: Arc<RefusalLog>,
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentLink for AgentLinkService {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        let identity = caller(&request)?;
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(AgentMessage {
                body: Some(agent_message::Body::Hello(hello)),
            }))) => hello,
            Ok(Ok(_)) => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be a hello",
                ));
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => {
                return Err(Status::deadline_exceeded(
                    "no hello within 10 s of connecting",
                ));
            }
        };
        if hello.agent_id != identity.name {
            let reason = format!(
                "this certificate belongs to agent `{}`, but the hello names `{}`",
                identity.name, hello.agent_id
            );
            refuse(
                &self.refusals,
                &identity.name,
                AGENT_LINK,
                "another_agent",
                &reason,
            );
            return Err(ApiError::PermissionDenied(reason).into());
        }
        if identity.name == crate::state::hosts::CONTROLLER_SOURCE {
            // The controllers' own events are keyed by this name.
            let reason = format!(
                "`{}` is reserved for events the controllers raise; issue this host a certificate with another name",
                crate::state::hosts::CONTROLLER_SOURCE
            );
            refuse(
                &self.refusals,
                &identity.name,
                AGENT_LINK,
                "reserved_name",
                &reason,
            );
            return Err(ApiError::PermissionDenied(reason).into());
        }
        let term = self
            .proposer
            .leader_term()
            .ok_or_else(|| self.not_leader())?;
        if hello.highest_term_seen > term {
            // The agent has seen a newer leader than us: we are stale.
            return Err(ApiError::NotLeader { leader_addr: None }.into());
        }
        let agent_id = AgentId::new(identity.name.clone());
        let span = info_span!("agent_session", %agent_id, boot_epoch = hello.boot_epoch);
        // A hello that commits but whose session never registers (the
        // stream dropped meanwhile) must still reach the lost monitor,
        // which wakes on session changes: report an attempt that ends.
        let _attempt = self.sessions.attempt();
        self.register(&agent_id, &hello)
            .instrument(span.clone())
            .await?;

        let (outbound, receiver) = mpsc::channel(OUTBOUND_QUEUE);
        let (controller_names, leader_name) =
            crate::raft::node::names_for_agents(self.proposer.raft(), self.node_id);
        let welcome = pb::Welcome {
            controller_node_id: self.node_id,
            term,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL.as_millis() as u32,
            controller_names,
            leader_name,
        };
        outbound
            .send(Ok(ControllerMessage {
                body: Some(controller_message::Body::Welcome(welcome)),
            }))
            .await
            .map_err(|_| Status::cancelled("session closed during hello"))?;
        let cancel = self.shutdown.child_token();
        let guard = self
            .sessions
            .register(agent_id.clone(), outbound.clone(), cancel.clone());
        // Leadership may have moved while the hello was committed; a session
        // registered after the dispatcher closed them all would linger here.
        if self.proposer.leader_term() != Some(term) {
            return Err(self.not_leader());
        }
        info!(parent: &span, term, "agent session opened");
        let session = Session {
            agent_id,
            identity,
            refusals: self.refusals.clone(),
            proposer: self.proposer.clone(),
            outbound,
            _guard: guard,
        };
        tokio::spawn(session.run(inbound, cancel).instrument(span));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

impl AgentLinkService {
    fn not_leader(&self) -> Status {
        ApiError::NotLeader {
            leader_addr: self.proposer.leader_addr(),
        }
        .into()
    }

    async fn register(&self, agent_id: &AgentId, hello: &pb::Hello) -> Result<(), Status> {
        let capacity = hello.capacity.unwrap_or_default();
        let command = Command::AgentHello(cmd::AgentHello {
            agent_id: agent_id.clone(),
            boot_epoch: hello.boot_epoch,
            // What the agent says of itself is a fact, never a label:
            // labels decide what it runs and are the cluster's to give.
            labels: Default::default(),
            facts: bounded_facts(&hello.labels),
            cpu_millis: capacity.cpu_millis,
            memory_bytes: capacity.memory_bytes,
            highest_term_seen: hello.highest_term_seen,
            at_ms: now_ms(),
        });
        self.proposer
            .propose(command)
            .await
            .map_err(ApiError::from)?;
        Ok(())
    }
}

/// One agent's session: reads its messages and commits what they say.
struct Session {
    agent_id: AgentId,
    identity: Identity,
    refusals: Arc<RefusalLog>,
    proposer: Proposer,
    outbound: Outbound,
    _guard: SessionGuard,
}

impl Session {
    async fn run(self, mut inbound: Streaming<AgentMessage>, shutdown: CancellationToken) {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                message = inbound.message() => message,
            };
            let result = match message {
                Ok(Some(AgentMessage { body: Some(body) })) => self.handle(body).await,
                Ok(Some(AgentMessage { body: None })) => {
                    Err(Status::invalid_argument("empty message"))
                }
                Ok(None) => break,
                Err(status) => {
                    debug!(%status, "agent stream ended with an error");
                    break;
                }
            };
            if let Err(status) = result {
                warn!(%status, "closing agent session");
                let _ = self.outbound.try_send(Err(status));
                break;
            }
        }
        info!(caller = %self.identity, "agent session closed");
    }

    async fn handle(&self, body: agent_message::Body) -> Result<(), Status> {
        match body {
            agent_message::Body::Hello(_) => Err(Status::invalid_argument("hello sent twice")),
            agent_message::Body::Events(batch) => self.record_events(batch).await,
            agent_message::Body::Heartbeat(_) => {
                // A deposed leader sends the agent on its way within one
                // heartbeat, whatever else happened to its sessions.
                if self.proposer.leader_term().is_none() {
                    return Err(ApiError::NotLeader {
                        leader_addr: self.proposer.leader_addr(),
                    }
                    .into());
                }
                let beat = pb::Heartbeat {
                    sent_unix_ms: now_ms(),
                };
                let _ = self.outbound.try_send(Ok(ControllerMessage {
                    body: Some(controller_message::Body::Heartbeat(beat)),
                }));
                Ok(())
            }
            agent_message::Body::TaskUpdate(update) => self.record_task_update(update).await,
        }
    }

    async fn record_events(&self, batch: pb::EventBatch) -> Result<(), Status> {
        if batch.events.len() > MAX_EVENTS_PER_BATCH {
            return Err(Status::invalid_argument(format!(
                "batch of {} events exceeds the limit of {MAX_EVENTS_PER_BATCH}",
                batch.events.len()
            )));
        }
        let events = batch
            .events
            .into_iter()
            .map(|wire| Event::from_wire(&self.agent_id, wire))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        let first_id = events.first().map(Event::id).unwrap_or_default();
        let record = cmd::RecordEvents {
            agent_id: self.agent_id.clone(),
            events,
            at_ms: now_ms(),
            strict: true,
        };
        let (log_id, recorded) = self
            .proposer
            .propose_for(record)
            .await
            .map_err(ApiError::from)?;
        let cmd::EventsRecorded {
            accepted,
            duplicates,
            acks,
            refused,
            refusal,
        } = recorded.map_err(ApiError::FailedPrecondition)?;
        debug!(first_event = %first_id, log_index = log_id.index, accepted, duplicates, "events committed");
        if refused > 0 {
            // Acknowledged all the same: the agent's outbox must move on.
            // Each event is counted by the state (levee_events_refused_total).
            refuse(
                &self.refusals,
                &self.identity.name,
                AGENT_LINK,
                "reserved_type",
                refusal.as_deref().unwrap_or(""),
            );
        }
        for (boot_epoch, up_to_seq) in acks {
            let ack = pb::EventAck {
                boot_epoch,
                up_to_seq,
            };
            self.outbound
                .send(Ok(ControllerMessage {
                    body: Some(controller_message::Body::EventAck(ack)),
                }))
                .await
                .map_err(|_| Status::cancelled("session closed"))?;
        }
        Ok(())
    }

    async fn record_task_update(&self, update: pb::TaskUpdate) -> Result<(), Status> {
        let report = task_report(update).map_err(Status::invalid_argument)?;
        let state = report.state;
        let task_id = report.task_id.clone();
        self.proposer
            .propose(Command::RecordTaskReport(cmd::RecordTaskReport {
                agent_id: self.agent_id.clone(),
                report,
            }))
            .await
            .map_err(ApiError::from)?;
        info!(%task_id, state = state.as_str(), "task report committed");
        Ok(())
    }
}

/// What an agent reports about itself, within the limits labels have
/// (count, key and value size, no control characters): a fact breaking
/// them is dropped, not the hello, so the agent still connects.
fn bounded_facts(
    reported: &std::collections::HashMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    let mut facts: std::collections::BTreeMap<String, String> = reported
        .iter()
        .filter(|(key, value)| label_problem(key, value).is_none())
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    while facts.len() > MAX_LABELS {
        facts.pop_last();
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_beyond_the_label_limits_are_dropped_not_the_hello() {
        let mut reported: std::collections::HashMap<String, String> = (0..100)
            .map(|n| (format!("k{n:03}"), "v".to_owned()))
            .collect();
        reported.insert("bad key".into(), "x".into());
        reported.insert("huge".into(), "v".repeat(10_000));
        let facts = bounded_facts(&reported);
        assert_eq!(facts.len(), MAX_LABELS);
        assert!(!facts.contains_key("bad key") && !facts.contains_key("huge"));
        assert!(facts.contains_key("k000"));
    }
}
