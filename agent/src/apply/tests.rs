use std::path::Path;

use levee_common::pb;
use levee_common::resource::{
    CommandResource, DirectoryResource, FileResource, HealthCheck, Probe, ProcessResource,
    RestartPolicy,
};

use super::*;
use crate::supervisor::WorkloadState;
use crate::testing::{Fixture, fixture, process_alive, wait_until};

fn task(task_id: &str, term: u64, resources: &[Resource]) -> Task {
    task_for("web", task_id, term, resources)
}

/// A task as the link hands it over: through the wire conversion, which
/// checks each resource (a process name that would escape, say).
fn task_for(service: &str, task_id: &str, term: u64, resources: &[Resource]) -> Task {
    Task::from(pb::Task {
        task_id: task_id.into(),
        term,
        plan_id: "p1.0".into(),
        service: service.into(),
        resources: resources.iter().map(pb::Resource::from).collect(),
        remove: false,
        run: None,
    })
}

/// `service`'s stored desired state.
async fn stored(fixture: &Fixture, service: &str) -> Option<Vec<Resource>> {
    let held = fixture.applier.lock(service).await;
    fixture.applier.stored(&held).await.unwrap()
}

fn running_pid(fixture: &Fixture, name: &str) -> u32 {
    match fixture.supervisor.state(name) {
        WorkloadState::Running { pid } => pid,
        other => panic!("{name} is {other:?}"),
    }
}

fn remove_task(task_id: &str, term: u64) -> Task {
    Task {
        remove: true,
        ..task(task_id, term, &[])
    }
}

fn process(name: &str, script: &str) -> ProcessResource {
    ProcessResource {
        name: name.into(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: Default::default(),
        secret_env: Default::default(),
        working_dir: None,
        restart: RestartPolicy::Never,
        user: None,
        stop_timeout_ms: 5_000,
        health: None,
    }
}

fn file(path: &str, content: &str) -> Resource {
    Resource::File(FileResource {
        path: path.into(),
        content: content.into(),
        secret: None,
        mode: 0o644,
    })
}

async fn apply(fixture: &Fixture, task: Task) -> TaskOutcome {
    fixture
        .applier
        .handle(task)
        .await
        .unwrap()
        .expect("reported")
}

fn outcome<'a>(update: &'a TaskOutcome, resource: &str) -> &'a ResourceOutcome {
    update
        .outcomes
        .iter()
        .find(|outcome| outcome.resource == resource)
        .unwrap_or_else(|| panic!("no outcome for {resource} in {update:?}"))
}

fn starter() -> Resource {
    Resource::Process(process("web", "echo $$ >> starts.log; exec sleep 600"))
}

fn start_count(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("starts.log"))
        .map(|log| log.lines().count())
        .unwrap_or(0)
}

async fn wait_for_starts(dir: &Path, count: usize) {
    wait_until(&format!("the process to start {count} time(s)"), || {
        start_count(dir) >= count
    })
    .await;
}

#[tokio::test]
async fn a_task_id_is_applied_once_and_its_outcome_replayed() {
    let fixture = fixture();
    let service_dir = fixture.config.service_dir("web");
    let resources = [
        Resource::File(FileResource {
            path: "index.html".into(),
            content: "hi".into(),
            secret: None,
            mode: 0o644,
        }),
        starter(),
    ];

    let first = fixture
        .applier
        .handle(task("t1.0.0", 2, &resources))
        .await
        .unwrap()
        .expect("reported");
    assert_eq!(first.state, TaskState::Succeeded, "{first:?}");
    assert!(first.outcomes.iter().all(|outcome| outcome.changed));
    wait_for_starts(&service_dir, 1).await;
    let pid = running_pid(&fixture, "web");

    // Redelivered (say, by a new leader): not applied again.
    let again = fixture
        .applier
        .handle(task("t1.0.0", 3, &resources))
        .await
        .unwrap()
        .expect("reported");
    assert_eq!(again, first, "the recorded outcome is replayed");
    // A new task with the same desired state converges to no change.
    let next = fixture
        .applier
        .handle(task("t2.0.0", 3, &resources))
        .await
        .unwrap()
        .expect("reported");
    assert_eq!(next.state, TaskState::Succeeded);
    assert!(
        next.outcomes.iter().all(|outcome| !outcome.changed),
        "{next:?}"
    );
    // The supervisor, not starts.log (written by the process, later).
    assert_eq!(
        fixture.supervisor.state("web"),
        WorkloadState::Running { pid },
        "the same process still runs"
    );
    fixture.supervisor.stop_all().await;
}

#[tokio::test]
async fn a_task_from_an_older_term_is_refused_unapplied() {
    let fixture = fixture();
    let file = Resource::File(FileResource {
        path: "a.txt".into(),
        content: "x".into(),
        secret: None,
        mode: 0o644,
    });
    fixture
        .applier
        .handle(task("t9.0.0", 5, std::slice::from_ref(&file)))
        .await
        .unwrap();
    let stale = fixture
        .applier
        .handle(task("t3.0.0", 4, &[starter()]))
        .await
        .unwrap();
    assert_eq!(stale, None, "refused unapplied, and not reported to anyone");
    assert_eq!(
        fixture.supervisor.state("web"),
        WorkloadState::Stopped,
        "nothing was started"
    );
    assert_eq!(
        stored(&fixture, "web").await,
        Some(vec![file]),
        "the stored desired state is the one of term 5"
    );
}

#[tokio::test]
async fn a_path_outside_the_allowed_roots_is_refused_with_the_reason() {
    let fixture = fixture();
    let escape = Resource::File(FileResource {
        path: "/etc/levee-should-not-exist".into(),
        content: "x".into(),
        secret: None,
        mode: 0o644,
    });
    let update = fixture
        .applier
        .handle(task("t1.0.0", 1, &[escape]))
        .await
        .unwrap()
        .expect("reported");
    assert_eq!(update.state, TaskState::Refused);
    assert!(
        update.error.contains("outside the allowed roots"),
        "{}",
        update.error
    );
    assert!(!Path::new("/etc/levee-should-not-exist").exists());
}

#[tokio::test]
async fn an_unexpected_exit_becomes_an_event_in_the_outbox() {
    let fixture = fixture();
    let crasher = Resource::Process(process("web", "exit 3"));
    fixture
        .applier
        .handle(task("t1.0.0", 1, &[crasher]))
        .await
        .unwrap();
    let outbox = &fixture.outbox;
    wait_until("an exit event", || {
        !outbox.read_after(None, 10).unwrap().is_empty()
    })
    .await;
    let event = &outbox.read_after(None, 10).unwrap()[0];
    assert_eq!(event.r#type, "host.process.exited");
    assert_eq!(event.subject, "web");
    let data: serde_json::Value = serde_json::from_str(&event.data_json).unwrap();
    assert_eq!(data["exit_code"], 3);
}

#[tokio::test]
async fn directories_and_guarded_commands_converge_once() {
    let fixture = fixture();
    let service_dir = fixture.config.service_dir("web");
    let resources = [
        Resource::Directory(DirectoryResource {
            path: "data/cache".into(),
            mode: 0o750,
        }),
        Resource::Command(CommandResource {
            name: "init".into(),
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo init >> ../inits; touch initialized".into(),
            ],
            env: Default::default(),
            working_dir: Some("data".into()),
            creates: Some("data/initialized".into()),
            unless: None,
            timeout_ms: 30_000,
        }),
    ];
    let first = apply(&fixture, task("t1", 1, &resources)).await;
    assert_eq!(first.state, TaskState::Succeeded, "{first:?}");
    assert_eq!(
        outcome(&first, "directory:data/cache").detail,
        "created with mode 750"
    );
    assert!(outcome(&first, "command:init").changed);
    assert!(service_dir.join("data/initialized").exists());

    let second = apply(&fixture, task("t2", 1, &resources)).await;
    assert_eq!(second.state, TaskState::Succeeded, "{second:?}");
    assert!(
        second.outcomes.iter().all(|outcome| !outcome.changed),
        "{second:?}"
    );
    assert_eq!(
        std::fs::read_to_string(service_dir.join("inits")).unwrap(),
        "init\n",
        "the guard kept the command from running twice"
    );
}

#[tokio::test]
async fn a_directory_outside_the_roots_is_refused_and_a_failing_command_fails() {
    let fixture = fixture();
    let outside = Resource::Directory(DirectoryResource {
        path: "/etc/levee-should-not-exist".into(),
        mode: 0o755,
    });
    let update = apply(&fixture, task("t1", 1, &[outside])).await;
    assert_eq!(update.state, TaskState::Refused);
    assert!(
        update.error.contains("outside the allowed roots"),
        "{}",
        update.error
    );
    assert!(!Path::new("/etc/levee-should-not-exist").exists());

    let failing = Resource::Command(CommandResource {
        name: "migrate".into(),
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo 'no database' >&2; exit 2".into(),
        ],
        env: Default::default(),
        working_dir: None,
        creates: None,
        unless: None,
        timeout_ms: 30_000,
    });
    assert!(
        fixture.applier.stored_services().await.unwrap().is_empty(),
        "a refused task leaves no desired state"
    );
    let update = apply(&fixture, task("t2", 1, std::slice::from_ref(&failing))).await;
    assert_eq!(update.state, TaskState::Failed);
    assert_eq!(
        update.error,
        "command:migrate: failed with exit code 2; stderr: no database"
    );
    assert_eq!(
        stored(&fixture, "web").await,
        Some(vec![failing]),
        "a failed task was applied in part: its resources are stored"
    );
}

#[tokio::test]
async fn a_remove_task_stops_the_workload_and_deletes_its_files_but_not_directories() {
    let fixture = fixture();
    let service_dir = fixture.config.service_dir("web");
    let resources = [
        Resource::Directory(DirectoryResource {
            path: "data".into(),
            mode: 0o755,
        }),
        file("data/app.conf", "port = 1\n"),
        file("banner.txt", "hi\n"),
        starter(),
    ];
    let applied = apply(&fixture, task("t1", 1, &resources)).await;
    assert_eq!(applied.state, TaskState::Succeeded, "{applied:?}");
    let WorkloadState::Running { pid } = fixture.supervisor.state("web") else {
        panic!("the workload is not running");
    };

    let removed = apply(&fixture, remove_task("t2", 1)).await;
    assert_eq!(removed.state, TaskState::Succeeded, "{removed:?}");
    for resource in ["process:web", "file:data/app.conf", "file:banner.txt"] {
        let outcome = outcome(&removed, resource);
        assert!(outcome.changed, "{outcome:?}");
        assert_eq!(outcome.detail, "removed");
    }
    assert!(!outcome(&removed, "directory:data").changed);
    assert!(!process_alive(pid as i32), "the workload was stopped");
    assert!(!service_dir.join("banner.txt").exists());
    assert!(!service_dir.join("data/app.conf").exists());
    assert!(service_dir.join("data").is_dir(), "directories stay");
    assert!(
        fixture.applier.stored_services().await.unwrap().is_empty(),
        "nothing is converged again on restart"
    );

    // Removing what is not here succeeds with nothing to do.
    let again = apply(&fixture, remove_task("t3", 1)).await;
    assert_eq!(again.state, TaskState::Succeeded, "{again:?}");
    assert!(again.outcomes.is_empty());
}

#[tokio::test]
async fn files_and_processes_dropped_from_the_spec_are_pruned() {
    let fixture = fixture();
    let service_dir = fixture.config.service_dir("web");
    let old = Resource::Process(process("old", "exec sleep 600"));
    let new = Resource::Process(process("new", "exec sleep 600"));
    let first = apply(
        &fixture,
        task("t1", 1, &[file("a.txt", "a"), file("b.txt", "b"), old]),
    )
    .await;
    assert_eq!(first.state, TaskState::Succeeded, "{first:?}");

    let second = apply(&fixture, task("t2", 1, &[file("./a.txt", "a"), new])).await;
    assert_eq!(second.state, TaskState::Succeeded, "{second:?}");
    assert_eq!(outcome(&second, "file:b.txt").detail, "removed");
    assert_eq!(outcome(&second, "process:old").detail, "removed");
    assert!(!outcome(&second, "file:./a.txt").changed);
    assert!(
        service_dir.join("a.txt").exists(),
        "`./a.txt` is still `a.txt`"
    );
    assert!(!service_dir.join("b.txt").exists());
    assert_eq!(fixture.supervisor.state("old"), WorkloadState::Stopped);
    assert!(matches!(
        fixture.supervisor.state("new"),
        WorkloadState::Running { .. }
    ));
    fixture.supervisor.stop_all().await;
}

fn checked(script: &str, probe_argv: &[&str], start_timeout_ms: u32) -> Resource {
    Resource::Process(ProcessResource {
        health: Some(HealthCheck {
            probe: Probe::Command {
                argv: probe_argv.iter().map(|word| word.to_string()).collect(),
            },
            interval_ms: 20,
            timeout_ms: 2_000,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            start_timeout_ms,
        }),
        ..process("web", script)
    })
}

#[tokio::test]
async fn a_task_succeeds_once_its_workload_is_healthy_and_does_not_wait_again() {
    let fixture = fixture();
    let service_dir = fixture.config.service_dir("web");
    let web = checked(
        "sleep 0.3; touch ready; exec sleep 600",
        &["/bin/test", "-f", "ready"],
        20_000,
    );
    let update = apply(&fixture, task("t1", 1, std::slice::from_ref(&web))).await;
    assert_eq!(update.state, TaskState::Succeeded, "{update:?}");
    assert!(
        service_dir.join("ready").exists(),
        "the task waited for the probe to pass"
    );
    assert!(
        outcome(&update, "process:web")
            .detail
            .contains("healthy after")
    );

    // Known healthy and unchanged: no new wait, which would now fail.
    std::fs::remove_file(service_dir.join("ready")).unwrap();
    let again = apply(&fixture, task("t2", 1, std::slice::from_ref(&web))).await;
    assert_eq!(again.state, TaskState::Succeeded, "{again:?}");
    let process = outcome(&again, "process:web");
    assert!(!process.changed);
    assert!(!process.detail.contains("healthy"), "{process:?}");
    fixture.supervisor.stop_all().await;
}

#[tokio::test]
async fn a_workload_that_never_gets_healthy_or_exits_fails_its_task() {
    let fixture = fixture();
    let never = checked("exec sleep 600", &["/bin/test", "-f", "never"], 300);
    let update = apply(&fixture, task("t1", 1, std::slice::from_ref(&never))).await;
    assert_eq!(update.state, TaskState::Failed, "{update:?}");
    assert!(
        update.error.starts_with(
            "process:web: not healthy: command probe [\"/bin/test\", \"-f\", \"never\"]: not healthy within 300 ms"
        ),
        "{}",
        update.error
    );
    assert!(
        update.error.ends_with("last failure: exit code 1"),
        "{}",
        update.error
    );
    assert_eq!(
        stored(&fixture, "web").await,
        Some(vec![never]),
        "its workload runs: it is the service's desired state now"
    );

    let dying = checked("exit 1", &["/bin/test", "-f", "never"], 20_000);
    let update = apply(&fixture, task("t2", 1, &[dying])).await;
    assert_eq!(update.state, TaskState::Failed, "{update:?}");
    assert!(
        update
            .error
            .contains("the workload exited before it was healthy"),
        "{}",
        update.error
    );
    fixture.supervisor.stop_all().await;
}

#[tokio::test]
async fn a_changed_file_restarts_the_workload_and_an_unchanged_one_does_not() {
    let fixture = fixture();
    let service_dir = fixture.config.service_dir("web");
    let update = apply(
        &fixture,
        task("t1.0.0", 1, &[file("app.conf", "v1"), starter()]),
    )
    .await;
    assert_eq!(update.state, TaskState::Succeeded, "{update:?}");
    wait_for_starts(&service_dir, 1).await;

    let same = apply(
        &fixture,
        task("t2.0.0", 1, &[file("app.conf", "v1"), starter()]),
    )
    .await;
    assert!(!outcome(&same, "process:web").changed, "{same:?}");

    let changed = apply(
        &fixture,
        task("t3.0.0", 1, &[file("app.conf", "v2"), starter()]),
    )
    .await;
    let process = outcome(&changed, "process:web");
    assert!(process.changed, "{changed:?}");
    assert!(
        process.detail.contains("restarted for changed files"),
        "{}",
        process.detail
    );
    wait_for_starts(&service_dir, 2).await;
    assert_eq!(start_count(&service_dir), 2);
    fixture.supervisor.stop_all().await;
}

fn command(name: &str, script: &str) -> Resource {
    Resource::Command(CommandResource {
        name: name.into(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: Default::default(),
        working_dir: None,
        creates: None,
        unless: None,
        timeout_ms: 30_000,
    })
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_failed_task_stores_its_resources_so_a_remove_finds_what_it_started() {
    let fixture = fixture();
    let service_dir = fixture.config.service_dir("web");
    let resources = [
        file("app.conf", "v1"),
        Resource::Process(process("web", "exec sleep 600")),
        command("migrate", "exit 2"),
    ];
    let failed = apply(&fixture, task("t1", 1, &resources)).await;
    assert_eq!(failed.state, TaskState::Failed, "{failed:?}");
    let pid = running_pid(&fixture, "web");
    assert_eq!(stored(&fixture, "web").await, Some(resources.to_vec()));

    let removed = apply(&fixture, remove_task("t2", 1)).await;
    assert_eq!(removed.state, TaskState::Succeeded, "{removed:?}");
    assert!(outcome(&removed, "process:web").changed, "{removed:?}");
    assert!(!process_alive(pid as i32), "the workload was stopped");
    assert!(!service_dir.join("app.conf").exists());
    assert_eq!(stored(&fixture, "web").await, None);
}

#[tokio::test]
async fn a_failed_task_prunes_files_only_the_previous_state_listed() {
    let fixture = fixture();
    let service_dir = fixture.config.service_dir("web");
    let first = apply(
        &fixture,
        task("t1", 1, &[file("old.txt", "old"), file("kept.txt", "k")]),
    )
    .await;
    assert_eq!(first.state, TaskState::Succeeded, "{first:?}");
    let resources = [file("kept.txt", "k"), command("migrate", "exit 2")];
    let failed = apply(&fixture, task("t2", 1, &resources)).await;
    assert_eq!(failed.state, TaskState::Failed, "{failed:?}");
    assert!(
        !service_dir.join("old.txt").exists(),
        "the stored state no longer lists it: now or never"
    );
    assert!(service_dir.join("kept.txt").exists());
    assert_eq!(stored(&fixture, "web").await, Some(resources.to_vec()));
}

#[tokio::test]
async fn a_remove_that_cannot_delete_a_file_still_forgets_the_service() {
    let fixture = fixture();
    let service_dir = fixture.config.service_dir("web");
    let resources = [file("a.txt", "a"), file("b.txt", "b"), starter()];
    let applied = apply(&fixture, task("t1", 1, &resources)).await;
    assert_eq!(applied.state, TaskState::Succeeded, "{applied:?}");
    let pid = running_pid(&fixture, "web");
    // A directory where the file was: unlink fails, even for root.
    std::fs::remove_file(service_dir.join("a.txt")).unwrap();
    std::fs::create_dir(service_dir.join("a.txt")).unwrap();

    let removed = apply(&fixture, remove_task("t2", 1)).await;
    assert_eq!(removed.state, TaskState::Failed, "{removed:?}");
    assert!(
        removed.error.starts_with("file:a.txt: deleting"),
        "{}",
        removed.error
    );
    assert!(!process_alive(pid as i32), "the workload was stopped");
    assert!(
        !service_dir.join("b.txt").exists(),
        "the other files were still deleted"
    );
    assert_eq!(
        stored(&fixture, "web").await,
        None,
        "neither drift nor a restart brings the service back"
    );
    fixture.applier.converge_desired().await.unwrap();
    assert_eq!(fixture.supervisor.state("web"), WorkloadState::Stopped);
}

#[tokio::test]
async fn a_refused_task_touches_nothing_not_even_to_prune() {
    let fixture = fixture();
    let service_dir = fixture.config.service_dir("web");
    let before = [
        file("keep.txt", "k"),
        Resource::Process(process("old", "exec sleep 600")),
    ];
    let applied = apply(&fixture, task("t1", 1, &before)).await;
    assert_eq!(applied.state, TaskState::Succeeded, "{applied:?}");
    let old = running_pid(&fixture, "old");
    let outside = fixture.config.data_dir.join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, service_dir.join("escape")).unwrap();

    // Lexically inside the roots, but through a symlink out of them; and
    // only the last resource of the task.
    let new = process("new", "exec sleep 600");
    let escaping_workdir = Resource::Process(ProcessResource {
        working_dir: Some("escape/run".into()),
        ..process("worker", "exec sleep 600")
    });
    for (task_id, last) in [
        ("t2", file("escape/x", "x")),
        ("t3", escaping_workdir),
        (
            "t4",
            Resource::Directory(DirectoryResource {
                path: "escape/d".into(),
                mode: 0o755,
            }),
        ),
        ("t5", {
            let Resource::Command(mut guarded) = command("init", "touch done") else {
                unreachable!()
            };
            guarded.creates = Some("escape/done".into());
            Resource::Command(guarded)
        }),
    ] {
        let resources = [
            file("new.txt", "n"),
            command("setup", "touch ran"),
            Resource::Process(new.clone()),
            last,
        ];
        let refused = apply(&fixture, task(task_id, 1, &resources)).await;
        assert_eq!(refused.state, TaskState::Refused, "{refused:?}");
        assert!(
            refused.error.contains("outside the allowed roots"),
            "{}",
            refused.error
        );
        assert!(refused.outcomes.is_empty(), "{refused:?}");
        assert!(!service_dir.join("new.txt").exists(), "{task_id}");
        assert!(!service_dir.join("ran").exists(), "{task_id}");
        assert_eq!(fixture.supervisor.state("new"), WorkloadState::Stopped);
        assert_eq!(
            fixture.supervisor.state("old"),
            WorkloadState::Running { pid: old },
            "{task_id}: not pruned"
        );
        assert!(service_dir.join("keep.txt").exists(), "{task_id}");
        assert_eq!(stored(&fixture, "web").await, Some(before.to_vec()));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    // A service seen for the first time: not even its directory appears.
    let refused = apply(
        &fixture,
        task_for(
            "fresh",
            "t6",
            1,
            &[
                file("a.txt", "a"),
                Resource::Directory(DirectoryResource {
                    path: "/etc/levee-should-not-exist".into(),
                    mode: 0o755,
                }),
            ],
        ),
    )
    .await;
    assert_eq!(refused.state, TaskState::Refused, "{refused:?}");
    assert!(!fixture.config.service_dir("fresh").exists());
    fixture.supervisor.stop_all().await;
}

#[tokio::test]
async fn names_that_would_escape_as_paths_are_refused() {
    let fixture = fixture();
    let data_dir = fixture.config.data_dir.clone();
    let update = apply(
        &fixture,
        task_for("../evil", "t1", 1, &[file("a.txt", "a")]),
    )
    .await;
    assert_eq!(update.state, TaskState::Refused, "{update:?}");
    assert!(
        update.error.starts_with("service name \"../evil\" must be"),
        "{}",
        update.error
    );
    assert!(!data_dir.join("evil").exists());

    let escaping = Resource::Process(process("../../evil", "exec sleep 600"));
    let update = apply(&fixture, task("t2", 1, &[escaping])).await;
    assert_eq!(update.state, TaskState::Refused, "{update:?}");
    assert!(update.error.contains("\"../../evil\""), "{}", update.error);
    assert!(!data_dir.join("evil").exists());
    assert_eq!(
        fixture.supervisor.state("../../evil"),
        WorkloadState::Stopped
    );
    assert!(fixture.applier.stored_services().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_command_without_guards_runs_once_per_version() {
    let fixture = fixture();
    let runs = fixture.config.service_dir("web").join("runs");
    let once = command("setup", "echo run >> runs");
    let first = apply(&fixture, task("t1", 1, std::slice::from_ref(&once))).await;
    assert!(outcome(&first, "command:setup").changed, "{first:?}");
    assert_eq!(lines(&runs), 1);

    // The same command again: a later task, a resent interrupted task, a
    // restart and drift correction all skip it.
    let again = apply(&fixture, task("t2", 1, std::slice::from_ref(&once))).await;
    let skipped = outcome(&again, "command:setup");
    assert!(!skipped.changed);
    assert!(
        skipped.detail.starts_with("skipped: ran already"),
        "{skipped:?}"
    );
    fixture.applier.journal.start("t3").unwrap();
    let resent = apply(&fixture, task("t3", 1, std::slice::from_ref(&once))).await;
    assert!(!outcome(&resent, "command:setup").changed, "{resent:?}");
    fixture.applier.converge_desired().await.unwrap();
    assert_eq!(lines(&runs), 1);

    // Changed: it runs again.
    let changed = command("setup", "echo run >> runs; echo v2 > version");
    let update = apply(&fixture, task("t4", 1, std::slice::from_ref(&changed))).await;
    assert!(outcome(&update, "command:setup").changed, "{update:?}");
    assert_eq!(lines(&runs), 2);

    // Dropped from the spec, then back: it is new again.
    apply(&fixture, task("t5", 1, &[])).await;
    apply(&fixture, task("t6", 1, std::slice::from_ref(&changed))).await;
    assert_eq!(lines(&runs), 3);
}

#[tokio::test]
async fn a_command_without_guards_that_failed_runs_again_until_it_succeeds() {
    let fixture = fixture();
    let service_dir = fixture.config.service_dir("web");
    let tries = service_dir.join("tries");
    let flaky = command("migrate", "echo try >> tries; test -f ok");
    for (task_id, expected) in [("t1", 1), ("t2", 2)] {
        let update = apply(&fixture, task(task_id, 1, std::slice::from_ref(&flaky))).await;
        assert_eq!(update.state, TaskState::Failed, "{update:?}");
        assert_eq!(lines(&tries), expected, "a failed command is retried");
    }
    std::fs::write(service_dir.join("ok"), "").unwrap();
    let update = apply(&fixture, task("t3", 1, std::slice::from_ref(&flaky))).await;
    assert_eq!(update.state, TaskState::Succeeded, "{update:?}");
    let update = apply(&fixture, task("t4", 1, std::slice::from_ref(&flaky))).await;
    assert!(!outcome(&update, "command:migrate").changed, "{update:?}");
    assert_eq!(lines(&tries), 3);
}

#[tokio::test]
async fn services_do_not_wait_on_each_other_but_one_service_is_serialised() {
    let fixture = fixture();
    // As a drift correction waiting for a health check would.
    let held = fixture.applier.lock("web").await;
    let web = tokio::spawn({
        let applier = fixture.applier.clone();
        async move {
            applier
                .handle(task("t1", 1, &[file("a.txt", "a")]))
                .await
                .unwrap()
        }
    });
    let other = tokio::time::timeout(
        crate::testing::PATIENCE,
        apply(&fixture, task_for("api", "t2", 1, &[file("b.txt", "b")])),
    )
    .await
    .expect("another service's task is not held up");
    assert_eq!(other.state, TaskState::Succeeded, "{other:?}");
    assert!(!web.is_finished(), "the same service's task waits");
    assert!(!fixture.config.service_dir("web").join("a.txt").exists());
    drop(held);
    let web = web.await.unwrap().expect("reported");
    assert_eq!(web.state, TaskState::Succeeded, "{web:?}");
}
