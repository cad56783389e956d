//! The task worker: takes the tasks the link received, in order, and sends
//! their updates back.
//!
//! Tasks that converge services are applied one after another. A run task
//! runs on a task of its own, since its command may take its whole timeout
//! and must not hold up the services' tasks meanwhile; it still records and
//! reports its outcome once (see [`super::run`]).

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, warn};

use super::Applier;
use crate::store::StoreError;
use crate::task::{Task, TaskOutcome};

/// Applies `tasks` until `stop` is cancelled or the link goes away. A task
/// being applied then finishes; commands still running are killed and
/// recorded as failed before this returns, so a resend never runs them
/// again.
pub async fn apply_tasks(
    applier: Applier,
    mut tasks: mpsc::UnboundedReceiver<Task>,
    updates: mpsc::Sender<TaskOutcome>,
    stop: CancellationToken,
) {
    let mut runs = JoinSet::new();
    loop {
        let task = tokio::select! {
            _ = stop.cancelled() => break,
            Some(joined) = runs.join_next() => {
                reaped(joined);
                continue;
            }
            task = tasks.recv() => match task { Some(task) => task, None => break },
        };
        if task.run.is_some() {
            let (applier, updates) = (applier.clone(), updates.clone());
            runs.spawn(
                async move {
                    // The link is gone only when the agent stops: the
                    // outcome is recorded and a resend gets it.
                    let _ = report(applier.handle(task).await, &updates).await;
                }
                .in_current_span(),
            );
            continue;
        }
        if report(applier.handle(task).await, &updates).await.is_err() {
            break;
        }
    }
    applier.stop_runs();
    while let Some(joined) = runs.join_next().await {
        reaped(joined);
    }
}

/// The link stopped taking updates.
struct LinkGone;

/// Sends a task's update, if it has one.
async fn report(
    handled: Result<Option<TaskOutcome>, StoreError>,
    updates: &mpsc::Sender<TaskOutcome>,
) -> Result<(), LinkGone> {
    match handled {
        Ok(Some(update)) => updates.send(update).await.map_err(|_| LinkGone),
        Ok(None) => Ok(()),
        Err(err) => {
            warn!(error = %err, "task journal error; the task will be retried when redelivered");
            Ok(())
        }
    }
}

fn reaped(joined: Result<(), tokio::task::JoinError>) {
    if let Err(err) = joined {
        warn!(error = %err, "a run task ended abnormally");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use levee_common::resource::{FileResource, Resource};

    use super::*;
    use crate::task::{RunCommand, TaskState};
    use crate::testing::{Fixture, PATIENCE, fixture, process_alive, wait_until};

    fn run_task(task_id: &str, rule: &str, script: &str) -> Task {
        Task {
            task_id: task_id.into(),
            term: 1,
            plan_id: "p1.0".into(),
            service: format!("rule/{rule}"),
            resources: Ok(Vec::new()),
            remove: false,
            run: Some(RunCommand {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                env: Default::default(),
                timeout_ms: 600_000,
            }),
        }
    }

    fn file_task(task_id: &str) -> Task {
        Task {
            task_id: task_id.into(),
            term: 1,
            plan_id: "p1.0".into(),
            service: "web".into(),
            resources: Ok(vec![Resource::File(FileResource {
                path: "a.txt".into(),
                content: "a".into(),
                secret: None,
                mode: 0o644,
            })]),
            remove: false,
            run: None,
        }
    }

    struct Worker {
        tasks: mpsc::UnboundedSender<Task>,
        updates: mpsc::Receiver<TaskOutcome>,
        stop: CancellationToken,
        handle: tokio::task::JoinHandle<()>,
    }

    fn start(fixture: &Fixture) -> Worker {
        let (tasks, tasks_rx) = mpsc::unbounded_channel();
        let (updates_tx, updates) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let handle = tokio::spawn(apply_tasks(
            fixture.applier.clone(),
            tasks_rx,
            updates_tx,
            stop.clone(),
        ));
        Worker {
            tasks,
            updates,
            stop,
            handle,
        }
    }

    async fn next_update(worker: &mut Worker) -> TaskOutcome {
        tokio::time::timeout(PATIENCE, worker.updates.recv())
            .await
            .expect("an update in time")
            .expect("the worker is running")
    }

    fn pid_in(path: &Path) -> Option<i32> {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    fn runs_dir(fixture: &Fixture, rule: &str) -> std::path::PathBuf {
        fixture.config.data_dir.join("runs").join(rule)
    }

    #[tokio::test]
    async fn a_long_run_does_not_hold_up_other_tasks() {
        let fixture = fixture();
        let mut worker = start(&fixture);
        worker
            .tasks
            .send(run_task(
                "t1",
                "slow",
                "echo $$ > sleeper.pid; exec sleep 600",
            ))
            .unwrap();
        let pid_file = runs_dir(&fixture, "slow").join("sleeper.pid");
        wait_until("the run task's command to start", || {
            pid_in(&pid_file).is_some()
        })
        .await;
        worker.tasks.send(file_task("t2")).unwrap();
        let web = next_update(&mut worker).await;
        assert_eq!(web.task_id, "t2", "the service's task came first");
        assert_eq!(web.state, TaskState::Succeeded, "{web:?}");
        let pid = pid_in(&pid_file).unwrap();
        assert!(process_alive(pid), "the command still runs");

        // Stopping the worker kills the command and records its end.
        worker.stop.cancel();
        tokio::time::timeout(PATIENCE, worker.handle)
            .await
            .expect("the worker stops without waiting for the command")
            .unwrap();
        wait_until("the stopped command to die", || !process_alive(pid)).await;
        let stopped = worker.updates.recv().await.expect("reported");
        assert_eq!(stopped.task_id, "t1");
        assert_eq!(stopped.state, TaskState::Failed, "{stopped:?}");
        assert!(
            stopped.error.contains("the agent stopped while it ran"),
            "{}",
            stopped.error
        );
        // A resend after the restart gets that outcome, and runs nothing.
        std::fs::remove_file(&pid_file).unwrap();
        let again = fixture
            .applier
            .handle(run_task(
                "t1",
                "slow",
                "echo $$ > sleeper.pid; exec sleep 600",
            ))
            .await
            .unwrap();
        assert_eq!(again, Some(stopped));
        assert!(!pid_file.exists(), "not run again");
    }

    #[tokio::test]
    async fn a_redelivery_while_the_command_runs_does_not_run_it_twice() {
        let fixture = fixture();
        let mut worker = start(&fixture);
        let script = "echo ran >> runs.log; while [ ! -e go ]; do sleep 0.05; done";
        worker.tasks.send(run_task("t1", "once", script)).unwrap();
        let dir = runs_dir(&fixture, "once");
        let lines = || {
            std::fs::read_to_string(dir.join("runs.log"))
                .map(|log| log.lines().count())
                .unwrap_or(0)
        };
        wait_until("the command to start", || lines() == 1).await;
        // As a new leader would resend it, while it still runs.
        worker.tasks.send(run_task("t1", "once", script)).unwrap();
        // Let the resend reach the worker before the command may end.
        worker.tasks.send(file_task("t2")).unwrap();
        assert_eq!(next_update(&mut worker).await.task_id, "t2");
        std::fs::write(dir.join("go"), "").unwrap();
        let first = next_update(&mut worker).await;
        let second = next_update(&mut worker).await;
        assert_eq!(first.state, TaskState::Succeeded, "{first:?}");
        assert_eq!(first, second, "the resend gets the recorded outcome");
        assert_eq!(lines(), 1, "the command ran once");
        worker.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), worker.handle)
            .await
            .unwrap()
            .unwrap();
    }
}
