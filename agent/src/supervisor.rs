//! Supervised workloads: starting them (as their user, with their output
//! in rotated log files), watching them, stopping them gracefully, and
//! turning unexpected exits into `host.process.exited` events.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use levee_common::agent_config::LogsConfig;
use levee_common::event::types::PROCESS_EXITED;
use levee_common::private_files;
use levee_common::resource::{ProcessResource, RestartPolicy};
use nix::sys::signal::Signal;
use redb::{Database, ReadableDatabase, ReadableTable};
use serde_json::json;
use thiserror::Error;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::clock::now_ms;
use crate::group;
use crate::logs;
use crate::outbox::Outbox;
use crate::store::{StoreError, WORKLOADS};
use crate::user::{self, UserError};
use crate::util::blocking;

/// An exit this soon after a task (re)started a workload is taken as that
/// change's consequence: its event names the task (`caused_by_task`), so
/// the controllers can stop a repair loop. A workload that ran longer
/// failed on its own.
const CAUSE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Environment variable marking a workload as ours, checked before the
/// agent kills a leftover process group after a crash.
const WORKLOAD_ENV: &str = "LEVEE_WORKLOAD";
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// A process to run, with every path already resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    pub process: ProcessResource,
    pub working_dir: PathBuf,
    pub log_dir: PathBuf,
}

/// What converging a workload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadOutcome {
    pub changed: bool,
    pub detail: String,
    /// The process now running it.
    pub pid: u32,
}

/// Whether a workload runs, as the supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadState {
    Running {
        pid: u32,
    },
    /// It exited and its restart policy will start it again shortly.
    Restarting,
    /// It exited by itself with exit code 0 and its policy (`never` or
    /// `on-failure`) does not start it again: its work is done, which is
    /// not drift.
    Completed,
    /// Not running, and nothing will start it but a converge: it was
    /// stopped, killed by a signal, failed under `never`, or could not be
    /// restarted.
    Stopped,
}

impl WorkloadState {
    /// Its name in metrics: `running`, `restarting`, `completed`, `stopped`.
    pub fn label(self) -> &'static str {
        match self {
            WorkloadState::Running { .. } => "running",
            WorkloadState::Restarting => "restarting",
            WorkloadState::Completed => "completed",
            WorkloadState::Stopped => "stopped",
        }
    }
}

/// How a workload's process ended when nothing restarts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Exit code 0 under `never` or `on-failure`.
    Completed,
    /// Anything else: a signal, a failure under `never`, a failed restart.
    Failed,
}

/// Why a workload could not be started.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("recording its process group: {0}")]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Supervisor {
    workloads: Arc<Mutex<HashMap<String, Running>>>,
    /// Per workload, the task that last (re)started it and when: an exit
    /// soon after is that change's consequence, and says so.
    started_by: Arc<Mutex<HashMap<String, (String, std::time::Instant)>>>,
    /// Per workload, the task converging it now, until it is started.
    expected: Arc<Mutex<HashMap<String, String>>>,
    outbox: Outbox,
    db: Arc<Database>,
    logs: LogsConfig,
}

struct Running {
    spec: WorkloadSpec,
    pid: u32,
    /// The live process, `None` between an exit and a restart. Health
    /// waits watch it to notice a workload that died.
    alive: Arc<watch::Sender<Option<u32>>>,
    /// The pid last found healthy, cleared when it exits: a restart needs
    /// a new health check.
    healthy_pid: Option<u32>,
    /// Set when its process ended and nothing will restart it. The entry
    /// is kept so drift can tell a workload that completed from one that
    /// died.
    ended: Option<Ended>,
    stop: CancellationToken,
    watcher: JoinHandle<()>,
}

impl Running {
    /// Whether its process runs right now: not ended, and not between an
    /// exit and a restart.
    fn is_running(&self) -> bool {
        self.is_live() && *self.alive.borrow() == Some(self.pid)
    }

    /// Whether it runs or its restart policy is about to start it again.
    fn is_live(&self) -> bool {
        self.ended.is_none() && !self.watcher.is_finished()
    }

    fn state(&self) -> WorkloadState {
        match self.ended {
            Some(Ended::Completed) => WorkloadState::Completed,
            Some(Ended::Failed) => WorkloadState::Stopped,
            None if self.watcher.is_finished() => WorkloadState::Stopped,
            None => match *self.alive.borrow() {
                Some(pid) => WorkloadState::Running { pid },
                None => WorkloadState::Restarting,
            },
        }
    }
}

impl Supervisor {
    pub fn new(outbox: Outbox, db: Arc<Database>, logs: LogsConfig) -> Self {
        Self {
            workloads: Arc::default(),
            started_by: Arc::default(),
            expected: Arc::default(),
            outbox,
            db,
            logs,
        }
    }

    /// Makes `spec` run: unchanged if it already runs as specified,
    /// restarted if its spec changed, started if it is not running. A
    /// workload whose process died counts as not running even while its
    /// restart policy waits out a backoff: it is started now (the backoff
    /// is cancelled), never reported with the pid of a dead process.
    pub async fn ensure_running(&self, spec: WorkloadSpec) -> Result<WorkloadOutcome, StartError> {
        let name = spec.process.name.clone();
        let previous = {
            let mut workloads = self.lock();
            match workloads.get(&name) {
                Some(running) if running.spec == spec && running.is_running() => {
                    return Ok(WorkloadOutcome {
                        changed: false,
                        detail: format!("running, pid {}", running.pid),
                        pid: running.pid,
                    });
                }
                _ => workloads.remove(&name),
            }
        };
        let replaced = previous.as_ref().is_some_and(Running::is_running);
        if let Some(previous) = previous {
            stop_running(previous).await;
        }
        let pid = self.start(spec).await?;
        let detail = if replaced {
            format!("restarted with the new spec, pid {pid}")
        } else {
            format!("started, pid {pid}")
        };
        Ok(WorkloadOutcome {
            changed: true,
            detail,
            pid,
        })
    }

    /// Stops workload `name` (SIGTERM to its group, SIGKILL after its
    /// `stop_timeout_ms`). Returns whether it was running. No exit event is
    /// emitted: the stop was asked for.
    pub async fn stop(&self, name: &str) -> bool {
        let running = self.lock().remove(name);
        match running {
            Some(running) => {
                let was_running = running.is_live();
                stop_running(running).await;
                was_running
            }
            None => false,
        }
    }

    pub fn state(&self, name: &str) -> WorkloadState {
        self.lock()
            .get(name)
            .map_or(WorkloadState::Stopped, Running::state)
    }

    /// How many known workloads are in each state, by [`WorkloadState::label`];
    /// only states some workload is in.
    pub fn count_by_state(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for running in self.lock().values() {
            *counts.entry(running.state().label()).or_default() += 1;
        }
        counts
    }

    /// Whether `spec` ran and completed (exit code 0, not restarted by its
    /// policy) and nothing started it since.
    pub fn completed(&self, spec: &WorkloadSpec) -> bool {
        self.lock()
            .get(&spec.process.name)
            .is_some_and(|running| running.spec == *spec && running.ended == Some(Ended::Completed))
    }

    /// Whether process `pid` of `name` was already found healthy.
    pub fn is_healthy(&self, name: &str, pid: u32) -> bool {
        self.lock()
            .get(name)
            .is_some_and(|running| running.healthy_pid == Some(pid))
    }

    /// Remembers that process `pid` of `name` passed its health check.
    pub fn mark_healthy(&self, name: &str, pid: u32) {
        if let Some(running) = self.lock().get_mut(name)
            && running.pid == pid
        {
            running.healthy_pid = Some(pid);
        }
    }

    /// Resolves once process `pid` of `name` is no longer running (at once
    /// if it already is not).
    pub fn exited(&self, name: &str, pid: u32) -> impl Future<Output = ()> + Send + 'static {
        let alive = self
            .lock()
            .get(name)
            .map(|running| running.alive.subscribe());
        async move {
            if let Some(mut alive) = alive {
                // An error means the workload's entry is gone: it exited.
                let _ = alive.wait_for(|alive| *alive != Some(pid)).await;
            }
        }
    }

    /// Stops every workload (agent shutdown). No exit events are emitted.
    pub async fn stop_all(&self) {
        let running: Vec<Running> = self.lock().drain().map(|(_, running)| running).collect();
        for workload in running {
            stop_running(workload).await;
        }
    }

    /// Stops process groups a crashed agent left running, so a restart
    /// does not run two copies.
    pub async fn reap_leftovers(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        let leftovers: Vec<(String, u64)> = blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(WORKLOADS)?;
            let mut found = Vec::new();
            for item in table.iter()? {
                let (name, pgid) = item?;
                found.push((name.value().to_owned(), pgid.value()));
            }
            Ok::<_, StoreError>(found)
        })
        .await?;
        for (name, pgid) in leftovers {
            if let Ok(pgid) = u32::try_from(pgid)
                && is_our_workload(pgid, &name)
            {
                warn!(workload = %name, pgid, "stopping a workload left running by a previous agent");
                group::signal(pgid, Signal::SIGKILL);
            }
            self.forget(&name, None).await?;
        }
        Ok(())
    }

    /// Spawns the workload and a watcher task that restarts it as its
    /// policy says, until it is stopped or gives up.
    async fn start(&self, spec: WorkloadSpec) -> Result<u32, StartError> {
        let run_as = user::switch_to(spec.process.user.as_deref(), user::agent_uid())?;
        let child = self.spawn(&spec, run_as.as_ref())?;
        self.note_start(&spec.process.name);
        let pid = child.id().unwrap_or_default();
        if let Err(err) = self.remember(&spec.process.name, pid).await {
            group::signal(pid, Signal::SIGKILL);
            return Err(err.into());
        }
        let stop = CancellationToken::new();
        let alive = Arc::new(watch::Sender::new(Some(pid)));
        info!(workload = %spec.process.name, pid, argv = ?spec.process.argv, user = ?spec.process.user, "workload started");
        let span = info_span!("workload", name = %spec.process.name);
        let watcher = tokio::spawn(
            self.clone()
                .watch(spec.clone(), run_as, child, stop.clone(), alive.clone())
                .instrument(span),
        );
        self.lock().insert(
            spec.process.name.clone(),
            Running {
                spec,
                pid,
                alive,
                healthy_pid: None,
                ended: None,
                stop,
                watcher,
            },
        );
        Ok(pid)
    }

    async fn watch(
        self,
        spec: WorkloadSpec,
        run_as: Option<user::RunAs>,
        mut child: Child,
        stop: CancellationToken,
        alive: Arc<watch::Sender<Option<u32>>>,
    ) {
        let name = spec.process.name.clone();
        let grace = Duration::from_millis(u64::from(spec.process.stop_timeout_ms));
        let mut restarts: u32 = 0;
        let mut pid = child.id().unwrap_or_default();
        let ended = loop {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = stop.cancelled() => {
                    terminate(&mut child, pid, grace).await;
                    alive.send_replace(None);
                    return;
                }
            };
            // What it left in its group goes too, before anything else: a
            // restart must never run beside the old children, and their
            // hold on the log pipes ends.
            group::signal(pid, Signal::SIGKILL);
            // Not healthy any more, before anyone can see it exited.
            self.clear_healthy(&name, pid);
            alive.send_replace(None);
            self.report_exit(&name, pid, &status, restarts).await;
            let code = status.as_ref().ok().and_then(ExitStatus::code);
            let restart = match spec.process.restart {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => code != Some(0),
                RestartPolicy::Always => true,
            };
            if !restart {
                break if code == Some(0) {
                    Ended::Completed
                } else {
                    Ended::Failed
                };
            }
            let delay = Duration::from_secs(1u64 << restarts.min(5)).min(MAX_RESTART_DELAY);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                // Whoever stopped it took its entry already.
                _ = stop.cancelled() => {
                    let _ = self.forget(&name, Some(pid)).await;
                    return;
                }
            }
            restarts += 1;
            child = match self.spawn(&spec, run_as.as_ref()) {
                Ok(child) => child,
                Err(err) => {
                    warn!(error = %err, "restart failed; giving up");
                    break Ended::Failed;
                }
            };
            pid = child.id().unwrap_or_default();
            let _ = self.remember(&name, pid).await;
            {
                // Together, so nobody sees the new pid as not yet alive.
                let mut workloads = self.lock();
                if let Some(running) = workloads.get_mut(&name) {
                    running.pid = pid;
                }
                alive.send_replace(Some(pid));
            }
            info!(pid, restarts, "workload restarted by its restart policy");
        };
        if let Some(running) = self.lock().get_mut(&name)
            && running.pid == pid
        {
            // The entry is ours (no stop or newer start replaced it): it
            // stays, saying how the workload ended.
            running.ended = Some(ended);
        }
        let _ = self.forget(&name, Some(pid)).await;
    }

    /// Process `pid` of `name` exited: it is no longer known healthy.
    fn clear_healthy(&self, name: &str, pid: u32) {
        if let Some(running) = self.lock().get_mut(name)
            && running.healthy_pid == Some(pid)
        {
            running.healthy_pid = None;
        }
    }

    /// An exit nobody asked for becomes an event.
    async fn report_exit(
        &self,
        name: &str,
        pid: u32,
        status: &std::io::Result<ExitStatus>,
        restarts: u32,
    ) {
        let (code, signal) = match status {
            Ok(status) => (status.code(), status.signal()),
            Err(_) => (None, None),
        };
        warn!(pid, ?code, ?signal, "workload exited");
        let mut data = json!({ "service": name, "pid": pid, "exit_code": code, "signal": signal, "restarts": restarts });
        if let Some(task_id) = self.cause_of_exit(name) {
            data["caused_by_task"] = json!(task_id);
        }
        let outbox = self.outbox.clone();
        let subject = name.to_owned();
        if let Err(err) =
            blocking(move || outbox.append(PROCESS_EXITED, &subject, &data, now_ms())).await
        {
            warn!(error = %err, "could not record the exit event");
        }
    }

    /// Task `task_id` is converging workload `name`: if that starts it,
    /// its early exit names the task.
    pub fn expect_start_by(&self, name: &str, task_id: &str) {
        self.expected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.to_owned(), task_id.to_owned());
    }

    pub fn forget_expected(&self, name: &str) {
        self.expected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(name);
    }

    /// Called when `name` is spawned: a task expecting it becomes its cause.
    fn note_start(&self, name: &str) {
        let task = self
            .expected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(name);
        let mut started_by = self
            .started_by
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match task {
            Some(task) => {
                started_by.insert(name.to_owned(), (task, std::time::Instant::now()));
            }
            // Started by drift correction or a restore: no task caused it.
            None => {
                started_by.remove(name);
            }
        }
    }

    /// The task whose start this exit follows closely enough to be its
    /// consequence, if any.
    fn cause_of_exit(&self, name: &str) -> Option<String> {
        let started_by = self
            .started_by
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (task_id, at) = started_by.get(name)?;
        (at.elapsed() < CAUSE_WINDOW).then(|| task_id.clone())
    }

    async fn remember(&self, name: &str, pgid: u32) -> Result<(), StoreError> {
        let db = self.db.clone();
        let name = name.to_owned();
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(WORKLOADS)?
                .insert(name.as_str(), u64::from(pgid))?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    /// Forgets the recorded process group of `name`, if it is still `pgid`
    /// (`None`: whatever it is). A newer start may have replaced it.
    async fn forget(&self, name: &str, pgid: Option<u32>) -> Result<(), StoreError> {
        let db = self.db.clone();
        let name = name.to_owned();
        blocking(move || {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(WORKLOADS)?;
                let stored = table.get(name.as_str())?.map(|value| value.value());
                if pgid.is_none() || stored == pgid.map(u64::from) {
                    table.remove(name.as_str())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        // Critical sections are single map operations; a poisoned map is
        // still consistent.
        self.workloads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns one process of the workload, its output piped into rotated
    /// files under its log directory.
    fn spawn(&self, spec: &WorkloadSpec, run_as: Option<&user::RunAs>) -> std::io::Result<Child> {
        // Output may hold secrets a workload prints: owner-only.
        private_files::ensure_dir(&spec.log_dir).map_err(std::io::Error::other)?;
        let (program, args) = spec
            .process
            .argv
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty argv"))?;
        let mut command = Command::new(program);
        command.args(args);
        if let Some(run_as) = run_as {
            // Set before the spec's env, which may override them.
            command
                .env("HOME", &run_as.home)
                .env("USER", &run_as.name)
                .env("LOGNAME", &run_as.name)
                .uid(run_as.uid)
                .gid(run_as.gid);
        }
        command
            .envs(&spec.process.env)
            .env(WORKLOAD_ENV, &spec.process.name)
            .current_dir(&spec.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so stopping it stops its children too.
            .process_group(0);
        let mut child = command.spawn()?;
        let mut captured = Ok(());
        if let Some(stdout) = child.stdout.take() {
            captured = logs::capture(stdout, &spec.log_dir.join("stdout.log"), &self.logs);
        }
        if let Some(stderr) = child.stderr.take() {
            captured = captured
                .and_then(|()| logs::capture(stderr, &spec.log_dir.join("stderr.log"), &self.logs));
        }
        if let Err(err) = captured {
            // Without its log files a workload would block on a full pipe.
            if let Some(pid) = child.id() {
                group::signal(pid, Signal::SIGKILL);
            }
            return Err(err);
        }
        Ok(child)
    }
}

async fn stop_running(running: Running) {
    running.stop.cancel();
    let _ = running.watcher.await;
}

/// SIGTERM to the group, then SIGKILL after `grace` (the workload's
/// `stop_timeout_ms`).
async fn terminate(child: &mut Child, pid: u32, grace: Duration) {
    group::signal(pid, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        warn!(
            grace_ms = grace.as_millis(),
            "workload ignored SIGTERM; killing it"
        );
        group::signal(pid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Reap any stragglers left in the group.
    group::signal(pid, Signal::SIGKILL);
    info!("workload stopped");
}

/// Whether `pid` still runs one of our workloads named `name`.
fn is_our_workload(pid: u32, name: &str) -> bool {
    let marker = format!("{WORKLOAD_ENV}={name}");
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|environ| {
            environ
                .split(|byte| *byte == 0)
                .any(|entry| entry == marker.as_bytes())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::Instant;

    use nix::sys::signal::killpg;
    use nix::unistd::Pid;

    use super::*;
    use crate::testing::{process_alive, wait_until};

    fn supervisor(dir: &Path, logs: LogsConfig) -> Supervisor {
        let db = crate::store::open(&dir.join("agent.redb")).unwrap();
        let outbox = Outbox::open(db.clone(), 100, 0).unwrap();
        Supervisor::new(outbox, db, logs)
    }

    fn workload(dir: &Path, name: &str, script: &str) -> WorkloadSpec {
        WorkloadSpec {
            process: ProcessResource {
                name: name.into(),
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                env: Default::default(),
                secret_env: Default::default(),
                working_dir: None,
                restart: RestartPolicy::Never,
                user: None,
                stop_timeout_ms: 10_000,
                health: None,
            },
            working_dir: dir.to_owned(),
            log_dir: dir.join("logs").join(name),
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[tokio::test]
    async fn output_goes_to_rotated_log_files() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = supervisor(
            dir.path(),
            LogsConfig {
                max_bytes: 200,
                keep: 1,
            },
        );
        let spec = workload(
            dir.path(),
            "chatty",
            "echo oops >&2; i=0; while [ $i -lt 100 ]; do echo out-$i; i=$((i+1)); done; exec sleep 600",
        );
        let logs = spec.log_dir.clone();
        supervisor.ensure_running(spec).await.unwrap();
        wait_until("the last line in stdout.log", || {
            read(&logs.join("stdout.log")).ends_with("out-99\n")
        })
        .await;
        wait_until("stderr.log", || read(&logs.join("stderr.log")) == "oops\n").await;
        assert!(logs.join("stdout.log.1").exists());
        assert!(!logs.join("stdout.log.2").exists(), "keep = 1");
        assert!(std::fs::metadata(logs.join("stdout.log")).unwrap().len() <= 200);
        supervisor.stop_all().await;
    }

    #[tokio::test]
    async fn a_stop_waits_stop_timeout_ms_for_sigterm_then_kills() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = supervisor(dir.path(), LogsConfig::default());

        // Handles SIGTERM: it gets to finish its cleanup.
        let polite = workload(
            dir.path(),
            "polite",
            "trap 'echo cleaned > cleaned; exit 0' TERM; touch polite.ready; while true; do sleep 0.05; done",
        );
        let outcome = supervisor.ensure_running(polite).await.unwrap();
        assert!(outcome.changed);
        wait_until("the polite workload to set its trap", || {
            dir.path().join("polite.ready").exists()
        })
        .await;
        assert!(supervisor.stop("polite").await);
        assert_eq!(read(&dir.path().join("cleaned")), "cleaned\n");
        assert_eq!(supervisor.state("polite"), WorkloadState::Stopped);
        assert!(!supervisor.stop("polite").await, "already stopped");

        // Ignores SIGTERM: killed after its 300 ms, not the default 10 s.
        let mut stubborn = workload(
            dir.path(),
            "stubborn",
            "trap '' TERM; touch stubborn.ready; exec sleep 600",
        );
        stubborn.process.stop_timeout_ms = 300;
        let pid = supervisor.ensure_running(stubborn).await.unwrap().pid;
        wait_until("the stubborn workload to ignore SIGTERM", || {
            dir.path().join("stubborn.ready").exists()
        })
        .await;
        let started = Instant::now();
        assert!(supervisor.stop("stubborn").await);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(!process_alive(pid as i32));
    }

    #[tokio::test]
    async fn exits_are_watched_and_a_restart_needs_a_new_health_check() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = supervisor(dir.path(), LogsConfig::default());
        let mut spec = workload(dir.path(), "web", "exec sleep 600");
        spec.process.restart = RestartPolicy::Always;
        let pid = supervisor.ensure_running(spec).await.unwrap().pid;
        assert_eq!(supervisor.state("web"), WorkloadState::Running { pid });
        supervisor.mark_healthy("web", pid);
        assert!(supervisor.is_healthy("web", pid));

        let exited = supervisor.exited("web", pid);
        killpg(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        tokio::time::timeout(crate::testing::PATIENCE, exited)
            .await
            .expect("`exited` resolves when the process dies");
        wait_until(
            "the restart policy to start it again",
            || matches!(supervisor.state("web"), WorkloadState::Running { pid: new } if new != pid),
        )
        .await;
        let WorkloadState::Running { pid: new } = supervisor.state("web") else {
            unreachable!()
        };
        assert!(
            !supervisor.is_healthy("web", new),
            "a new process is not known healthy"
        );
        supervisor.stop_all().await;
    }

    /// The pids, one a line, a test workload wrote to `path`.
    fn pids_in(path: &Path) -> Vec<i32> {
        read(path)
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }

    #[tokio::test]
    async fn what_an_exited_workload_left_running_is_killed_before_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = supervisor(dir.path(), LogsConfig::default());
        let mut spec = workload(
            dir.path(),
            "leaver",
            "sleep 600 & echo $! >> bg.pids; exit 0",
        );
        spec.process.restart = RestartPolicy::Always;
        supervisor.ensure_running(spec).await.unwrap();
        let pids = dir.path().join("bg.pids");
        wait_until("the first background child", || !pids_in(&pids).is_empty()).await;
        let first = pids_in(&pids)[0];
        wait_until("the first background child to die with its leader", || {
            !process_alive(first)
        })
        .await;
        supervisor.stop_all().await;
        for pid in pids_in(&pids) {
            wait_until("every background child to be gone", || !process_alive(pid)).await;
        }
    }

    #[tokio::test]
    async fn how_a_workload_ended_and_its_policy_decide_completed_or_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = supervisor(dir.path(), LogsConfig::default());
        let cases = [
            (
                "never-ok",
                RestartPolicy::Never,
                "exit 0",
                WorkloadState::Completed,
            ),
            (
                "failure-ok",
                RestartPolicy::OnFailure,
                "exit 0",
                WorkloadState::Completed,
            ),
            (
                "never-failed",
                RestartPolicy::Never,
                "exit 3",
                WorkloadState::Stopped,
            ),
            (
                "never-killed",
                RestartPolicy::Never,
                "kill -9 $$",
                WorkloadState::Stopped,
            ),
        ];
        for (name, restart, script, expected) in cases {
            let mut spec = workload(dir.path(), name, script);
            spec.process.restart = restart;
            supervisor.ensure_running(spec.clone()).await.unwrap();
            wait_until(&format!("{name} to be {expected:?}"), || {
                supervisor.state(name) == expected
            })
            .await;
            assert_eq!(
                supervisor.completed(&spec),
                expected == WorkloadState::Completed,
                "{name}"
            );
            assert_eq!(
                supervisor.count_by_state(),
                BTreeMap::from([(expected.label(), 1)]),
                "{name}"
            );
            // A converge starts it again, whichever way it ended.
            let again = supervisor.ensure_running(spec).await.unwrap();
            assert!(again.changed, "{name}: {again:?}");
            assert!(again.detail.starts_with("started, pid"), "{again:?}");
            supervisor.stop(name).await;
        }
        supervisor.stop_all().await;
    }

    #[tokio::test]
    async fn a_workload_in_restart_backoff_is_not_running_and_not_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = supervisor(dir.path(), LogsConfig::default());
        let mut spec = workload(dir.path(), "web", "exec sleep 600");
        spec.process.restart = RestartPolicy::Always;
        let pid = supervisor.ensure_running(spec.clone()).await.unwrap().pid;
        supervisor.mark_healthy("web", pid);
        killpg(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        wait_until("the supervisor to see the exit", || {
            supervisor.state("web") != WorkloadState::Running { pid }
        })
        .await;
        assert!(
            !supervisor.is_healthy("web", pid),
            "a dead process is not healthy"
        );

        // Its policy would start it after a backoff; a converge does now,
        // and never answers with the dead pid.
        let outcome = supervisor.ensure_running(spec).await.unwrap();
        assert_ne!(outcome.pid, pid, "{outcome:?}");
        assert!(process_alive(outcome.pid as i32), "{outcome:?}");
        assert_eq!(
            supervisor.state("web"),
            WorkloadState::Running { pid: outcome.pid }
        );
        supervisor.stop_all().await;
    }

    #[tokio::test]
    async fn workloads_run_as_their_user_and_only_root_may_switch() {
        let dir = tempfile::tempdir().unwrap();
        // The workload's working directory must be open to its user.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let supervisor = supervisor(dir.path(), LogsConfig::default());
        let mut spec = workload(dir.path(), "switched", "id -u; echo $HOME; exec sleep 600");
        if user::agent_uid() == 0 {
            spec.process.user = Some("nobody".into());
            let nobody = user::lookup("nobody").unwrap();
            supervisor.ensure_running(spec.clone()).await.unwrap();
            let log = spec.log_dir.join("stdout.log");
            let expected = format!("{}\n{}\n", nobody.uid, nobody.home);
            wait_until("the workload's uid in stdout.log", || {
                read(&log) == expected
            })
            .await;
            supervisor.stop_all().await;
        } else {
            // Not root: any other user is refused before anything runs.
            spec.process.user = Some("root".into());
            let err = supervisor.ensure_running(spec).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    StartError::User(UserError::NotPermitted { uid: 0, .. })
                ),
                "{err}"
            );
            assert!(err.to_string().contains("run the agent as root"), "{err}");
            assert_eq!(supervisor.state("switched"), WorkloadState::Stopped);
        }
    }
}
