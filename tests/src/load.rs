//! Simulated agents: real mTLS gRPC sessions that stream events the way
//! `levee-agent` does (sequence numbers per boot epoch, resend from the
//! last acknowledgement after a reconnect, follow leader hints). A load
//! process can hold many of them, as a fleet would.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use levee_common::identity::CONTROLLER_SERVER_NAME;
use levee_common::pb::agent_link_client::AgentLinkClient;
use levee_common::pb::{self, AgentMessage, agent_message, controller_message, leader_hint};
use levee_common::tls::TlsFiles;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// What one simulated agent achieved.
#[derive(Debug, Clone, Default)]
pub struct AgentReport {
    pub agent_id: String,
    /// Every event with seq <= this was acknowledged.
    pub acked_up_to: u64,
    /// Times a session failed and was reopened.
    pub reconnects: u32,
    /// The longest time without any acknowledgement while events waited.
    pub longest_ack_gap: Duration,
}

/// One simulated agent sending `total` events in batches of `batch`.
pub struct SimulatedAgent {
    pub agent_id: String,
    pub tls: TlsFiles,
    pub controllers: Vec<String>,
    pub total: u64,
    pub batch: u64,
    /// Pause between batches, to spread load over time.
    pub pace: Duration,
}

impl SimulatedAgent {
    /// Runs until every event is acknowledged or `deadline` passes.
    pub async fn run(self, deadline: Duration) -> AgentReport {
        let started = Instant::now();
        let mut report = AgentReport {
            agent_id: self.agent_id.clone(),
            ..AgentReport::default()
        };
        let mut last_ack = Instant::now();
        let mut target = 0usize;
        let mut hint: Option<String> = None;
        while report.acked_up_to < self.total && started.elapsed() < deadline {
            let addr = hint.take().unwrap_or_else(|| {
                target += 1;
                self.controllers[target % self.controllers.len()].clone()
            });
            match self
                .session(&addr, &mut report, &mut last_ack, started, deadline)
                .await
            {
                Ok(()) => {}
                Err(Some(leader)) => {
                    hint = Some(leader);
                    continue;
                }
                Err(None) => report.reconnects += 1,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        report
    }

    /// One session; Err(Some(addr)) is a leader redirect.
    async fn session(
        &self,
        addr: &str,
        report: &mut AgentReport,
        last_ack: &mut Instant,
        started: Instant,
        deadline: Duration,
    ) -> Result<(), Option<String>> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.tls.ca)))
            .domain_name(CONTROLLER_SERVER_NAME)
            .identity(Identity::from_pem(
                read(&self.tls.cert),
                read(&self.tls.key),
            ));
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|_| None)?
            .tls_config(tls)
            .map_err(|_| None)?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|_| None)?;
        let (tx, rx) = mpsc::channel(16);
        let hello = pb::Hello {
            agent_id: self.agent_id.clone(),
            boot_epoch: 1,
            ..Default::default()
        };
        tx.send(AgentMessage {
            body: Some(agent_message::Body::Hello(hello)),
        })
        .await
        .map_err(|_| None)?;
        let mut inbound = match AgentLinkClient::new(channel)
            .session(ReceiverStream::new(rx))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(leader_hint(&status).filter(|leader| leader != addr)),
        };
        let mut next_seq = report.acked_up_to + 1;
        let mut in_flight: VecDeque<u64> = VecDeque::new();
        loop {
            if started.elapsed() > deadline {
                return Ok(());
            }
            while in_flight.len() < 4 && next_seq <= self.total {
                let last = (next_seq + self.batch - 1).min(self.total);
                let events = (next_seq..=last).map(event).collect();
                tx.send(AgentMessage {
                    body: Some(agent_message::Body::Events(pb::EventBatch { events })),
                })
                .await
                .map_err(|_| None)?;
                in_flight.push_back(last);
                next_seq = last + 1;
                if !self.pace.is_zero() {
                    tokio::time::sleep(self.pace).await;
                }
            }
            if report.acked_up_to >= self.total {
                return Ok(());
            }
            let message = tokio::time::timeout(Duration::from_secs(5), inbound.message()).await;
            match message {
                Ok(Ok(Some(pb::ControllerMessage {
                    body: Some(controller_message::Body::EventAck(ack)),
                }))) => {
                    let gap = last_ack.elapsed();
                    report.longest_ack_gap = report.longest_ack_gap.max(gap);
                    *last_ack = Instant::now();
                    report.acked_up_to = report.acked_up_to.max(ack.up_to_seq);
                    while in_flight.front().is_some_and(|last| *last <= ack.up_to_seq) {
                        in_flight.pop_front();
                    }
                }
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => return Err(None),
                Ok(Err(status)) => return Err(leader_hint(&status).filter(|leader| leader != addr)),
                Err(_) => return Err(None),
            }
        }
    }
}

fn event(seq: u64) -> pb::Event {
    pb::Event {
        id: String::new(),
        boot_epoch: 1,
        seq,
        r#type: "load.tick".into(),
        subject: "load".into(),
        time_unix_ms: 1,
        data_json: format!("{{\"seq\":{seq}}}"),
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// Runs a fleet of simulated agents to completion on a runtime of its own
/// and returns their reports, in order.
pub fn run_fleet(agents: Vec<SimulatedAgent>, deadline: Duration) -> Vec<AgentReport> {
    levee_common::tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("load runtime");
    runtime.block_on(async {
        let handles: Vec<_> = agents
            .into_iter()
            .map(|agent| tokio::spawn(agent.run(deadline)))
            .collect();
        let mut reports = Vec::new();
        for handle in handles {
            reports.push(handle.await.expect("simulated agent task"));
        }
        reports
    })
}
