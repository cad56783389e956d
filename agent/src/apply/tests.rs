use std::path::Path;

use levee_common::resource::{
    CommandResource, DirectoryResource, FileResource, HealthCheck, Probe, ProcessResource,
    RestartPolicy,
};

use super::*;
use crate::supervisor::WorkloadState;
use crate::testing::{Fixture, fixture, process_alive, wait_until};

fn task(task_id: &str, term: u64, resources: &[Resource]) -> pb::Task {
    pb::Task {
        task_id: task_id.into(),
        term,
        plan_id: "p1.0".into(),
        service: "web".into(),
        resources: resources.iter().map(pb::Resource::from).collect(),
        remove: false,
    }
}

fn remove_task(task_id: &str, term: u64) -> pb::Task {
    pb::Task {
        remove: true,
        ..task(task_id, term, &[])
    }
}

fn process(name: &str, script: &str) -> ProcessResource {
    ProcessResource {
        name: name.into(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: Default::default(),
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
        mode: 0o644,
    })
}

async fn apply(fixture: &Fixture, task: pb::Task) -> pb::TaskUpdate {
    fixture
        .applier
        .handle(task)
        .await
        .unwrap()
        .expect("reported")
}

fn outcome<'a>(update: &'a pb::TaskUpdate, resource: &str) -> &'a pb::ResourceOutcome {
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
    assert_eq!(first.state, pb::TaskState::Succeeded as i32, "{first:?}");
    assert!(first.outcomes.iter().all(|outcome| outcome.changed));
    wait_for_starts(&service_dir, 1).await;

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
    assert_eq!(next.state, pb::TaskState::Succeeded as i32);
    assert!(
        next.outcomes.iter().all(|outcome| !outcome.changed),
        "{next:?}"
    );
    assert_eq!(start_count(&service_dir), 1);
    fixture.supervisor.stop_all().await;
}

#[tokio::test]
async fn a_task_from_an_older_term_is_refused_unapplied() {
    let fixture = fixture();
    let file = Resource::File(FileResource {
        path: "a.txt".into(),
        content: "x".into(),
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
        start_count(&fixture.config.service_dir("web")),
        0,
        "nothing ran"
    );
}

#[tokio::test]
async fn a_path_outside_the_allowed_roots_is_refused_with_the_reason() {
    let fixture = fixture();
    let escape = Resource::File(FileResource {
        path: "/etc/levee-should-not-exist".into(),
        content: "x".into(),
        mode: 0o644,
    });
    let update = fixture
        .applier
        .handle(task("t1.0.0", 1, &[escape]))
        .await
        .unwrap()
        .expect("reported");
    assert_eq!(update.state, pb::TaskState::Refused as i32);
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
    assert_eq!(first.state, pb::TaskState::Succeeded as i32, "{first:?}");
    assert_eq!(
        outcome(&first, "directory:data/cache").detail,
        "created with mode 750"
    );
    assert!(outcome(&first, "command:init").changed);
    assert!(service_dir.join("data/initialized").exists());

    let second = apply(&fixture, task("t2", 1, &resources)).await;
    assert_eq!(second.state, pb::TaskState::Succeeded as i32, "{second:?}");
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
    assert_eq!(update.state, pb::TaskState::Refused as i32);
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
    let update = apply(&fixture, task("t2", 1, &[failing])).await;
    assert_eq!(update.state, pb::TaskState::Failed as i32);
    assert_eq!(
        update.error,
        "command:migrate: failed with exit code 2; stderr: no database"
    );
    assert!(fixture.applier.stored_services().await.unwrap().is_empty());
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
    assert_eq!(
        applied.state,
        pb::TaskState::Succeeded as i32,
        "{applied:?}"
    );
    let WorkloadState::Running { pid } = fixture.supervisor.state("web") else {
        panic!("the workload is not running");
    };

    let removed = apply(&fixture, remove_task("t2", 1)).await;
    assert_eq!(
        removed.state,
        pb::TaskState::Succeeded as i32,
        "{removed:?}"
    );
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
    assert_eq!(again.state, pb::TaskState::Succeeded as i32, "{again:?}");
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
    assert_eq!(first.state, pb::TaskState::Succeeded as i32, "{first:?}");

    let second = apply(&fixture, task("t2", 1, &[file("./a.txt", "a"), new])).await;
    assert_eq!(second.state, pb::TaskState::Succeeded as i32, "{second:?}");
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
    assert_eq!(update.state, pb::TaskState::Succeeded as i32, "{update:?}");
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
    assert_eq!(again.state, pb::TaskState::Succeeded as i32, "{again:?}");
    let process = outcome(&again, "process:web");
    assert!(!process.changed);
    assert!(!process.detail.contains("healthy"), "{process:?}");
    fixture.supervisor.stop_all().await;
}

#[tokio::test]
async fn a_workload_that_never_gets_healthy_or_exits_fails_its_task() {
    let fixture = fixture();
    let never = checked("exec sleep 600", &["/bin/test", "-f", "never"], 300);
    let update = apply(&fixture, task("t1", 1, &[never])).await;
    assert_eq!(update.state, pb::TaskState::Failed as i32, "{update:?}");
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
    assert!(fixture.applier.stored_services().await.unwrap().is_empty());

    let dying = checked("exit 1", &["/bin/test", "-f", "never"], 20_000);
    let update = apply(&fixture, task("t2", 1, &[dying])).await;
    assert_eq!(update.state, pb::TaskState::Failed as i32, "{update:?}");
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
    assert_eq!(update.state, pb::TaskState::Succeeded as i32, "{update:?}");
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
}
