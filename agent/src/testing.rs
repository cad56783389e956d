//! Helpers for the agent's tests: waiting on conditions instead of
//! sleeping for a fixed time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use levee_common::agent_config::AgentConfig;
use levee_common::tls::TlsFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

use crate::apply::Applier;
use crate::journal::Journal;
use crate::outbox::Outbox;
use crate::paths::Roots;
use crate::sources::SourceContext;
use crate::supervisor::Supervisor;

/// How long a test waits for a condition before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

/// Polls `condition` until it holds; panics naming `what` after [`PATIENCE`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `pid` names a live process (a zombie is not).
pub fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the parenthesised command name.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// An applier over a fresh store in a temporary data directory.
pub struct Fixture {
    /// Removed on drop, with everything the test wrote.
    pub _dir: tempfile::TempDir,
    pub config: AgentConfig,
    pub applier: Applier,
    pub supervisor: Supervisor,
    pub outbox: Outbox,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = AgentConfig {
        controllers: vec!["127.0.0.1:1".into()],
        data_dir: dir.path().canonicalize().unwrap(),
        tls: TlsFiles {
            ca: "ca".into(),
            cert: "c".into(),
            key: "k".into(),
        },
        ..Default::default()
    };
    let db = crate::store::open(&config.data_dir.join("agent.redb")).unwrap();
    let outbox = Outbox::open(db.clone(), 1000, 0).unwrap();
    let supervisor = Supervisor::new(outbox.clone(), db.clone(), config.logs.clone());
    let roots = Roots::new(&config.roots()).unwrap();
    let applier = Applier::new(&config, Journal::new(db), supervisor.clone(), roots);
    Fixture {
        _dir: dir,
        config,
        applier,
        supervisor,
        outbox,
    }
}

impl Fixture {
    /// What a source is given, over this fixture's outbox and data
    /// directory.
    pub fn source_context(&self) -> SourceContext {
        SourceContext {
            outbox: self.outbox.clone(),
            data_dir: self.config.data_dir.clone(),
        }
    }
}

/// The events of `event_type` in `outbox`, oldest first, as (subject, data).
pub fn events(outbox: &Outbox, event_type: &str) -> Vec<(String, serde_json::Value)> {
    outbox
        .read_after(None, 10_000)
        .unwrap()
        .into_iter()
        .filter(|event| event.r#type == event_type)
        .map(|event| {
            (
                event.subject,
                serde_json::from_str(&event.data_json).unwrap(),
            )
        })
        .collect()
}

/// Serves HTTP on 127.0.0.1: the n-th request (from 1) gets `status(n)`,
/// or 400 unless it is `GET /healthz`. Returns the port.
pub async fn http_server(status: impl Fn(u32) -> u16 + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicU32::new(0));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let code = status(n);
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let expected = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
            let code = if request.starts_with(expected) {
                code
            } else {
                400
            };
            let answer = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    port
}

/// A port nobody listens on, for as long as the returned socket lives: it
/// is bound but not listening, so connections to it are refused and no
/// other process can take the port meanwhile (as one could a port whose
/// listener was dropped).
pub fn closed_port() -> (TcpSocket, u16) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Appends `text` to the file at `path`, creating it: a log being written.
pub fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}
