use std::path::Path;

use levee_common::agent_config::{AgentConfig, LinkConfig};
use levee_common::resource::{FileResource, ProcessResource, RestartPolicy};
use levee_common::tls::TlsFiles;

use super::*;
use crate::outbox::Outbox;

struct Fixture {
    _dir: tempfile::TempDir,
    config: AgentConfig,
    applier: Applier,
    supervisor: Supervisor,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = AgentConfig {
        controllers: vec!["127.0.0.1:1".into()],
        data_dir: dir.path().canonicalize().unwrap(),
        labels: Default::default(),
        allowed_roots: Vec::new(),
        tls: TlsFiles {
            ca: "ca".into(),
            cert: "c".into(),
            key: "k".into(),
        },
        link: LinkConfig::default(),
    };
    let db = crate::store::open(&config.data_dir.join("agent.redb")).unwrap();
    let outbox = Outbox::open(db.clone(), 100, 0).unwrap();
    let supervisor = Supervisor::new(outbox, db.clone());
    let roots = Roots::new(&config.roots()).unwrap();
    let applier = Applier::new(&config, Journal::new(db), supervisor.clone(), roots);
    Fixture {
        _dir: dir,
        config,
        applier,
        supervisor,
    }
}

fn task(task_id: &str, term: u64, resources: &[Resource]) -> pb::Task {
    pb::Task {
        task_id: task_id.into(),
        term,
        plan_id: "p1.0".into(),
        service: "web".into(),
        resources: resources.iter().map(pb::Resource::from).collect(),
    }
}

fn starter() -> Resource {
    Resource::Process(ProcessResource {
        name: "web".into(),
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo $$ >> starts.log; exec sleep 600".into(),
        ],
        env: Default::default(),
        working_dir: None,
        restart: RestartPolicy::Never,
    })
}

fn start_count(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("starts.log"))
        .map(|log| log.lines().count())
        .unwrap_or(0)
}

async fn wait_for_starts(dir: &Path, count: usize) {
    for _ in 0..200 {
        if start_count(dir) >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the process did not start {count} time(s)");
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
    let crasher = Resource::Process(ProcessResource {
        name: "web".into(),
        argv: vec!["/bin/sh".into(), "-c".into(), "exit 3".into()],
        env: Default::default(),
        working_dir: None,
        restart: RestartPolicy::Never,
    });
    fixture
        .applier
        .handle(task("t1.0.0", 1, &[crasher]))
        .await
        .unwrap();
    let outbox = fixture.supervisor.outbox_for_tests();
    for _ in 0..200 {
        let events = outbox.read_after(None, 10).unwrap();
        if let Some(event) = events.first() {
            assert_eq!(event.r#type, "host.process.exited");
            assert_eq!(event.subject, "web");
            let data: serde_json::Value = serde_json::from_str(&event.data_json).unwrap();
            assert_eq!(data["exit_code"], 3);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no exit event was recorded");
}
