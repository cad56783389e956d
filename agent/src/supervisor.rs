//! Supervised workloads: starting them, watching them, stopping them, and
//! turning unexpected exits into `host.process.exited` events.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use levee_common::event::types::PROCESS_EXITED;
use levee_common::resource::{ProcessResource, RestartPolicy};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use redb::{Database, ReadableDatabase, ReadableTable};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::outbox::Outbox;
use crate::store::{StoreError, WORKLOADS};
use crate::util::{blocking, now_ms};

/// Environment variable marking a workload as ours, checked before the
/// agent kills a leftover process group after a crash.
const WORKLOAD_ENV: &str = "LEVEE_WORKLOAD";
/// How long a workload gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
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
}

#[derive(Clone)]
pub struct Supervisor {
    workloads: Arc<Mutex<HashMap<String, Running>>>,
    outbox: Outbox,
    db: Arc<Database>,
}

struct Running {
    spec: WorkloadSpec,
    pid: u32,
    stop: CancellationToken,
    watcher: JoinHandle<()>,
}

impl Supervisor {
    pub fn new(outbox: Outbox, db: Arc<Database>) -> Self {
        Self {
            workloads: Arc::default(),
            outbox,
            db,
        }
    }

    /// Makes `spec` run: unchanged if it already runs as specified,
    /// restarted if its spec changed, started if it is not running.
    pub async fn ensure_running(&self, spec: WorkloadSpec) -> std::io::Result<WorkloadOutcome> {
        let name = spec.process.name.clone();
        let previous = {
            let mut workloads = self.lock();
            match workloads.get(&name) {
                Some(running) if running.spec == spec && !running.watcher.is_finished() => {
                    return Ok(WorkloadOutcome {
                        changed: false,
                        detail: format!("running, pid {}", running.pid),
                    });
                }
                _ => workloads.remove(&name),
            }
        };
        let replaced = previous.is_some();
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
        })
    }

    #[cfg(test)]
    pub fn outbox_for_tests(&self) -> Outbox {
        self.outbox.clone()
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
            if is_our_workload(pgid as u32, &name) {
                warn!(workload = %name, pgid, "stopping a workload left running by a previous agent");
                let _ = killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
            }
            self.forget(&name, None).await?;
        }
        Ok(())
    }

    /// Spawns the workload and a watcher task that restarts it as its
    /// policy says, until it is stopped or gives up.
    async fn start(&self, spec: WorkloadSpec) -> std::io::Result<u32> {
        let child = spawn(&spec)?;
        let pid = child.id().unwrap_or_default();
        self.remember(&spec.process.name, pid)
            .await
            .map_err(std::io::Error::other)?;
        let stop = CancellationToken::new();
        info!(workload = %spec.process.name, pid, argv = ?spec.process.argv, "workload started");
        let span = info_span!("workload", name = %spec.process.name);
        let watcher = tokio::spawn(
            self.clone()
                .watch(spec.clone(), child, stop.clone())
                .instrument(span),
        );
        self.lock().insert(
            spec.process.name.clone(),
            Running {
                spec,
                pid,
                stop,
                watcher,
            },
        );
        Ok(pid)
    }

    async fn watch(self, spec: WorkloadSpec, mut child: Child, stop: CancellationToken) {
        let name = spec.process.name.clone();
        let mut restarts: u32 = 0;
        let mut pid = child.id().unwrap_or_default();
        loop {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = stop.cancelled() => return terminate(&mut child, pid).await,
            };
            self.report_exit(&name, pid, &status, restarts).await;
            let code = status.as_ref().ok().and_then(ExitStatus::code);
            let restart = match spec.process.restart {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => code != Some(0),
                RestartPolicy::Always => true,
            };
            if !restart {
                break;
            }
            let delay = Duration::from_secs(1u64 << restarts.min(5)).min(MAX_RESTART_DELAY);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => break,
            }
            restarts += 1;
            child = match spawn(&spec) {
                Ok(child) => child,
                Err(err) => {
                    warn!(error = %err, "restart failed; giving up");
                    break;
                }
            };
            pid = child.id().unwrap_or_default();
            let _ = self.remember(&name, pid).await;
            if let Some(running) = self.lock().get_mut(&name) {
                running.pid = pid;
            }
            info!(pid, restarts, "workload restarted by its restart policy");
        }
        {
            // The entry is ours unless a newer start replaced it.
            let mut workloads = self.lock();
            if workloads
                .get(&name)
                .is_some_and(|running| running.pid == pid)
            {
                workloads.remove(&name);
            }
        }
        let _ = self.forget(&name, Some(pid)).await;
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
        let data = json!({ "service": name, "pid": pid, "exit_code": code, "signal": signal, "restarts": restarts });
        let outbox = self.outbox.clone();
        let subject = name.to_owned();
        if let Err(err) =
            blocking(move || outbox.append(PROCESS_EXITED, &subject, &data, now_ms())).await
        {
            warn!(error = %err, "could not record the exit event");
        }
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
}

fn spawn(spec: &WorkloadSpec) -> std::io::Result<Child> {
    std::fs::create_dir_all(&spec.log_dir)?;
    let log = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.log_dir.join(name))
    };
    let (program, args) = spec
        .process
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty argv"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(&spec.process.env)
        .env(WORKLOAD_ENV, &spec.process.name)
        .current_dir(&spec.working_dir)
        .stdin(Stdio::null())
        .stdout(log("stdout.log")?)
        .stderr(log("stderr.log")?)
        // Its own process group, so stopping it stops its children too.
        .process_group(0);
    command.spawn()
}

async fn stop_running(running: Running) {
    running.stop.cancel();
    let _ = running.watcher.await;
}

/// SIGTERM to the group, then SIGKILL after the grace period.
async fn terminate(child: &mut Child, pid: u32) {
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        warn!("workload ignored SIGTERM; killing it");
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Reap any stragglers left in the group.
    let _ = killpg(group, Signal::SIGKILL);
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
