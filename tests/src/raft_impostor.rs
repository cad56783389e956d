//! A hostile Raft peer: a controller certificate the cluster CA issued,
//! speaking the Raft transport to a controller directly, with messages it
//! forges (a huge term, another node's id, an `agent/...` event source).
//! Its calls block; each returns the gRPC status a refusal gives.

use std::time::Duration;

use levee_common::identity::CONTROLLER_SERVER_NAME;
use levee_common::pb::raft_transport_client::RaftTransportClient;
use levee_common::pb::{self, RaftPayload};
use levee_common::tls::TlsFiles;
use serde_json::{Value, json};
use tonic::Status;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub struct RaftImpostor {
    runtime: tokio::runtime::Runtime,
    client: RaftTransportClient<Channel>,
}

/// A vote as openraft serialises it: `node_id` leading (or standing) for
/// `term`.
fn vote(node_id: u64, term: u64) -> Value {
    json!({"leader_id": {"term": term, "node_id": node_id}, "committed": true})
}

impl RaftImpostor {
    /// Dials the controller at `addr` presenting `tls`'s certificate.
    pub fn dial(addr: &str, tls: &TlsFiles) -> Self {
        levee_common::tls::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let read = |path: &std::path::Path| std::fs::read_to_string(path).expect("TLS file");
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&tls.ca)))
            .domain_name(CONTROLLER_SERVER_NAME)
            .identity(Identity::from_pem(read(&tls.cert), read(&tls.key)));
        let channel = {
            let _context = runtime.enter();
            Endpoint::from_shared(format!("https://{addr}"))
                .expect("address")
                .tls_config(config)
                .expect("TLS config")
                .timeout(Duration::from_secs(10))
                .connect_lazy()
        };
        Self {
            runtime,
            client: RaftTransportClient::new(channel),
        }
    }

    /// AppendEntries (a heartbeat) from `leader` at `term`.
    pub fn append_entries(&mut self, leader: u64, term: u64) -> Result<(), Status> {
        let json = json!({
            "vote": vote(leader, term),
            "prev_log_id": null,
            "entries": [],
            "leader_commit": null,
        });
        self.raft_call(RaftCall::Append, json, Vec::new())
    }

    /// A vote request from `candidate` at `term`.
    pub fn vote(&mut self, candidate: u64, term: u64) -> Result<(), Status> {
        let json = json!({
            "vote": vote(candidate, term),
            "last_log_id": null,
            "leadership_transfer": false,
        });
        self.raft_call(RaftCall::Vote, json, Vec::new())
    }

    /// A full snapshot from `leader` at `term`, of an empty state.
    pub fn install_snapshot(&mut self, leader: u64, term: u64) -> Result<(), Status> {
        let json = json!({
            "vote": vote(leader, term),
            "meta": {
                "last_log_id": {"leader_id": {"term": term, "node_id": leader}, "index": 1_000_000},
                "last_membership": {"log_id": null, "membership": {"configs": [], "nodes": {}}},
                "snapshot_id": "forged",
            },
        });
        self.raft_call(RaftCall::Snapshot, json, b"{}".to_vec())
    }

    /// Events "forwarded from a follower" under `source`.
    pub fn record_inbound(&mut self, source: &str) -> Result<(), Status> {
        let json = json!({
            "source": source,
            "events": [{
                "event_type": "host.process.exited",
                "subject": "forged",
                "data": {"forged": true},
            }],
        });
        self.raft_call(RaftCall::Inbound, json, Vec::new())
    }

    /// Asks to be added as `node_id` at `advertise`.
    pub fn join(&mut self, node_id: u64, advertise: &str) -> Result<(), Status> {
        let request = pb::JoinRequest {
            node_id,
            advertise: advertise.to_owned(),
        };
        let client = &mut self.client;
        self.runtime.block_on(client.join(request)).map(drop)
    }

    fn raft_call(&mut self, call: RaftCall, json: Value, data: Vec<u8>) -> Result<(), Status> {
        let payload = RaftPayload {
            json: serde_json::to_vec(&json).expect("JSON"),
            data,
        };
        let client = &mut self.client;
        self.runtime
            .block_on(async {
                match call {
                    RaftCall::Append => client.append_entries(payload).await,
                    RaftCall::Vote => client.vote(payload).await,
                    RaftCall::Snapshot => client.install_snapshot(payload).await,
                    RaftCall::Inbound => client.record_inbound(payload).await,
                }
            })
            .map(drop)
    }
}

enum RaftCall {
    Append,
    Vote,
    Snapshot,
    Inbound,
}
