//! One session with one controller.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use levee_common::pb::agent_link_client::AgentLinkClient;
use levee_common::pb::{self, AgentMessage, agent_message, controller_message};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tonic::{Status, Streaming};
use tracing::{debug, info};

use super::Link;
use crate::store::StoreError;
use crate::task::Task;
use crate::util::blocking;

/// A controller that sends nothing for this many heartbeat intervals is
/// presumed gone.
const MISSED_HEARTBEATS: u32 = 3;
/// Batches sent but not yet acknowledged, at most.
const MAX_BATCHES_IN_FLIGHT: usize = 4;
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
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|err| SessionError::Protocol(format!("bad controller address `{addr}`: {err}")))?
        .tls_config(link.tls.client_config())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect()
        .await?;
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
    info!(controller = %addr, node = welcome.controller_node_id, term = welcome.term, "session open");
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
        let events = blocking(move || outbox.read_after(cursor, limit)).await?;
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
