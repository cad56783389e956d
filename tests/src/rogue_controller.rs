//! A rogue controller: an AgentLink server with a controller certificate
//! the cluster CA issued but the cluster never admitted. It welcomes any
//! agent as its leader and hands it one `run` task, so a test can tell
//! whether an agent obeyed it (the task's command writes a file).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use levee_common::pb::agent_link_server::{AgentLink, AgentLinkServer};
use levee_common::pb::{self, AgentMessage, ControllerMessage, controller_message};
use levee_common::tls::TlsFiles;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

/// The term it claims: above any a test cluster reaches.
const ROGUE_TERM: u64 = 1_000_000;

pub struct RogueController {
    pub addr: String,
    /// The file its task writes, were an agent to run it.
    pub marker: PathBuf,
    welcomed: Arc<AtomicUsize>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RogueController {
    /// Serves on a free port of 127.0.0.1 with `tls`'s certificate; its
    /// task would write `marker`.
    pub fn start(tls: &TlsFiles, marker: &Path) -> Self {
        levee_common::tls::install_crypto_provider();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address").to_string();
        let read = |path: &Path| std::fs::read_to_string(path).expect("TLS file");
        let server_tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(read(&tls.cert), read(&tls.key)))
            .client_ca_root(Certificate::from_pem(read(&tls.ca)));
        let welcomed = Arc::new(AtomicUsize::new(0));
        let service = RogueService {
            welcomed: welcomed.clone(),
            marker: marker.to_owned(),
            name: tls
                .cert
                .file_stem()
                .and_then(|stem| stem.to_str())
                .unwrap_or("rogue")
                .to_owned(),
        };
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                Server::builder()
                    .tls_config(server_tls)
                    .expect("TLS config")
                    .add_service(AgentLinkServer::new(service))
                    .serve_with_incoming_shutdown(incoming, stopped.cancelled_owned())
                    .await
                    .expect("rogue server");
            });
        });
        Self {
            addr,
            marker: marker.to_owned(),
            welcomed,
            stop,
            thread: Some(thread),
        }
    }

    /// Sessions it welcomed (and sent its task on).
    pub fn welcomed(&self) -> usize {
        self.welcomed.load(Ordering::SeqCst)
    }
}

impl Drop for RogueController {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct RogueService {
    welcomed: Arc<AtomicUsize>,
    marker: PathBuf,
    /// Its certificate's name, which it names as leader and member.
    name: String,
}

type Replies = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentLink for RogueService {
    type SessionStream = Replies;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Replies>, Status> {
        let mut inbound = request.into_inner();
        // The hello; what it says does not matter to a rogue.
        inbound.message().await?;
        let (replies, receiver) = mpsc::channel(8);
        let welcome = pb::Welcome {
            controller_node_id: 99,
            term: ROGUE_TERM,
            heartbeat_interval_ms: 5_000,
            controller_names: vec![self.name.clone()],
            leader_name: self.name.clone(),
        };
        let task = pb::Task {
            task_id: "rogue-task".into(),
            term: ROGUE_TERM,
            service: "rule/rogue".into(),
            run: Some(pb::RunCommand {
                argv: vec!["/usr/bin/touch".into(), self.marker.display().to_string()],
                ..Default::default()
            }),
            ..Default::default()
        };
        for body in [
            controller_message::Body::Welcome(welcome),
            controller_message::Body::Task(task),
        ] {
            let _ = replies
                .send(Ok(ControllerMessage { body: Some(body) }))
                .await;
        }
        self.welcomed.fetch_add(1, Ordering::SeqCst);
        // Keep the stream open (and drain what the agent sends) until the
        // agent goes.
        tokio::spawn(async move {
            while let Ok(Some(_)) = inbound.message().await {}
            drop(replies);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
