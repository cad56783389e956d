use std::path::{Path, PathBuf};

use levee_common::resource::{FileResource, Resource};

use super::*;
use crate::testing::{Fixture, fixture};

fn run_task(task_id: &str, term: u64, service: &str, argv: &[&str]) -> Task {
    Task {
        task_id: task_id.into(),
        term,
        plan_id: "p1.0".into(),
        service: service.into(),
        run: Some(RunCommand {
            argv: argv.iter().map(|word| word.to_string()).collect(),
            env: Default::default(),
            timeout_ms: 30_000,
        }),
        ..Default::default()
    }
}

/// A run task whose command appends one line to `log` (outside the data
/// directory), naming the task, the rule, `$GREETING` and where it ran.
fn appending(task_id: &str, term: u64, service: &str, log: &Path) -> Task {
    let mut task = run_task(
        task_id,
        term,
        service,
        &[
            "/bin/sh",
            "-c",
            "echo \"$LEVEE_TASK_ID $LEVEE_RULE $GREETING $(pwd)\" >> \"$LOG\"; echo done",
        ],
    );
    let run = task.run.as_mut().unwrap();
    run.env.insert("LOG".into(), log.display().to_string());
    run.env.insert("GREETING".into(), "hi".into());
    // Overridden by the agent: a task cannot name another.
    run.env.insert("LEVEE_TASK_ID".into(), "forged".into());
    task
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

async fn handle(fixture: &Fixture, task: Task) -> TaskOutcome {
    fixture
        .applier
        .handle(task)
        .await
        .unwrap()
        .expect("reported")
}

fn runs_dir(fixture: &Fixture) -> PathBuf {
    fixture.config.data_dir.join("runs")
}

#[tokio::test]
async fn a_run_task_runs_once_per_task_id_in_its_rules_directory() {
    let fixture = fixture();
    let temp = tempfile::tempdir().unwrap();
    let log = temp.path().join("runs.log");

    let first = handle(&fixture, appending("t1", 1, "rule/restart-web", &log)).await;
    assert_eq!(first.state, TaskState::Succeeded, "{first:?}");
    assert_eq!(first.error, "");
    assert_eq!(
        first.outcomes,
        [ResourceOutcome {
            resource: "run:/bin/sh".into(),
            changed: true,
            detail: "exit code 0; stdout tail: done".into(),
        }]
    );
    let dir = runs_dir(&fixture).join("restart-web");
    assert_eq!(
        lines(&log),
        [format!("t1 restart-web hi {}", dir.display())]
    );

    // Redelivered, by a newer leader too: the outcome, not another run.
    let again = handle(&fixture, appending("t1", 2, "rule/restart-web", &log)).await;
    assert_eq!(again, first);
    assert_eq!(lines(&log).len(), 1, "ran exactly once");

    // Another task of the same rule is another run.
    let next = handle(&fixture, appending("t2", 2, "rule/restart-web", &log)).await;
    assert_eq!(next.state, TaskState::Succeeded, "{next:?}");
    assert_eq!(lines(&log).len(), 2);
    assert!(lines(&log)[1].starts_with("t2 restart-web "));

    assert!(
        fixture.applier.stored_services().await.unwrap().is_empty(),
        "a run sets no desired state"
    );
}

#[tokio::test]
async fn a_failing_run_task_reports_its_exit_code_and_stderr_tail() {
    let fixture = fixture();
    let script = "echo partial; echo 'unit web not found' >&2; exit 1";
    let failed = handle(
        &fixture,
        run_task("t1", 1, "rule/restart-web", &["/bin/sh", "-c", script]),
    )
    .await;
    assert_eq!(failed.state, TaskState::Failed, "{failed:?}");
    assert_eq!(
        failed.error,
        "run:/bin/sh: failed with exit code 1; stderr: unit web not found"
    );
    assert_eq!(
        failed.outcomes,
        [ResourceOutcome {
            resource: "run:/bin/sh".into(),
            changed: true,
            detail: "exit code 1; stdout tail: partial".into(),
        }]
    );

    let missing = handle(
        &fixture,
        run_task("t2", 1, "rule/restart-web", &["/nonexistent/levee-run"]),
    )
    .await;
    assert_eq!(missing.state, TaskState::Failed, "{missing:?}");
    assert!(
        missing
            .error
            .starts_with("run:/nonexistent/levee-run: cannot start"),
        "{}",
        missing.error
    );
    assert!(!missing.outcomes[0].changed, "nothing started");
}

#[tokio::test]
async fn only_the_end_of_stdout_is_reported() {
    let fixture = fixture();
    let script = "head -c 5000 /dev/zero | tr '\\0' a; echo; echo the-end";
    let update = handle(
        &fixture,
        run_task("t1", 1, "rule/chatty", &["/bin/sh", "-c", script]),
    )
    .await;
    assert_eq!(update.state, TaskState::Succeeded, "{update:?}");
    let detail = &update.outcomes[0].detail;
    assert!(
        detail.starts_with("exit code 0; stdout tail: aaa"),
        "{detail}"
    );
    assert!(detail.ends_with("aaa\nthe-end"), "{detail}");
    assert!(
        detail.len() <= exec::STDOUT_TAIL_BYTES + 64,
        "{}",
        detail.len()
    );
}

#[tokio::test]
async fn a_run_task_that_times_out_is_killed_and_fails() {
    let fixture = fixture();
    let mut task = run_task("t1", 1, "rule/slow", &["/bin/sleep", "30"]);
    task.run.as_mut().unwrap().timeout_ms = 200;
    let update = tokio::time::timeout(Duration::from_secs(15), handle(&fixture, task))
        .await
        .expect("killed at its timeout, not waited for");
    assert_eq!(update.state, TaskState::Failed, "{update:?}");
    assert!(
        update.error.starts_with("run:/bin/sleep: ")
            && update.error.contains("did not finish within 200 ms"),
        "{}",
        update.error
    );
    assert_eq!(update.outcomes[0].detail, "killed at its timeout");
}

#[tokio::test]
async fn a_run_task_from_an_older_term_is_refused_without_running() {
    let fixture = fixture();
    let temp = tempfile::tempdir().unwrap();
    let log = temp.path().join("runs.log");
    let current = handle(&fixture, appending("t1", 5, "rule/restart-web", &log)).await;
    assert_eq!(current.state, TaskState::Succeeded, "{current:?}");

    let stale = fixture
        .applier
        .handle(appending("t2", 4, "rule/restart-web", &log))
        .await
        .unwrap();
    assert_eq!(stale, None, "refused unapplied, and not reported");
    assert_eq!(lines(&log).len(), 1, "the stale task did not run");
    assert_eq!(fixture.applier.journal.get("t2").unwrap(), None);
}

#[tokio::test]
async fn a_bad_rule_name_is_refused_without_running() {
    let fixture = fixture();
    let temp = tempfile::tempdir().unwrap();
    let log = temp.path().join("runs.log");
    for (n, service) in [
        "web",
        "rule/",
        "rule/Restart",
        "rule/..",
        "rule/../web",
        "rule/a/b",
        "rule/-x",
        "rules/x",
    ]
    .into_iter()
    .enumerate()
    {
        let update = handle(&fixture, appending(&format!("t{n}"), 1, service, &log)).await;
        assert_eq!(update.state, TaskState::Refused, "{update:?}");
        assert!(
            update.error.contains("must be `rule/<name>`"),
            "{service}: {}",
            update.error
        );
        assert!(update.outcomes.is_empty(), "{update:?}");
    }
    assert!(lines(&log).is_empty(), "nothing ran");
    assert!(!runs_dir(&fixture).exists(), "no directory was made");

    // `rule/` names a rule only in a run task.
    let file = Resource::File(FileResource {
        path: "a.txt".into(),
        content: "a".into(),
        secret: None,
        mode: 0o644,
    });
    let converge = Task {
        task_id: "t-converge".into(),
        term: 1,
        service: "rule/restart-web".into(),
        resources: Ok(vec![file.clone()]),
        ..Default::default()
    };
    let update = handle(&fixture, converge).await;
    assert_eq!(update.state, TaskState::Refused, "{update:?}");
    assert!(update.error.starts_with("service name"), "{}", update.error);
}

#[tokio::test]
async fn run_with_remove_resources_or_no_argv_is_refused() {
    let fixture = fixture();
    let temp = tempfile::tempdir().unwrap();
    let log = temp.path().join("runs.log");
    let file = Resource::File(FileResource {
        path: "a.txt".into(),
        content: "a".into(),
        secret: None,
        mode: 0o644,
    });
    let with_remove = Task {
        remove: true,
        ..appending("t1", 1, "rule/restart-web", &log)
    };
    let with_resources = Task {
        resources: Ok(vec![file.clone()]),
        ..appending("t2", 1, "rule/restart-web", &log)
    };
    let no_argv = run_task("t3", 1, "rule/restart-web", &[]);
    for (task, reason) in [
        (with_remove, "a run task must not also remove a service"),
        (with_resources, "a run task must not list resources"),
        (no_argv, "a run task's argv is empty"),
    ] {
        let update = handle(&fixture, task).await;
        assert_eq!(update.state, TaskState::Refused, "{update:?}");
        assert_eq!(update.error, reason);
        assert!(update.outcomes.is_empty(), "{update:?}");
    }
    assert!(lines(&log).is_empty(), "nothing ran");
    assert!(!runs_dir(&fixture).exists(), "no directory was made");
    assert!(
        fixture.applier.stored_services().await.unwrap().is_empty(),
        "the listed resources did not become desired state"
    );
}

#[tokio::test]
async fn a_run_task_a_crash_interrupted_is_not_run_again() {
    let fixture = fixture();
    let temp = tempfile::tempdir().unwrap();
    let log = temp.path().join("runs.log");
    // As if the agent died while the command ran.
    fixture.applier.journal.start("t1").unwrap();

    let update = handle(&fixture, appending("t1", 1, "rule/restart-web", &log)).await;
    assert_eq!(update.state, TaskState::Failed, "{update:?}");
    assert!(update.error.ends_with("not run again"), "{}", update.error);
    assert!(lines(&log).is_empty(), "not run again");
    let again = handle(&fixture, appending("t1", 1, "rule/restart-web", &log)).await;
    assert_eq!(again, update, "recorded");
}

#[tokio::test]
async fn a_run_task_after_stop_runs_is_left_for_a_resend() {
    let fixture = fixture();
    let temp = tempfile::tempdir().unwrap();
    let log = temp.path().join("runs.log");
    fixture.applier.stop_runs();
    let update = fixture
        .applier
        .handle(appending("t1", 1, "rule/restart-web", &log))
        .await
        .unwrap();
    assert_eq!(update, None);
    assert!(lines(&log).is_empty());
    assert_eq!(
        fixture.applier.journal.get("t1").unwrap(),
        None,
        "not recorded: the restarted agent runs it when it is resent"
    );
}
