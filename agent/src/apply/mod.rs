//! Applying tasks: fencing by term, at most once per task id, converging
//! each resource idempotently, and reporting what changed. A task that
//! drops a file or process its service had before removes it (prune), and
//! a `remove` task takes the whole service off this host. A `run` task runs
//! one command for a rule and sets no desired state ([`run`]).
//!
//! A task is refused (`Refused`) only before anything is touched: a bad
//! service name, a resource that cannot be read, a path outside the roots.
//! Once applying began, a failure is `Failed`, and the task's resources
//! still become the service's stored desired state: the host runs (part
//! of) them, so a later remove, prune or drift check must know them.

mod command;
mod directory;
mod file;
mod preflight;
mod remove;
pub mod run;
mod totals;
mod worker;

pub use totals::TaskTotals;
pub use worker::apply_tasks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use levee_common::agent_config::AgentConfig;
use levee_common::ids::is_valid_name;
use levee_common::resource::{
    CommandResource, DirectoryResource, FileResource, ProcessResource, Resource,
};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::clock::now_ms;
use crate::health;
use crate::journal::{DesiredChange, Journal, JournalEntry};
use crate::paths::Roots;
use crate::store::StoreError;
use crate::supervisor::{Supervisor, WorkloadSpec};
use crate::task::{ResourceOutcome, Task, TaskOutcome, TaskState};
use crate::util::blocking;

use self::totals::TaskCounters;

/// Applies tasks and the stored desired state.
#[derive(Clone)]
pub struct Applier {
    journal: Journal,
    supervisor: Supervisor,
    roots: Roots,
    services_dir: PathBuf,
    logs_dir: PathBuf,
    /// Where each rule's run tasks run, one directory per rule.
    runs_dir: PathBuf,
    /// Cancelled when the agent stops: running commands are killed.
    runs_stop: CancellationToken,
    /// One lock per service, held while it is converged or checked for
    /// drift, so a drift check never sees (or corrects) a task half
    /// applied. Per service, so one service's health wait never holds up
    /// another's task or drift check.
    converging: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>,
    /// Tasks finished since the agent started, by outcome.
    finished: Arc<TaskCounters>,
}

/// Proof that the caller holds one service's converge lock.
pub struct ConvergeLock {
    service: String,
    _guard: OwnedMutexGuard<()>,
}

impl ConvergeLock {
    /// The service this lock is for.
    pub fn service(&self) -> &str {
        &self.service
    }
}

/// Why one resource could not be converged.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{resource}: {reason}")]
    Refused { resource: String, reason: String },
    #[error("{resource}: {reason}")]
    Failed { resource: String, reason: String },
}

impl ApplyError {
    /// The same error once applying began: a refusal found then (say, a
    /// symlink planted since the paths were checked) is a failure, since
    /// something may already have changed.
    fn once_applying(self) -> Self {
        match self {
            ApplyError::Refused { resource, reason } => ApplyError::Failed { resource, reason },
            failed => failed,
        }
    }
}

/// What kind of converge this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Wait for a (re)started workload to pass its health check.
    pub wait_healthy: bool,
    /// Run commands that have neither `creates` nor `unless`, when they are
    /// new or changed since they last ran. Only a task asks for that:
    /// re-converging stored state must not repeat them.
    pub unguarded_commands: bool,
    /// Start again a workload that completed (exit code 0, not restarted by
    /// its policy). Only a task does: its work is done, which is no drift.
    pub restart_completed: bool,
}

impl Pass {
    /// A task from the controller.
    pub const TASK: Pass = Pass {
        wait_healthy: true,
        unguarded_commands: true,
        restart_completed: true,
    };
    /// The stored desired state on start: workloads come back quickly and
    /// the link is not held up by health checks; the next task or drift
    /// check waits for them.
    pub const RESTORE: Pass = Pass {
        wait_healthy: false,
        unguarded_commands: false,
        restart_completed: false,
    };
    /// Correcting drift.
    pub const CORRECT: Pass = Pass {
        wait_healthy: true,
        unguarded_commands: false,
        restart_completed: false,
    };
}

impl Applier {
    pub fn new(
        config: &AgentConfig,
        journal: Journal,
        supervisor: Supervisor,
        roots: Roots,
    ) -> Self {
        Self {
            journal,
            supervisor,
            roots,
            services_dir: config.data_dir.join("services"),
            logs_dir: config.logs_dir(),
            runs_dir: config.data_dir.join("runs"),
            runs_stop: CancellationToken::new(),
            converging: Arc::default(),
            finished: Arc::default(),
        }
    }

    /// Tasks this agent process finished, by outcome; a recorded outcome
    /// reported again is not counted twice.
    pub fn task_totals(&self) -> TaskTotals {
        self.finished.totals()
    }

    /// Handles one task from the controller and returns the update to send,
    /// or `None` for a task from a deposed leader: it is refused unapplied
    /// and not reported, since the report could reach the real leader and
    /// end a task that is still valid there. A run task that arrives once
    /// [`Applier::stop_runs`] was called is `None` too: left for a resend.
    pub async fn handle(&self, task: Task) -> Result<Option<TaskOutcome>, StoreError> {
        let span = info_span!("apply", task_id = %task.task_id, plan_id = %task.plan_id, service = %task.service, term = task.term, remove = task.remove, run = task.run.is_some());
        self.handle_inner(task).instrument(span).await
    }

    /// Kills the commands of run tasks still running, recording each as
    /// failed, and starts no more: the agent is stopping.
    pub fn stop_runs(&self) {
        self.runs_stop.cancel();
    }

    async fn handle_inner(&self, task: Task) -> Result<Option<TaskOutcome>, StoreError> {
        let journal = self.journal.clone();
        let term = task.term;
        if !blocking(move || journal.observe_term(term)).await? {
            let highest = self.journal.highest_term()?;
            warn!(
                highest,
                "refused a task from a stale leader: its term {term} is older than term {highest} already seen"
            );
            return Ok(None);
        }
        if let Some(run) = &task.run {
            return self.handle_run(&task, run).await;
        }
        let journal = self.journal.clone();
        let task_id = task.task_id.clone();
        match blocking(move || journal.get(&task_id)).await? {
            Some(JournalEntry::Finished(update)) => {
                info!("task already applied; reporting the recorded outcome again");
                return Ok(Some(update));
            }
            Some(JournalEntry::Started) => info!("task was interrupted; converging again"),
            None => {}
        }
        if !is_valid_name(&task.service) {
            // It becomes a directory name under the services directory.
            let reason = format!(
                "service name {:?} must be 1-63 characters of a-z, 0-9 and `-`, not starting with `-`",
                task.service
            );
            return self
                .finish(&task, refused(&task, reason), DesiredChange::Keep)
                .await;
        }
        if task.remove && task.lists_resources() {
            let reason = "a remove task must not list resources".to_owned();
            return self
                .finish(&task, refused(&task, reason), DesiredChange::Keep)
                .await;
        }
        let resources = match &task.resources {
            Ok(resources) => resources.clone(),
            Err(reason) => {
                return self
                    .finish(&task, refused(&task, reason.clone()), DesiredChange::Keep)
                    .await;
            }
        };
        let held = self.lock(&task.service).await;
        let journal = self.journal.clone();
        let task_id = task.task_id.clone();
        blocking(move || journal.start(&task_id)).await?;
        let previous = self.stored(&held).await?;
        let mut outcomes = Vec::new();
        let result = if task.remove {
            self.remove_service(&task.service, previous.as_deref(), &mut outcomes)
                .await
        } else {
            self.apply_resources(
                &task.task_id,
                &held,
                previous.as_deref().unwrap_or_default(),
                &resources,
                &mut outcomes,
            )
            .await
        };
        let (state, error) = match result {
            Ok(()) => {
                info!(
                    changed = outcomes.iter().filter(|outcome| outcome.changed).count(),
                    "task applied"
                );
                (TaskState::Succeeded, String::new())
            }
            Err(err) => {
                warn!(error = %err, "task did not apply");
                let state = match err {
                    ApplyError::Refused { .. } => TaskState::Refused,
                    ApplyError::Failed { .. } => TaskState::Failed,
                };
                (state, err.to_string())
            }
        };
        let update = TaskOutcome {
            task_id: task.task_id.clone(),
            term,
            state,
            outcomes,
            error,
            finished_unix_ms: now_ms(),
        };
        let change = match (update.state == TaskState::Refused, task.remove) {
            // Refused before anything was touched: nothing changed.
            (true, _) => DesiredChange::Keep,
            // Its processes were stopped first: even if a file could not be
            // deleted, nothing must bring the service back.
            (false, true) => DesiredChange::Remove(task.service.clone()),
            // Applied, wholly or in part: the host now runs (part of) this.
            (false, false) => DesiredChange::Set(task.service.clone(), resources),
        };
        let finished = self.finish(&task, update, change).await;
        drop(held);
        finished
    }

    /// A task's resources: every path is checked first (a refusal leaves
    /// the host untouched, prune included), then processes it no longer
    /// lists are stopped (two versions of a workload never run at once),
    /// then everything is converged, then files it no longer lists are
    /// deleted.
    async fn apply_resources(
        &self,
        task_id: &str,
        held: &ConvergeLock,
        previous: &[Resource],
        resources: &[Resource],
        outcomes: &mut Vec<ResourceOutcome>,
    ) -> Result<(), ApplyError> {
        let service = held.service();
        self.check_paths(service, resources).await?;
        self.prune_processes(previous, resources, outcomes).await;
        // A workload this task (re)starts names the task in its exit event
        // if it exits soon after: the controllers see the loop.
        let processes: Vec<&str> = resources
            .iter()
            .filter_map(|resource| match resource {
                Resource::Process(process) => Some(process.name.as_str()),
                _ => None,
            })
            .collect();
        for name in &processes {
            self.supervisor.expect_start_by(name, task_id);
        }
        let converged = self
            .converge(service, resources, Pass::TASK, outcomes)
            .await
            .map_err(ApplyError::once_applying);
        for name in &processes {
            self.supervisor.forget_expected(name);
        }
        // Pruned after a failure too: the task's resources become the
        // stored state either way, and a file only the previous state
        // listed would otherwise never be pruned.
        self.prune_files(service, previous, resources, outcomes)
            .await;
        converged
    }

    /// Checks every path of `resources` against the roots, creating
    /// nothing.
    async fn check_paths(&self, service: &str, resources: &[Resource]) -> Result<(), ApplyError> {
        let roots = self.roots.clone();
        let service_dir = self.service_dir(service);
        let resources = resources.to_vec();
        blocking(move || preflight::paths(&roots, &service_dir, &resources)).await
    }

    async fn finish(
        &self,
        task: &Task,
        update: TaskOutcome,
        change: DesiredChange,
    ) -> Result<Option<TaskOutcome>, StoreError> {
        let journal = self.journal.clone();
        let task_id = task.task_id.clone();
        let recorded = update.clone();
        blocking(move || journal.finish(&task_id, &recorded, change)).await?;
        self.finished.record(update.state);
        Ok(Some(update))
    }

    /// Takes `service`'s converge lock, held while it is converged or
    /// checked for drift. Other services are not held up.
    pub async fn lock(&self, service: &str) -> ConvergeLock {
        let lock = self
            .converging
            .lock()
            // Each critical section is one map lookup: still consistent.
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(service.to_owned())
            .or_default()
            .clone();
        ConvergeLock {
            service: service.to_owned(),
            _guard: lock.lock_owned().await,
        }
    }

    /// The stored desired state of the service whose lock is held.
    pub async fn stored(&self, held: &ConvergeLock) -> Result<Option<Vec<Resource>>, StoreError> {
        let journal = self.journal.clone();
        let service = held.service().to_owned();
        blocking(move || journal.desired_of(&service)).await
    }

    /// The services with a stored desired state.
    pub async fn stored_services(&self) -> Result<Vec<String>, StoreError> {
        let journal = self.journal.clone();
        let desired = blocking(move || journal.desired()).await?;
        Ok(desired.into_iter().map(|(service, _)| service).collect())
    }

    /// Converges the stored desired state, as on start after a restart.
    pub async fn converge_desired(&self) -> Result<(), StoreError> {
        for service in self.stored_services().await? {
            let held = self.lock(&service).await;
            let Some(resources) = self.stored(&held).await? else {
                continue;
            };
            let mut outcomes = Vec::new();
            match self
                .converge_locked(&held, &resources, Pass::RESTORE, &mut outcomes)
                .await
            {
                Ok(()) => info!(%service, "converged the stored desired state"),
                Err(err) => {
                    warn!(%service, error = %err, "could not converge the stored desired state")
                }
            }
        }
        Ok(())
    }

    /// Converges `resources` of the service whose lock the caller holds,
    /// refusing before anything is touched if a path is outside the roots.
    pub async fn converge_locked(
        &self,
        held: &ConvergeLock,
        resources: &[Resource],
        pass: Pass,
        outcomes: &mut Vec<ResourceOutcome>,
    ) -> Result<(), ApplyError> {
        self.check_paths(held.service(), resources).await?;
        self.converge(held.service(), resources, pass, outcomes)
            .await
            .map_err(ApplyError::once_applying)
    }

    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Where service `name` keeps its files and runs.
    pub fn service_dir(&self, service: &str) -> PathBuf {
        self.services_dir.join(service)
    }

    /// Converges resources in order, stopping at the first failure.
    async fn converge(
        &self,
        service: &str,
        resources: &[Resource],
        pass: Pass,
        outcomes: &mut Vec<ResourceOutcome>,
    ) -> Result<(), ApplyError> {
        let service_dir = self.service_dir(service);
        // A workload reads its files when it starts: when any of them
        // changed, it is restarted so the change takes effect (and a
        // health-gated rollout checks the new configuration).
        let mut prepared_changed = false;
        for resource in resources {
            let key = resource.key();
            let (changed, detail) = match resource {
                Resource::File(spec) => self.converge_file(&service_dir, spec).await,
                Resource::Directory(spec) => self.converge_directory(&service_dir, spec).await,
                Resource::Command(spec) => {
                    self.converge_command(service, &service_dir, spec, pass)
                        .await
                }
                Resource::Process(process) => {
                    self.converge_process(&service_dir, process, pass, prepared_changed)
                        .await
                }
            }
            .map_err(|failure| failure.of(&key))?;
            prepared_changed |= changed;
            outcomes.push(ResourceOutcome {
                resource: key,
                changed,
                detail,
            });
        }
        Ok(())
    }

    async fn converge_file(
        &self,
        service_dir: &Path,
        spec: &FileResource,
    ) -> Result<(bool, String), Failure> {
        let refuse = Failure::Refused;
        let path = self
            .roots
            .resolve(service_dir, &spec.path)
            .map_err(|err| refuse(err.to_string()))?;
        let parent = path
            .parent()
            .ok_or_else(|| refuse("path has no parent directory".into()))?;
        let parent = self
            .roots
            .prepare_dir(parent)
            .map_err(|err| refuse(err.to_string()))?;
        let file_name = path
            .file_name()
            .ok_or_else(|| refuse("path names no file".into()))?;
        let target = parent.join(file_name);
        let content = spec.content.clone().into_bytes();
        let mode = spec.mode;
        blocking(move || file::converge(&target, &content, mode))
            .await
            .map_err(|err| Failure::Failed(err.to_string()))
    }

    async fn converge_directory(
        &self,
        service_dir: &Path,
        spec: &DirectoryResource,
    ) -> Result<(bool, String), Failure> {
        let path = self
            .roots
            .resolve(service_dir, &spec.path)
            .map_err(|err| Failure::Refused(err.to_string()))?;
        let roots = self.roots.clone();
        let mode = spec.mode;
        blocking(move || directory::converge(&roots, &path, mode))
            .await
            .map_err(|err| match err {
                directory::DirectoryError::Path(err) => Failure::Refused(err.to_string()),
                other => Failure::Failed(other.to_string()),
            })
    }

    /// A command without guards runs only when a task asks and it is new
    /// or changed since it last ran for this service: a resent task, a
    /// later task with the same command, and drift correction skip it.
    async fn converge_command(
        &self,
        service: &str,
        service_dir: &Path,
        spec: &CommandResource,
        pass: Pass,
    ) -> Result<(bool, String), Failure> {
        let unguarded = spec.creates.is_none() && spec.unless.is_none();
        if unguarded && !pass.unguarded_commands {
            return Ok((
                false,
                "skipped: a command without guards runs only when a task asks".into(),
            ));
        }
        if unguarded && self.ran_command(service, &spec.name).await?.as_ref() == Some(spec) {
            return Ok((
                false,
                "skipped: ran already; a command without guards runs again only when it changes"
                    .into(),
            ));
        }
        let working_dir = self.working_dir(service_dir, spec.working_dir.as_deref())?;
        let creates = spec
            .creates
            .as_deref()
            .map(|creates| self.roots.resolve(service_dir, creates))
            .transpose()
            .map_err(|err| Failure::Refused(err.to_string()))?;
        let converged = command::converge(spec, &working_dir, creates.as_deref())
            .await
            .map_err(|err| Failure::Failed(err.to_string()))?;
        if unguarded {
            let journal = self.journal.clone();
            let (service, ran) = (service.to_owned(), spec.clone());
            blocking(move || journal.record_ran(&service, &ran))
                .await
                .map_err(|err| Failure::Failed(format!("ran, but recording that failed: {err}")))?;
        }
        Ok(converged)
    }

    /// The version of command `name` of `service` that last ran unguarded.
    async fn ran_command(
        &self,
        service: &str,
        name: &str,
    ) -> Result<Option<CommandResource>, Failure> {
        let journal = self.journal.clone();
        let (service, name) = (service.to_owned(), name.to_owned());
        blocking(move || journal.ran_command(&service, &name))
            .await
            .map_err(|err| Failure::Failed(format!("reading the journal: {err}")))
    }

    async fn converge_process(
        &self,
        service_dir: &Path,
        process: &ProcessResource,
        pass: Pass,
        files_changed: bool,
    ) -> Result<(bool, String), Failure> {
        let working_dir = self.working_dir(service_dir, process.working_dir.as_deref())?;
        let spec = WorkloadSpec {
            process: process.clone(),
            working_dir: working_dir.clone(),
            log_dir: self.logs_dir.join(&process.name),
        };
        if !pass.restart_completed && self.supervisor.completed(&spec) {
            return Ok((
                false,
                "completed with exit code 0; not started again".into(),
            ));
        }
        let mut outcome = self
            .supervisor
            .ensure_running(spec.clone())
            .await
            .map_err(|err| Failure::Failed(format!("cannot start: {err}")))?;
        if files_changed && !outcome.changed {
            self.supervisor.stop(&process.name).await;
            outcome = self
                .supervisor
                .ensure_running(spec)
                .await
                .map_err(|err| Failure::Failed(format!("cannot restart: {err}")))?;
            outcome.detail = format!("restarted for changed files, pid {}", outcome.pid);
        }
        let mut detail = outcome.detail;
        if let Some(check) = &process.health
            && pass.wait_healthy
            && !self.supervisor.is_healthy(&process.name, outcome.pid)
        {
            let exited = self.supervisor.exited(&process.name, outcome.pid);
            let probes = health::wait_healthy(check, &working_dir, exited)
                .await
                .map_err(|err| Failure::Failed(format!("not healthy: {err}")))?;
            self.supervisor.mark_healthy(&process.name, outcome.pid);
            info!(workload = %process.name, pid = outcome.pid, probes, "workload healthy");
            detail.push_str(&format!(", healthy after {probes} probe(s)"));
        }
        Ok((outcome.changed, detail))
    }

    /// A working directory, beneath the roots, created if missing.
    fn working_dir(&self, service_dir: &Path, dir: Option<&str>) -> Result<PathBuf, Failure> {
        self.roots
            .resolve(service_dir, dir.unwrap_or("."))
            .and_then(|dir| self.roots.prepare_dir(&dir))
            .map_err(|err| Failure::Refused(err.to_string()))
    }
}

/// How converging one resource failed, before its key is attached.
enum Failure {
    /// The task asks for something this host does not allow.
    Refused(String),
    /// It was allowed but did not work.
    Failed(String),
}

impl Failure {
    fn of(self, resource: &str) -> ApplyError {
        let resource = resource.to_owned();
        match self {
            Failure::Refused(reason) => ApplyError::Refused { resource, reason },
            Failure::Failed(reason) => ApplyError::Failed { resource, reason },
        }
    }
}

fn refused(task: &Task, reason: String) -> TaskOutcome {
    TaskOutcome {
        task_id: task.task_id.clone(),
        term: task.term,
        state: TaskState::Refused,
        outcomes: Vec::new(),
        error: reason,
        finished_unix_ms: now_ms(),
    }
}

#[cfg(test)]
mod tests;
