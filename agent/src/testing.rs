//! Helpers for the agent's tests: waiting on conditions instead of
//! sleeping for a fixed time.

use std::time::Duration;

use levee_common::agent_config::{AgentConfig, DriftConfig, LinkConfig, LogsConfig};
use levee_common::tls::TlsFiles;

use crate::apply::Applier;
use crate::journal::Journal;
use crate::outbox::Outbox;
use crate::paths::Roots;
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
        labels: Default::default(),
        allowed_roots: Vec::new(),
        tls: TlsFiles {
            ca: "ca".into(),
            cert: "c".into(),
            key: "k".into(),
        },
        link: LinkConfig::default(),
        logs: LogsConfig::default(),
        drift: DriftConfig::default(),
        metrics: Vec::new(),
        watches: Vec::new(),
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
