//! One session with one controller.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use levee_common::pb::agent_link_client::AgentLinkClient;
use levee_common::pb::{self, AgentMessage, agent_message, controller_message};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Status, Streaming};
use tracing::{debug, info};

use super::Link;
use super::connect::connect;
use super::verifier::{MemberVerifier, Seen};
use crate::store::StoreError;
use crate::task::Task;
use crate::util::blocking;

/// A controller that sends nothing for this many heartbeat intervals is
/// presumed gone.
const MISSED_HEARTBEATS: u32 = 3;
/// Batches sent but not yet acknowledged, at most.
const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Most bytes of events in one batch: far below the controllers' 4 MiB
/// message limit, so events gathered offline (up to 64 KiB each) go out
/// in several batches instead of one the controller must refuse.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub enum SessionEnd {
    Shutdown,
    Closed,
}

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("not the leader; the leader is at {0}")]
    Redirect(String),
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The controller is not one this agent accepts (not a member, or not
    /// the leader it names); already counted and logged.
    #[error("refused the controller: {0}")]
    Refused(String),
    #[error("{0}")]
    Status(Status),
    #[error("the controller sent nothing for {0:?}")]
    Silent(Duration),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Status> for SessionError {
    fn from(status: Status) -> Self {
        match pb::leader_hint(&status) {
            Some(leader) => SessionError::Redirect(leader),
            None => SessionError::Status(status),
        }
    }
}

pub async fn run(
    link: &mut Link,
    addr: &str,
    shutdown: &CancellationToken,
) -> Result<SessionEnd, SessionError> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let channel = connect_verified(link, addr, &seen).await?;
    let (outbound, receiver) = mpsc::channel::<AgentMessage>(64);
    let hello = pb::Hello {
        agent_id: link.agent_id.clone(),
        boot_epoch: link.outbox.boot_epoch(),
        labels: link.config.labels.clone().into_iter().collect(),
        capacity: Some(host_capacity()),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        highest_term_seen: link.journal.highest_term()?,
    };
    send(&outbound, agent_message::Body::Hello(hello)).await?;
    let mut inbound = AgentLinkClient::new(channel)
        .session(ReceiverStream::new(receiver))
        .await?
        .into_inner();
    let welcome = match tokio::time::timeout(CONNECT_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(pb::ControllerMessage {
            body: Some(controller_message::Body::Welcome(welcome)),
        }))) => welcome,
        Ok(Ok(_)) => {
            return Err(SessionError::Protocol(
                "the controller did not answer hello with welcome".into(),
            ));
        }
        Ok(Err(status)) => return Err(status.into()),
        Err(_) => return Err(SessionError::Protocol("no welcome within 5 s".into())),
    };
    let name = take_seen(&seen)
        .name
        .ok_or_else(|| SessionError::Protocol("the handshake named no controller".into()))?;
    if let Err(refused) = link.trust.check_welcome(addr, &name, &welcome).await? {
        return Err(SessionError::Refused(refused.detail));
    }
    info!(controller = %addr, %name, node = welcome.controller_node_id, term = welcome.term, "session open");
    // Only the leader welcomes: a follower redirects instead. Cleared by
    // `Link::run` when the session ends.
    link.connected.store(true, Ordering::Relaxed);
    let heartbeat = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(100)));
    Session {
        link,
        outbound,
        cursor: None,
        in_flight: VecDeque::new(),
        last_heard: Instant::now(),
        heartbeat,
    }
    .run(&mut inbound, shutdown)
    .await
}

/// Connects to `addr`, accepting only a controller [`MemberVerifier`]
/// passes; a refusal is counted and logged, then returned.
async fn connect_verified(
    link: &Link,
    addr: &str,
    seen: &Arc<Mutex<Seen>>,
) -> Result<Channel, SessionError> {
    let tls_error = |err: levee_common::tls::TlsError| SessionError::Protocol(err.to_string());
    let verifier = MemberVerifier::new(
        link.tls.webpki_server_verifier().map_err(tls_error)?,
        link.trust.accepted().await?,
        seen.clone(),
    );
    let tls = link
        .tls
        .rustls_client_config(Arc::new(verifier))
        .map_err(tls_error)?;
    match connect(addr, Arc::new(tls), CONNECT_TIMEOUT).await {
        Ok(channel) => Ok(channel),
        Err(err) => match take_seen(seen).refused {
            Some(refused) => {
                link.trust.refuse(addr, &refused);
                Err(SessionError::Refused(refused.detail))
            }
            None => Err(err.into()),
        },
    }
}

fn take_seen(seen: &Mutex<Seen>) -> Seen {
    std::mem::take(&mut *seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

struct Session<'a> {
    link: &'a mut Link,
    outbound: mpsc::Sender<AgentMessage>,
    /// Key of the last event sent on this session.
    cursor: Option<(u64, u64)>,
    /// Last key of each batch sent and not yet acknowledged.
    in_flight: VecDeque<(u64, u64)>,
    last_heard: Instant,
    heartbeat: Duration,
}

impl Session<'_> {
    async fn run(
        mut self,
        inbound: &mut Streaming<pb::ControllerMessage>,
        shutdown: &CancellationToken,
    ) -> Result<SessionEnd, SessionError> {
        let mut ticker = tokio::time::interval(self.heartbeat);
        loop {
            self.send_events().await?;
            let outbox = self.link.outbox.clone();
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
                message = inbound.message() => match message? {
                    Some(message) => self.on_message(message).await?,
                    None => return Ok(SessionEnd::Closed),
                },
                _ = outbox.appended(), if self.in_flight.len() < MAX_BATCHES_IN_FLIGHT => {}
                Some(update) = self.link.updates.recv() => {
                    debug!(task_id = %update.task_id, "reporting task outcome");
                    send(&self.outbound, agent_message::Body::TaskUpdate(update.into())).await?;
                }
                _ = ticker.tick() => self.on_tick().await?,
            }
        }
    }

    /// Sends the next batch from the outbox, if the window allows.
    async fn send_events(&mut self) -> Result<(), SessionError> {
        if self.in_flight.len() >= MAX_BATCHES_IN_FLIGHT {
            return Ok(());
        }
        let outbox = self.link.outbox.clone();
        let (cursor, limit) = (self.cursor, self.link.config.link.batch_max_events);
        let events = blocking(move || outbox.read_batch(cursor, limit, MAX_BATCH_BYTES)).await?;
        let Some(last) = events.last() else {
            return Ok(());
        };
        let key = (last.boot_epoch, last.seq);
        debug!(count = events.len(), up_to = ?key, "sending events");
        send(
            &self.outbound,
            agent_message::Body::Events(pb::EventBatch { events }),
        )
        .await?;
        self.cursor = Some(key);
        self.in_flight.push_back(key);
        Ok(())
    }

    async fn on_message(&mut self, message: pb::ControllerMessage) -> Result<(), SessionError> {
        self.last_heard = Instant::now();
        match message.body {
            Some(controller_message::Body::EventAck(ack)) => {
                let outbox = self.link.outbox.clone();
                blocking(move || outbox.acknowledge(ack.boot_epoch, ack.up_to_seq)).await?;
                while self
                    .in_flight
                    .front()
                    .is_some_and(|key| *key <= (ack.boot_epoch, ack.up_to_seq))
                {
                    self.in_flight.pop_front();
                }
            }
            Some(controller_message::Body::Task(task)) => {
                debug!(task_id = %task.task_id, term = task.term, "task received");
                self.link
                    .tasks
                    .send(Task::from(task))
                    .map_err(|_| SessionError::Protocol("the applier stopped".into()))?;
            }
            Some(controller_message::Body::Heartbeat(_)) => {}
            Some(controller_message::Body::Welcome(_)) => {
                return Err(SessionError::Protocol("a second welcome".into()));
            }
            None => return Err(SessionError::Protocol("an empty message".into())),
        }
        Ok(())
    }

    async fn on_tick(&mut self) -> Result<(), SessionError> {
        let silent = self.last_heard.elapsed();
        if silent > self.heartbeat * MISSED_HEARTBEATS {
            return Err(SessionError::Silent(silent));
        }
        send(
            &self.outbound,
            agent_message::Body::Heartbeat(pb::Heartbeat {
                sent_unix_ms: crate::clock::now_ms(),
            }),
        )
        .await
    }
}

async fn send(
    outbound: &mpsc::Sender<AgentMessage>,
    body: agent_message::Body,
) -> Result<(), SessionError> {
    outbound
        .send(AgentMessage { body: Some(body) })
        .await
        .map_err(|_| SessionError::Protocol("the stream closed".into()))
}

/// What this host offers, from the kernel's view.
fn host_capacity() -> pb::Capacity {
    let cpus = std::thread::available_parallelism().map_or(1, |count| count.get() as u32);
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| {
            let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024);
    pb::Capacity {
        cpu_millis: cpus * 1000,
        memory_bytes,
    }
}
