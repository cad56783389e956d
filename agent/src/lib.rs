//! levee-agent: runs on every host. It detects events, keeps them in a
//! durable outbox until a controller acknowledges their commit, applies the
//! tasks the leader sends, and supervises workloads while cut off.
//!
//! - [`outbox`]: the durable event buffer, acknowledged by sequence.
//! - [`journal`]: applied task ids, the highest term seen, desired state.
//! - [`link`]: the session with the leading controller.
//! - [`apply`]: converging resources, fenced by term, once per task id.
//! - [`task`]: tasks and outcomes as the agent's own types; [`wire`] the
//!   one conversion from and to `levee.v1`.
//! - [`supervisor`]: workload processes and their exit events; [`logs`]
//!   their rotated output, [`user`] who they run as.
//! - [`health`]: health checks a (re)started workload must pass, through
//!   [`probe`], which the `[[check]]` source also uses.
//! - [`sources`]: every event source (health checks, host metrics, file
//!   watches, log patterns, the emit socket), started from the config by
//!   one registry.
//! - [`drift`]: periodic comparison of the host with the desired state.
//! - [`metrics_endpoint`]: `GET /metrics` on `metrics_listen`, read at
//!   scrape time.
//! - [`exec`]: short-lived commands with a timeout.
//! - [`group`]: signalling process groups, never the agent's own.
//! - [`paths`]: the allowed roots every resource path is checked against.
//!
//! Architecture invariant: this crate links neither openraft nor the
//! controller's store; it speaks to controllers only through `levee.v1`.

pub mod apply;
pub mod clock;
pub mod drift;
pub mod exec;
pub mod group;
pub mod health;
pub mod journal;
pub mod link;
pub mod logs;
pub mod metrics_endpoint;
pub mod outbox;
pub mod paths;
pub mod probe;
pub mod sources;
pub mod store;
pub mod supervisor;
pub mod task;
#[cfg(test)]
mod testing;
pub mod user;
pub mod util;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use levee_common::agent_config::{AgentConfig, AgentConfigError};
use levee_common::allowed_roots::whole_host_roots;
use levee_common::identity::{Identity, Role};
use levee_common::private_files;
use levee_common::refusals::RefusalLog;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::apply::Applier;
use crate::drift::Drift;
use crate::journal::Journal;
use crate::link::Link;
use crate::link::trust::ControllerTrust;
use crate::outbox::Outbox;
use crate::paths::Roots;
use crate::sources::SourceContext;
use crate::supervisor::Supervisor;

/// The agent's redb store, in its data directory.
const STORE_FILE: &str = "agent.redb";
/// How long shutdown waits for an in-flight task to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Loads and checks the agent's config file, including what only the agent
/// can check (that its sources can be built: log patterns' regexes).
pub fn load_config(path: &std::path::Path) -> Result<AgentConfig, AgentConfigError> {
    let config = AgentConfig::load(path)?;
    sources::validate(&config, path)?;
    Ok(config)
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<()> {
    let tls = config.tls.load().context("loading TLS files")?;
    let identity = identity_of(&tls.cert_pem)?;
    let span = info_span!("agent", agent_id = %identity.name);
    run_as(config, tls, identity, shutdown)
        .instrument(span)
        .await
}

async fn run_as(
    config: AgentConfig,
    tls: levee_common::tls::TlsMaterial,
    identity: Identity,
    shutdown: CancellationToken,
) -> Result<()> {
    let event_sources = sources::from_config(&config)?;
    warn_of_whole_host_roots(&config);
    // The store, the workloads' output and the emit socket live here:
    // owner-only, whatever the umask.
    let store_path = config.data_dir.join(STORE_FILE);
    private_files::prepare_dir(&config.data_dir, STORE_FILE)
        .context("preparing the data directory")?;
    private_files::ensure_file(&store_path).context("preparing the agent store")?;
    private_files::ensure_dir(&config.logs_dir()).context("preparing the logs directory")?;
    // Bound before any workload starts: a taken port stops the agent
    // without leaving anything running.
    let metrics_listener = match config.metrics_listen {
        Some(listen) => Some(metrics_endpoint::bind(listen, &config.data_dir).await?),
        None => None,
    };
    let db = store::open(&store_path).context("opening the agent store")?;
    let outbox = Outbox::open(
        db.clone(),
        config.link.outbox_max_events,
        clock::now_ms() as u64,
    )?;
    let journal = Journal::new(db.clone());
    let roots = Roots::new(&config.roots()).context("preparing the allowed roots")?;
    let supervisor = Supervisor::new(outbox.clone(), db, config.logs.clone());
    info!(
        boot_epoch = outbox.boot_epoch(),
        unsent = outbox.unacknowledged()?,
        "agent starting"
    );

    supervisor.reap_leftovers().await?;
    let applier = Applier::new(&config, journal.clone(), supervisor.clone(), roots);
    let run_stopper = applier.clone();
    // Converge what we were last told before hearing from anyone: a host
    // cut off from the controllers keeps running its workloads.
    applier.converge_desired().await?;

    // Started after the stored state converged, so its first check does not
    // report what a restart is about to put back.
    let drift = Drift::new(applier.clone(), outbox.clone(), config.drift.clone());
    let connected = Arc::new(AtomicBool::new(false));
    // Controllers refused (not a member, not the leader): counted for
    // `/metrics`, logged once per controller and reason a minute.
    let refusals = Arc::new(RefusalLog::default());
    let metrics_task = metrics_listener.map(|listener| {
        let readings = metrics_endpoint::Readings {
            outbox: outbox.clone(),
            applier: applier.clone(),
            connected: connected.clone(),
            refusals: refusals.clone(),
            unresolved_drift: drift.unresolved(),
        };
        tokio::spawn(
            metrics_endpoint::serve(listener, readings, shutdown.clone()).in_current_span(),
        )
    });
    let mut drift_task = tokio::spawn(drift.run(shutdown.clone()).in_current_span());

    // Unbounded: the session must never block on the applier, or the
    // two could wait on each other. The controllers bound what they send.
    let (tasks_tx, tasks_rx) = mpsc::unbounded_channel();
    let (updates_tx, updates_rx) = mpsc::channel(64);
    let worker_stop = CancellationToken::new();
    let worker = tokio::spawn(
        apply::apply_tasks(applier, tasks_rx, updates_tx, worker_stop.clone()).in_current_span(),
    );
    let source_context = SourceContext {
        outbox: outbox.clone(),
        data_dir: config.data_dir.clone(),
    };
    let source_tasks = sources::spawn_all(event_sources, &source_context, &shutdown);
    let trust = ControllerTrust::new(&config.controller_names, journal.clone(), refusals);
    let link = Link {
        config,
        agent_id: identity.name,
        tls,
        trust,
        outbox,
        journal,
        tasks: tasks_tx,
        updates: updates_rx,
        connected,
    };
    let link_task = tokio::spawn(link.run(shutdown.clone()).in_current_span());

    shutdown.cancelled().await;
    info!("agent stopping");
    let _ = link_task.await;
    for task in source_tasks {
        let _ = task.await;
    }
    if let Some(mut metrics_task) = metrics_task {
        // A scrape in flight finishes; a client that never ends its
        // request does not hold up the shutdown.
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut metrics_task)
            .await
            .is_err()
        {
            metrics_task.abort();
        }
    }
    // Cancelling waits, not work: a task being applied finishes first. A
    // run task's command is killed instead (it may take its whole timeout)
    // and recorded as failed, so a resend does not run it again.
    worker_stop.cancel();
    // Not after the worker: a long service task must not keep commands
    // running past the grace period, unrecorded.
    run_stopper.stop_runs();
    if tokio::time::timeout(SHUTDOWN_GRACE, worker).await.is_err() {
        warn!("a task was still being applied after the grace period");
    }
    // The drift task stops between services; one being corrected finishes.
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut drift_task)
        .await
        .is_err()
    {
        warn!("a drift correction was still running after the grace period; abandoning it");
        drift_task.abort();
    }
    supervisor.stop_all().await;
    info!("agent stopped");
    Ok(())
}

/// Roots of `/` or a system directory load only with
/// `i_know_this_is_the_whole_host`; every start says so, naming them.
fn warn_of_whole_host_roots(config: &AgentConfig) {
    let roots = whole_host_roots(&config.allowed_roots);
    if !roots.is_empty() {
        let roots = roots
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        warn!(
            %roots,
            "allowed_roots hand tasks the whole host (i_know_this_is_the_whole_host = true): a task may change the system itself"
        );
    }
}

/// The agent's name, from its certificate; it must be an agent certificate.
pub fn identity_of(cert_pem: &str) -> Result<Identity> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .context("reading the agent certificate")?;
    let identity = Identity::from_certificate_der(der.as_ref())?;
    if identity.role != Role::Agent {
        bail!(
            "the certificate is for a {} ({identity}), not an agent",
            identity.role
        );
    }
    Ok(identity)
}
