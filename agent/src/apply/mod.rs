//! Applying tasks: fencing by term, at most once per task id, converging
//! each resource idempotently, and reporting what changed.

mod file;

use std::path::PathBuf;

use levee_common::agent_config::AgentConfig;
use levee_common::pb;
use levee_common::resource::Resource;
use tracing::{Instrument, info, info_span, warn};

use crate::journal::{Journal, JournalEntry};
use crate::paths::Roots;
use crate::store::StoreError;
use crate::supervisor::{Supervisor, WorkloadSpec};
use crate::util::{blocking, now_ms};

/// Applies tasks and the stored desired state.
#[derive(Clone)]
pub struct Applier {
    journal: Journal,
    supervisor: Supervisor,
    roots: Roots,
    services_dir: PathBuf,
    logs_dir: PathBuf,
}

/// Why one resource could not be converged.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{resource}: {reason}")]
    Refused { resource: String, reason: String },
    #[error("{resource}: {reason}")]
    Failed { resource: String, reason: String },
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
            logs_dir: config.data_dir.join("logs"),
        }
    }

    /// Handles one task from the controller and returns the update to send,
    /// or `None` for a task from a deposed leader: it is refused unapplied
    /// and not reported, since the report could reach the real leader and
    /// end a task that is still valid there.
    pub async fn handle(&self, task: pb::Task) -> Result<Option<pb::TaskUpdate>, StoreError> {
        let span = info_span!("apply", task_id = %task.task_id, plan_id = %task.plan_id, service = %task.service, term = task.term);
        self.handle_inner(task).instrument(span).await
    }

    async fn handle_inner(&self, task: pb::Task) -> Result<Option<pb::TaskUpdate>, StoreError> {
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
        let resources = match task
            .resources
            .iter()
            .cloned()
            .map(Resource::try_from)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(resources) => resources,
            Err(err) => {
                return self
                    .finish(&task, refused(&task, err.to_string()), None)
                    .await;
            }
        };
        let journal = self.journal.clone();
        let task_id = task.task_id.clone();
        blocking(move || journal.start(&task_id)).await?;
        let mut update = pb::TaskUpdate {
            task_id: task.task_id.clone(),
            term,
            ..Default::default()
        };
        match self
            .converge(&task.service, &resources, &mut update.outcomes)
            .await
        {
            Ok(()) => {
                update.state = pb::TaskState::Succeeded as i32;
                info!(
                    changed = update
                        .outcomes
                        .iter()
                        .filter(|outcome| outcome.changed)
                        .count(),
                    "task applied"
                );
            }
            Err(err) => {
                update.state = match err {
                    ApplyError::Refused { .. } => pb::TaskState::Refused,
                    ApplyError::Failed { .. } => pb::TaskState::Failed,
                } as i32;
                update.error = err.to_string();
                warn!(error = %err, "task did not apply");
            }
        }
        update.finished_unix_ms = now_ms();
        let succeeded = update.state == pb::TaskState::Succeeded as i32;
        self.finish(&task, update, succeeded.then_some(resources))
            .await
    }

    async fn finish(
        &self,
        task: &pb::Task,
        update: pb::TaskUpdate,
        desired: Option<Vec<Resource>>,
    ) -> Result<Option<pb::TaskUpdate>, StoreError> {
        let journal = self.journal.clone();
        let task_id = task.task_id.clone();
        let service = task.service.clone();
        let recorded = update.clone();
        blocking(move || {
            journal.finish(
                &task_id,
                &recorded,
                desired
                    .as_ref()
                    .map(|resources| (service.as_str(), resources.as_slice())),
            )
        })
        .await?;
        Ok(Some(update))
    }

    /// Converges the stored desired state, as on start after a restart.
    pub async fn converge_desired(&self) -> Result<(), StoreError> {
        let journal = self.journal.clone();
        for (service, resources) in blocking(move || journal.desired()).await? {
            let mut outcomes = Vec::new();
            match self.converge(&service, &resources, &mut outcomes).await {
                Ok(()) => info!(%service, "converged the stored desired state"),
                Err(err) => {
                    warn!(%service, error = %err, "could not converge the stored desired state")
                }
            }
        }
        Ok(())
    }

    /// Converges resources in order, stopping at the first failure.
    async fn converge(
        &self,
        service: &str,
        resources: &[Resource],
        outcomes: &mut Vec<pb::ResourceOutcome>,
    ) -> Result<(), ApplyError> {
        let service_dir = self.services_dir.join(service);
        for resource in resources {
            let key = resource.key();
            let refuse = |reason: String| ApplyError::Refused {
                resource: key.clone(),
                reason,
            };
            let fail = |reason: String| ApplyError::Failed {
                resource: key.clone(),
                reason,
            };
            let (changed, detail) = match resource {
                Resource::File(spec) => {
                    let path = self
                        .roots
                        .resolve(&service_dir, &spec.path)
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
                        .map_err(|err| fail(err.to_string()))?
                }
                Resource::Process(process) => {
                    let working_dir = self
                        .roots
                        .resolve(&service_dir, process.working_dir.as_deref().unwrap_or("."))
                        .and_then(|dir| self.roots.prepare_dir(&dir))
                        .map_err(|err| refuse(err.to_string()))?;
                    let spec = WorkloadSpec {
                        process: process.clone(),
                        working_dir,
                        log_dir: self.logs_dir.join(&process.name),
                    };
                    let outcome = self
                        .supervisor
                        .ensure_running(spec)
                        .await
                        .map_err(|err| fail(format!("cannot start: {err}")))?;
                    (outcome.changed, outcome.detail)
                }
            };
            outcomes.push(pb::ResourceOutcome {
                resource: key,
                changed,
                detail,
            });
        }
        Ok(())
    }
}

fn refused(task: &pb::Task, reason: String) -> pb::TaskUpdate {
    pb::TaskUpdate {
        task_id: task.task_id.clone(),
        term: task.term,
        state: pb::TaskState::Refused as i32,
        error: reason,
        finished_unix_ms: now_ms(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
