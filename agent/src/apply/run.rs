//! Run tasks: one command, once, for a rule's `run` action.
//!
//! A run task names its rule as `rule/<name>` where other tasks name a
//! service, and lists no resources: it sets no desired state, so drift,
//! prune and remove never see it. It is fenced like every task (by term,
//! once per id); since a command is not idempotent, one a crash
//! interrupted is reported failed rather than run again. It runs in
//! `<data_dir>/runs/<rule>/` under the converge lock of `rule/<name>` (no
//! service name holds a `/`), so one rule's runs never overlap and a
//! redelivery waits for the outcome instead of running it twice.

use std::collections::BTreeMap;
use std::time::Duration;

use levee_common::ids::is_valid_name;
use levee_common::resource::DEFAULT_COMMAND_TIMEOUT_MS;
use tracing::{info, warn};

use super::{Applier, refused};
use crate::clock::now_ms;
use crate::exec::{self, Exec, ExecError, Finished, tail_text};
use crate::journal::{DesiredChange, JournalEntry};
use crate::store::StoreError;
use crate::task::{ResourceOutcome, RunCommand, Task, TaskOutcome, TaskState};
use crate::util::blocking;

/// What a run task's `service` starts with, before the rule's name.
pub const RULE_PREFIX: &str = "rule/";

/// Why a run task is refused before anything runs.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RunRefusal {
    #[error(
        "a run task's service must be `rule/<name>`, the name 1-63 characters of a-z, 0-9 and `-`, not starting with `-`; got {0:?}"
    )]
    BadRule(String),
    #[error("a run task must not also remove a service")]
    WithRemove,
    #[error("a run task must not list resources")]
    WithResources,
    #[error("a run task's argv is empty")]
    EmptyArgv,
}

/// The rule a run task is for, or why it is refused.
fn rule_of<'a>(task: &'a Task, run: &RunCommand) -> Result<&'a str, RunRefusal> {
    // The name becomes a directory under `runs/`.
    let rule = task
        .service
        .strip_prefix(RULE_PREFIX)
        .filter(|rule| is_valid_name(rule))
        .ok_or_else(|| RunRefusal::BadRule(task.service.clone()))?;
    if task.remove {
        return Err(RunRefusal::WithRemove);
    }
    if task.lists_resources() {
        return Err(RunRefusal::WithResources);
    }
    if run.argv.is_empty() {
        return Err(RunRefusal::EmptyArgv);
    }
    Ok(rule)
}

/// How a run ended.
enum Ran {
    /// It ran to its end, with this status.
    Exited(Finished),
    /// It did not start, or did not end by itself (its timeout).
    Exec(ExecError),
    /// Its working directory could not be made; nothing started.
    NoWorkingDir(std::io::Error),
    /// The agent is stopping: its process group was killed.
    Stopped,
    /// The journal says it started before the agent last stopped without
    /// recording how it ended (a crash): it is not run again.
    Interrupted,
}

impl Applier {
    /// Handles a task whose `run` is set (see the module's doc).
    pub(super) async fn handle_run(
        &self,
        task: &Task,
        run: &RunCommand,
    ) -> Result<Option<TaskOutcome>, StoreError> {
        if let Some(JournalEntry::Finished(update)) = self.journal_entry(task).await? {
            info!("run task already handled; reporting the recorded outcome again");
            return Ok(Some(update));
        }
        let rule = match rule_of(task, run) {
            Ok(rule) => rule,
            Err(refusal) => {
                warn!(error = %refusal, "run task refused");
                let update = refused(task, refusal.to_string());
                return self.finish(task, update, DesiredChange::Keep).await;
            }
        };
        // Held until the outcome is recorded: a redelivery that came while
        // the command ran waits here, then finds the outcome.
        let _held = self.lock(&task.service).await;
        let ran = match self.journal_entry(task).await? {
            Some(JournalEntry::Finished(update)) => {
                info!("run task ran meanwhile; reporting its recorded outcome");
                return Ok(Some(update));
            }
            Some(JournalEntry::Started) => Ran::Interrupted,
            None if self.runs_stop.is_cancelled() => {
                // Not started, so not recorded: a resend runs it.
                info!("the agent is stopping; the run task is left for a resend");
                return Ok(None);
            }
            None => {
                let journal = self.journal.clone();
                let task_id = task.task_id.clone();
                blocking(move || journal.start(&task_id)).await?;
                self.run_command(&task.task_id, rule, run).await
            }
        };
        let update = update_for(task, &resource_key(run), ran);
        // A command is no desired state: nothing for drift or prune.
        self.finish(task, update, DesiredChange::Keep).await
    }

    async fn journal_entry(&self, task: &Task) -> Result<Option<JournalEntry>, StoreError> {
        let journal = self.journal.clone();
        let task_id = task.task_id.clone();
        blocking(move || journal.get(&task_id)).await
    }

    /// Runs `run` for `rule` until it ends, times out or the agent stops.
    async fn run_command(&self, task_id: &str, rule: &str, run: &RunCommand) -> Ran {
        let working_dir = self.runs_dir.join(rule);
        let dir = working_dir.clone();
        if let Err(err) = blocking(move || std::fs::create_dir_all(&dir)).await {
            return Ran::NoWorkingDir(err);
        }
        let mut env: BTreeMap<String, String> = run.env.clone();
        // Inserted last, so the task's own env cannot override them.
        env.insert("LEVEE_TASK_ID".into(), task_id.to_owned());
        env.insert("LEVEE_RULE".into(), rule.to_owned());
        let timeout_ms = match run.timeout_ms {
            0 => DEFAULT_COMMAND_TIMEOUT_MS,
            ms => ms,
        };
        let running = exec::run_keeping_stdout(Exec {
            argv: &run.argv,
            env: &env,
            working_dir: &working_dir,
            timeout: Duration::from_millis(u64::from(timeout_ms)),
        });
        tokio::select! {
            // Dropping `running` kills the command's process group.
            () = self.runs_stop.cancelled() => Ran::Stopped,
            result = running => match result {
                Ok(finished) => Ran::Exited(finished),
                Err(err) => Ran::Exec(err),
            },
        }
    }
}

/// The outcome's resource: `run:<argv[0]>`.
fn resource_key(run: &RunCommand) -> String {
    format!("run:{}", run.argv.first().map_or("", String::as_str))
}

/// The update for a run that got past the refusals: one outcome, and the
/// error when it did not exit 0.
fn update_for(task: &Task, resource: &str, ran: Ran) -> TaskOutcome {
    let (changed, detail, error) = match ran {
        Ran::Exited(finished) => {
            let stdout = finished.stdout_text();
            let detail = if stdout.is_empty() {
                format!("{}; no stdout", finished.describe())
            } else {
                format!("{}; stdout tail: {stdout}", finished.describe())
            };
            let error = (!finished.success()).then(|| {
                with_stderr(
                    format!("failed with {}", finished.describe()),
                    &finished.stderr_text(),
                )
            });
            (true, detail, error)
        }
        Ran::Exec(err) => {
            let (changed, detail) = match &err {
                ExecError::TimedOut { .. } => (true, "killed at its timeout"),
                ExecError::Wait { .. } => (true, "started; how it ended is unknown"),
                ExecError::EmptyArgv | ExecError::Spawn { .. } => (false, "not started"),
            };
            let error = match &err {
                ExecError::TimedOut { stderr_tail, .. } => {
                    with_stderr(err.to_string(), &tail_text(stderr_tail))
                }
                _ => err.to_string(),
            };
            (changed, detail.to_owned(), Some(error))
        }
        Ran::NoWorkingDir(err) => (
            false,
            "not started".to_owned(),
            Some(format!("cannot create its working directory: {err}")),
        ),
        Ran::Stopped => (
            true,
            "killed: the agent stopped".to_owned(),
            Some("the agent stopped while it ran; its process group was killed".to_owned()),
        ),
        Ran::Interrupted => (
            true,
            "interrupted: the agent stopped while it ran".to_owned(),
            Some(
                "the agent stopped while it ran, without recording how it ended; not run again"
                    .to_owned(),
            ),
        ),
    };
    match &error {
        None => info!(%resource, %detail, "run task succeeded"),
        Some(error) => warn!(%resource, %error, "run task failed"),
    }
    TaskOutcome {
        task_id: task.task_id.clone(),
        term: task.term,
        state: if error.is_none() {
            TaskState::Succeeded
        } else {
            TaskState::Failed
        },
        outcomes: vec![ResourceOutcome {
            resource: resource.to_owned(),
            changed,
            detail,
        }],
        error: error.map_or_else(String::new, |error| format!("{resource}: {error}")),
        finished_unix_ms: now_ms(),
    }
}

fn with_stderr(message: String, stderr: &str) -> String {
    if stderr.is_empty() {
        format!("{message}; no stderr")
    } else {
        format!("{message}; stderr: {stderr}")
    }
}

#[cfg(test)]
mod tests;
