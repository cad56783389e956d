//! One controller node: the store, Raft, the gRPC services and the
//! dispatcher, started in order and stopped in reverse.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use levee_common::identity::{Identity, Role};
use levee_common::pb::agent_link_server::AgentLinkServer;
use levee_common::pb::control_server::ControlServer;
use levee_common::pb::raft_transport_server::RaftTransportServer;
use levee_common::private_files;
use levee_common::refusals::RefusalLog;
use levee_common::tls::TlsMaterial;
use openraft::SnapshotPolicy;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tracing::{info, warn};

use crate::api::agent_link::AgentLinkService;
use crate::api::auth::RoleCheck;
use crate::api::control::ControlService;
use crate::api::listener;
use crate::api::raft_transport::RaftService;
use crate::config::NodeConfig;
use crate::leader::dispatcher::Dispatcher;
use crate::leader::lost::LostMonitor;
use crate::leader::notifier::Notifier;
use crate::leader::provisioner::ProvisionRunner;
use crate::leader::run_while_leader;
use crate::leader::sessions::Sessions;
use crate::leader::silence::SilenceWatch;
use crate::leader::timers::TimerClock;
use crate::raft::log_store::LogStore;
use crate::raft::membership::Membership;
use crate::raft::network::Network;
use crate::raft::node::ControllerNode;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::{SharedState, StateMachine};
use crate::raft::{LeveeRaft, store};
use crate::secrets::SecretsDir;
use crate::sources;
use crate::sources::mqtt::MqttSource;
use crate::sources::sink::InboundSink;

/// The node's redb store, in its data directory.
const STORE_FILE: &str = "levee.redb";
/// Largest gRPC message accepted from agents and operators.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long shutdown waits for sessions and Raft to wind down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A started node.
pub struct RunningNode {
    /// The address the services are bound to.
    pub addr: SocketAddr,
    pub raft: LeveeRaft,
    pub state: SharedState,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl RunningNode {
    /// Runs until `shutdown` is cancelled, then stops in order.
    pub async fn wait(self) -> Result<()> {
        self.shutdown.cancelled().await;
        info!("stopping controller node");
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            warn!("sessions did not finish within the grace period");
        }
        self.raft.shutdown().await.context("raft shutdown")?;
        info!("controller node stopped");
        Ok(())
    }
}

/// Starts a node; it serves until `shutdown` is cancelled.
pub async fn start(config: NodeConfig, shutdown: CancellationToken) -> Result<RunningNode> {
    // The store holds the specs (a provisioner's env may carry secrets)
    // and every event's data: owner-only, whatever the umask.
    let store_path = config.data_dir.join(STORE_FILE);
    private_files::prepare_dir(&config.data_dir, STORE_FILE)
        .context("preparing the data directory")?;
    private_files::ensure_file(&store_path).context("preparing the store file")?;
    let tls = config.tls.load().context("loading TLS files")?;
    let own_name = controller_name(&tls)?;
    // One refusal log for every boundary: TLS, roles, Raft.
    let refusals = Arc::new(RefusalLog::default());

    info!(path = %config.data_dir.display(), "opening store");
    let db = store::open(&store_path)?;
    let state_machine = StateMachine::open(db.clone())
        .await
        .context("opening state machine")?;
    let state = state_machine.shared();

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (is another controller or `levee dev` running there? choose another address)",
                config.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let advertise = config.advertise.clone().unwrap_or_else(|| addr.to_string());

    info!(node_id = config.node_id, %advertise, name = %own_name, "starting raft");
    let raft_config = openraft::Config {
        cluster_name: "levee".into(),
        heartbeat_interval: config.raft.heartbeat_ms,
        election_timeout_min: config.raft.election_min_ms,
        election_timeout_max: config.raft.election_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.raft.snapshot_every),
        max_in_snapshot_log_to_keep: config.raft.snapshot_every.min(1000),
        ..Default::default()
    }
    .validate()
    .context("raft configuration")?;
    let network = Network::new(&tls, config.peer_source_address).context("TLS configuration")?;
    let raft = LeveeRaft::new(
        config.node_id,
        Arc::new(raft_config),
        network.clone(),
        LogStore::new(db),
        state_machine,
    )
    .await
    .context("starting raft")?;

    let proposer = Proposer::new(raft.clone());
    let sessions = Sessions::default();
    let tracker = TaskTracker::new();
    let membership = Arc::new(Membership::new(
        proposer.clone(),
        state.clone(),
        config.node_id,
        ControllerNode::new(&advertise, &own_name),
    ));
    if config.raft.bootstrap && !raft.is_initialized().await.context("reading raft state")? {
        info!(
            node_id = config.node_id,
            "initialising a new single-node cluster"
        );
        membership
            .initialize()
            .await
            .context("initialising the cluster")?;
    }
    let agent_link = AgentLinkService {
        node_id: config.node_id,
        proposer: proposer.clone(),
        sessions: sessions.clone(),
        shutdown: shutdown.clone(),
        refusals: refusals.clone(),
    };
    // Apply checks names against the same directory the dispatcher reads.
    let secrets = SecretsDir::new(config.secrets_dir.clone());
    let control = ControlService {
        node_id: config.node_id,
        advertise: advertise.clone(),
        proposer: proposer.clone(),
        state: state.clone(),
        sessions: sessions.clone(),
        membership: membership.clone(),
        network: network.clone(),
        secrets: secrets.clone(),
    };
    let raft_service = RaftService {
        node_id: config.node_id,
        advertise: advertise.clone(),
        raft: raft.clone(),
        proposer: proposer.clone(),
        membership,
        state: state.clone(),
        join_allowed: config.raft.join_allowed.iter().cloned().collect(),
        refusals: refusals.clone(),
    };
    let server_tls = tls.rustls_server_config().context("TLS configuration")?;
    let role_check = |service, allowed| RoleCheck::new(service, allowed, refusals.clone());
    let router = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // Each service sits behind the role check for its callers.
        .add_service(InterceptedService::new(
            AgentLinkServer::new(agent_link).max_decoding_message_size(MAX_MESSAGE_BYTES),
            role_check("AgentLink", &[Role::Agent]),
        ))
        .add_service(InterceptedService::new(
            ControlServer::new(control).max_decoding_message_size(MAX_MESSAGE_BYTES * 2),
            role_check("Control", &[Role::Operator]),
        ))
        .add_service(InterceptedService::new(
            // Snapshots travel in one message; only controllers reach this.
            RaftTransportServer::new(raft_service).max_decoding_message_size(usize::MAX),
            role_check("RaftTransport", &[Role::Controller]),
        ));
    let serve_shutdown = shutdown.clone();
    // TLS is done by the listener, which sees (and logs) the handshakes
    // that fail; tonic serves the established streams.
    let incoming = listener::incoming(
        listener,
        Arc::new(server_tls),
        refusals.clone(),
        &tracker,
        shutdown.clone(),
    );
    tracker.spawn(async move {
        if let Err(err) = router
            .serve_with_incoming_shutdown(incoming, serve_shutdown.cancelled_owned())
            .await
        {
            warn!(error = %err, "gRPC server stopped with an error");
        }
    });
    let leadership = proposer.leadership().clone();
    let lost = LostMonitor {
        state: state.clone(),
        sessions: sessions.clone(),
        proposer: proposer.clone(),
        lost_after: Duration::from_millis(config.agents.lost_after_ms),
    };
    let timers = TimerClock {
        state: state.clone(),
        proposer: proposer.clone(),
        first_seen: Default::default(),
    };
    let silence = SilenceWatch {
        state: state.clone(),
        proposer: proposer.clone(),
    };
    let provisioner = ProvisionRunner {
        state: state.clone(),
        proposer: proposer.clone(),
        running_here: Default::default(),
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    };
    let notifier = Notifier {
        state: state.clone(),
        proposer: proposer.clone(),
    };
    let dispatcher = Dispatcher {
        state: state.clone(),
        sessions: sessions.clone(),
        secrets: secrets.clone(),
    };
    // Every leader-only job has the same shape: started on becoming
    // leader, cancelled on stepping down.
    macro_rules! while_leader {
        ($name:literal, $job:expr) => {{
            let job = $job;
            tracker.spawn(run_while_leader(
                $name,
                leadership.clone(),
                shutdown.clone(),
                move |term, stepped_down| job.clone().lead(term, stepped_down),
            ));
        }};
    }
    while_leader!("dispatcher", dispatcher);
    while_leader!("lost", lost);
    while_leader!("timers", timers);
    while_leader!("silence", silence);
    while_leader!("provisioner", provisioner);
    while_leader!("notifier", notifier);
    if let Some(listen) = config.metrics_listen {
        crate::metrics::start(
            listen,
            &config.data_dir,
            crate::metrics::Sources {
                state: state.clone(),
                sessions: sessions.clone(),
                proposer: proposer.clone(),
                refusals: refusals.clone(),
            },
            &tracker,
            shutdown.clone(),
        )
        .await?;
    }
    let sink = InboundSink::new(proposer.clone(), network.clone());
    if let Some(webhooks) = &config.webhooks {
        sources::http::start(
            webhooks,
            &config.tls,
            &config.data_dir,
            sink.clone(),
            &tracker,
            shutdown.clone(),
        )
        .await?;
    }
    for subscription in &config.mqtt {
        let password = match &subscription.password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| {
                        format!("mqtt `{}`: reading {}", subscription.name, path.display())
                    })?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let tls = match &subscription.tls_ca {
            Some(ca) => Some(
                crate::sources::mqtt::tls_trusting(ca)
                    .map_err(|err| anyhow::anyhow!("mqtt `{}`: {err}", subscription.name))?,
            ),
            None => None,
        };
        let source = MqttSource {
            config: subscription.clone(),
            password,
            tls,
            sink: sink.clone(),
        };
        while_leader!("mqtt", source);
    }
    if !config.join.is_empty() && !raft.is_initialized().await.context("reading raft state")? {
        let joiner = Joiner {
            node_id: config.node_id,
            advertise: advertise.clone(),
            peers: config.join.clone(),
            network,
        };
        tracker.spawn(joiner.run(shutdown.clone()));
    }

    std::fs::write(config.data_dir.join("api.addr"), addr.to_string())
        .context("writing api.addr")?;
    info!(%addr, "controller node serving");
    Ok(RunningNode {
        addr,
        raft,
        state,
        tracker,
        shutdown,
    })
}

/// The name this node's own certificate states: how the membership
/// records it and how its peers know it.
fn controller_name(tls: &TlsMaterial) -> Result<String> {
    let der = CertificateDer::from_pem_slice(tls.cert_pem.as_bytes())
        .context("reading this node's certificate")?;
    let identity = Identity::from_certificate_der(der.as_ref())
        .context("reading this node's certificate identity")?;
    if identity.role != Role::Controller {
        anyhow::bail!(
            "this node's certificate is for `{identity}`; a controller needs a `levee://controller/<name>` certificate"
        );
    }
    Ok(identity.name)
}

/// Asks the cluster to add this node, following leader hints, until it is
/// a voter or the node stops.
struct Joiner {
    node_id: u64,
    advertise: String,
    peers: Vec<String>,
    network: Network,
}

impl Joiner {
    async fn run(self, shutdown: CancellationToken) {
        let mut attempt: u32 = 0;
        let mut next: Option<String> = None;
        loop {
            let peer = next
                .take()
                .unwrap_or_else(|| self.peers[attempt as usize % self.peers.len()].clone());
            match self.ask(&peer).await {
                Ok(()) => {
                    info!(node_id = self.node_id, via = %peer, "joined the cluster as a voter");
                    return;
                }
                Err(JoinAttempt::Redirect(leader)) => next = Some(leader),
                Err(JoinAttempt::Failed(reason)) => {
                    warn!(via = %peer, %reason, "join attempt failed; retrying")
                }
            }
            attempt += 1;
            let delay = Duration::from_millis(250 * u64::from(attempt.min(20)));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn ask(&self, peer: &str) -> Result<(), JoinAttempt> {
        let mut client = self.network.client(peer).map_err(JoinAttempt::Failed)?;
        let request = levee_common::pb::JoinRequest {
            node_id: self.node_id,
            advertise: self.advertise.clone(),
        };
        match client.join(request).await {
            Ok(_) => Ok(()),
            Err(status) => match levee_common::pb::leader_hint(&status) {
                Some(leader) if leader != peer => Err(JoinAttempt::Redirect(leader)),
                _ => Err(JoinAttempt::Failed(status.message().to_owned())),
            },
        }
    }
}

enum JoinAttempt {
    Redirect(String),
    Failed(String),
}
