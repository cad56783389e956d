//! Hostile clients: a holder of a valid agent certificate who speaks
//! AgentLink by hand, sending whatever it likes, as a compromised host
//! would.

use std::time::Duration;

use levee_common::identity::CONTROLLER_SERVER_NAME;
use levee_common::pb::agent_link_client::AgentLinkClient;
use levee_common::pb::{self, AgentMessage, agent_message, controller_message};
use levee_common::tls::TlsFiles;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::ControllerProcess;

/// One event as a hostile agent writes it.
pub struct Forged {
    pub seq: u64,
    pub event_type: String,
    pub subject: String,
    pub data_json: String,
}

impl Forged {
    pub fn new(seq: u64, event_type: &str, subject: &str, data_json: &str) -> Self {
        Self {
            seq,
            event_type: event_type.into(),
            subject: subject.into(),
            data_json: data_json.into(),
        }
    }
}

/// An agent certificate used by hand.
pub struct HostileAgent {
    pub name: String,
    tls: ClientTlsConfig,
    runtime: tokio::runtime::Runtime,
}

impl HostileAgent {
    /// Holds `name`'s certificate from `files` (issued by the cluster CA).
    pub fn new(name: &str, files: &TlsFiles) -> Self {
        levee_common::tls::install_crypto_provider();
        let read = |path: &std::path::Path| std::fs::read_to_string(path).expect("read PEM");
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&files.ca)))
            .domain_name(CONTROLLER_SERVER_NAME)
            .identity(Identity::from_pem(read(&files.cert), read(&files.key)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Self {
            name: name.into(),
            tls,
            runtime,
        }
    }

    /// Opens a session to `controller` with a hello claiming `labels`,
    /// sends `events` in one batch and returns the acknowledged sequence
    /// (epoch 1), or the status the controller ended the session with.
    pub fn send(
        &self,
        controller: &ControllerProcess,
        labels: &[(&str, &str)],
        events: &[Forged],
    ) -> Result<u64, tonic::Status> {
        let endpoint = Endpoint::from_shared(format!("https://{}", controller.addr))
            .expect("endpoint")
            .tls_config(self.tls.clone())
            .expect("tls")
            .timeout(Duration::from_secs(20));
        let hello = pb::Hello {
            agent_id: self.name.clone(),
            boot_epoch: 1,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            capacity: Some(pb::Capacity {
                cpu_millis: u32::MAX,
                memory_bytes: u64::MAX,
            }),
            ..Default::default()
        };
        let batch = pb::EventBatch {
            events: events
                .iter()
                .map(|event| pb::Event {
                    id: String::new(),
                    boot_epoch: 1,
                    seq: event.seq,
                    r#type: event.event_type.clone(),
                    subject: event.subject.clone(),
                    time_unix_ms: 1,
                    data_json: event.data_json.clone(),
                })
                .collect(),
        };
        self.runtime.block_on(async {
            let channel = endpoint
                .connect()
                .await
                .map_err(|err| tonic::Status::unavailable(format!("cannot connect: {err}")))?;
            let (tx, rx) = mpsc::channel(4);
            for body in [
                agent_message::Body::Hello(hello),
                agent_message::Body::Events(batch),
            ] {
                tx.send(AgentMessage { body: Some(body) })
                    .await
                    .expect("queue");
            }
            let mut inbound = AgentLinkClient::new(channel)
                .session(ReceiverStream::new(rx))
                .await?
                .into_inner();
            let want = events.iter().map(|event| event.seq).max().unwrap_or(0);
            loop {
                let message = inbound
                    .message()
                    .await?
                    .ok_or_else(|| tonic::Status::aborted("the session ended"))?;
                if let Some(controller_message::Body::EventAck(ack)) = message.body
                    && ack.up_to_seq >= want
                {
                    return Ok(ack.up_to_seq);
                }
            }
        })
    }
}
