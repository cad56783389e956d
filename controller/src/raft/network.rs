//! The sending end of the Raft transport: one cached mTLS channel per peer.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use levee_common::pb::RaftPayload;
use levee_common::pb::raft_transport_client::RaftTransportClient;
use levee_common::tls::{TlsError, TlsMaterial};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkV2};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::node::ControllerNode;
use super::peer_name::{PeerNameError, verified_controller_name};
use super::{Snapshot, SnapshotData, TypeConfig, Vote};

/// Creates peer clients; channels are cached by address and connect lazily,
/// so a peer that is down costs nothing until Raft sends to it.
#[derive(Clone)]
pub struct Network {
    tls: ClientTlsConfig,
    /// The same trust, for handshakes done without tonic.
    probe_tls: Arc<rustls::ClientConfig>,
    source: Option<IpAddr>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Network {
    /// `source` pins the local address of connections to peers (for
    /// multi-homed hosts; `None` lets the kernel choose).
    pub fn new(tls: &TlsMaterial, source: Option<IpAddr>) -> Result<Self, TlsError> {
        let probe_tls = tls.rustls_client_config(tls.webpki_server_verifier()?)?;
        Ok(Self {
            tls: tls.client_config(),
            probe_tls: Arc::new(probe_tls),
            source,
            channels: Arc::default(),
        })
    }

    /// The name of the controller certificate `addr` presents.
    pub async fn peer_name(&self, addr: &str) -> Result<String, PeerNameError> {
        verified_controller_name(self.probe_tls.clone(), addr, self.source).await
    }

    /// A transport client for the controller at `addr`.
    pub fn client(&self, addr: &str) -> Result<RaftTransportClient<Channel>, String> {
        self.channel(addr).map(RaftTransportClient::new)
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|endpoint| endpoint.tls_config(self.tls.clone()))
            .map_err(|err| format!("bad peer address {addr}: {err}"))?
            .connect_timeout(std::time::Duration::from_secs(2))
            .tcp_nodelay(true)
            .local_address(self.source)
            .connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &ControllerNode) -> Self::Network {
        PeerClient {
            target,
            channel: self.channel(&node.addr),
        }
    }
}

pub struct PeerClient {
    target: u64,
    channel: Result<Channel, String>,
}

#[derive(Serialize, serde::Deserialize)]
pub struct SnapshotHeader {
    pub vote: Vote,
    pub meta: super::SnapshotMeta,
}

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        request: &Req,
        data: Vec<u8>,
        option: &RPCOption,
        method: Method,
    ) -> Result<Resp, Unreachable<TypeConfig>> {
        let channel = self.channel.clone().map_err(Unreachable::from_string)?;
        let json = serde_json::to_vec(request).map_err(|err| Unreachable::new(&err))?;
        let mut client = RaftTransportClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let mut request = tonic::Request::new(RaftPayload { json, data });
        request.set_timeout(option.hard_ttl());
        let reply = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        }
        .map_err(|status| Unreachable::from_string(format!("node {}: {status}", self.target)))?;
        // The remote answers Result<Resp, String>: an Err is the remote's
        // Raft refusing (shutting down), which we treat as unreachable.
        let answer: Result<Resp, String> = serde_json::from_slice(&reply.into_inner().json)
            .map_err(|err| Unreachable::new(&err))?;
        answer.map_err(Unreachable::from_string)
    }
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, Vec::new(), &option, Method::Append)
            .await
            .map_err(RPCError::Unreachable)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, Vec::new(), &option, Method::Vote)
            .await
            .map_err(RPCError::Unreachable)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header = SnapshotHeader {
            vote,
            meta: snapshot.meta,
        };
        let data = snapshot.snapshot.into_inner();
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = self.call(&header, data, &option, Method::Snapshot) => result.map_err(StreamingError::Unreachable),
        }
    }
}
