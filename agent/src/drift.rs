//! Drift detection: every `[drift] interval_ms` the host is compared with
//! each service's stored desired state (files: content and mode;
//! directories: existence and mode; processes: running). Something changed
//! behind Levee's back becomes a `host.drift.detected` event per resource,
//! and, with `correct`, the service is converged again and the fix
//! reported as `host.drift.resolved`. Commands are one-shot and not checked.
//!
//! A drift is reported once, not on every check (again only if what
//! differs changes), until it goes away (corrected, fixed by hand, or by a
//! task), which is reported too. Checks
//! hold the service's converge lock, so they never see a task half
//! applied; other services' tasks go on meanwhile.
//!
//! A workload that completed (exit code 0 under `restart: never` or
//! `on-failure`) did what it was for: that is not drift. One killed by a
//! signal, or failing under `never`, is.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use levee_common::agent_config::DriftConfig;
use levee_common::event::types::{DRIFT_DETECTED, DRIFT_RESOLVED};
use levee_common::resource::{DirectoryResource, FileResource, Resource};
use serde_json::json;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::apply::{Applier, Pass};
use crate::clock::now_ms;
use crate::outbox::Outbox;
use crate::paths::Roots;
use crate::store::StoreError;
use crate::supervisor::WorkloadState;
use crate::util::blocking;

#[derive(Debug, Error)]
pub enum DriftError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One resource that differs from its desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The resource key, e.g. `file:banner.txt`.
    pub resource: String,
    /// What differs, e.g. `content differs`, `missing`, `not running`.
    pub detail: String,
}

pub struct Drift {
    applier: Applier,
    outbox: Outbox,
    config: DriftConfig,
    /// Drift reported and not yet resolved: (service, resource) → detail.
    reported: BTreeMap<(String, String), String>,
    /// `reported.len()`, published for `/metrics`, which cannot reach the
    /// map inside the drift task.
    unresolved: Arc<AtomicU64>,
}

impl Drift {
    pub fn new(applier: Applier, outbox: Outbox, config: DriftConfig) -> Self {
        Self {
            applier,
            outbox,
            config,
            reported: BTreeMap::new(),
            unresolved: Arc::default(),
        }
    }

    /// How many drifted resources are reported and not yet resolved, as
    /// of the last check; `None` when drift detection is off.
    pub fn unresolved(&self) -> Option<Arc<AtomicU64>> {
        (self.config.interval_ms != 0).then(|| self.unresolved.clone())
    }

    /// Checks every `interval_ms` until `shutdown`; returns at once if
    /// drift detection is off.
    pub async fn run(mut self, shutdown: CancellationToken) {
        if self.config.interval_ms == 0 {
            info!("drift detection is off");
            return;
        }
        let interval = Duration::from_millis(self.config.interval_ms);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(err) = self.check(&shutdown).await {
                warn!(error = %err, "drift check failed");
            }
        }
    }

    /// One check of every service with a stored desired state; stops
    /// between services when `shutdown` is cancelled.
    pub async fn check(&mut self, shutdown: &CancellationToken) -> Result<(), DriftError> {
        let services = self.applier.stored_services().await?;
        // A service taken off the host has no drift left to resolve.
        self.reported
            .retain(|(service, _), _| services.contains(service));
        self.publish_unresolved();
        for service in services {
            if shutdown.is_cancelled() {
                break;
            }
            let span = info_span!("drift", %service);
            let checked = self.check_service(&service).instrument(span).await;
            self.publish_unresolved();
            checked?;
        }
        Ok(())
    }

    fn publish_unresolved(&self) {
        self.unresolved
            .store(self.reported.len() as u64, Ordering::Relaxed);
    }

    async fn check_service(&mut self, service: &str) -> Result<(), DriftError> {
        let held = self.applier.lock(service).await;
        // Read under the lock: a task may have changed it since listing.
        let Some(resources) = self.applier.stored(&held).await? else {
            return Ok(());
        };
        let findings = self.inspect(service, &resources).await;
        for finding in &findings {
            let key = (service.to_owned(), finding.resource.clone());
            if self.reported.get(&key) == Some(&finding.detail) {
                continue;
            }
            warn!(resource = %finding.resource, detail = %finding.detail, "drift detected");
            let data = json!({
                "service": service,
                "resource": finding.resource,
                "detail": finding.detail,
            });
            self.emit(DRIFT_DETECTED, service, data).await?;
            self.reported.insert(key, finding.detail.clone());
        }
        let drifted: BTreeSet<&str> = findings.iter().map(|f| f.resource.as_str()).collect();
        let mut resolved: Vec<String> = self
            .reported
            .keys()
            .filter(|(reported, resource)| {
                reported == service && !drifted.contains(resource.as_str())
            })
            .map(|(_, resource)| resource.clone())
            .collect();
        if self.config.correct && !findings.is_empty() {
            let mut outcomes = Vec::new();
            match self
                .applier
                .converge_locked(&held, &resources, Pass::CORRECT, &mut outcomes)
                .await
            {
                Ok(()) => {
                    info!(
                        changed = outcomes.iter().filter(|o| o.changed).count(),
                        "drift corrected"
                    );
                    resolved.extend(drifted.iter().map(|resource| resource.to_string()));
                }
                Err(err) => {
                    warn!(error = %err, "could not correct drift; trying again at the next check")
                }
            }
        }
        drop(held);
        if !resolved.is_empty() {
            resolved.sort();
            for resource in &resolved {
                self.reported
                    .remove(&(service.to_owned(), resource.clone()));
            }
            let data = json!({ "service": service, "resources": resolved });
            self.emit(DRIFT_RESOLVED, service, data).await?;
        }
        Ok(())
    }

    /// Compares each resource of `service` with the host.
    pub async fn inspect(&self, service: &str, resources: &[Resource]) -> Vec<Finding> {
        let on_disk = {
            let roots = self.applier.roots().clone();
            let service_dir = self.applier.service_dir(service);
            let resources = resources.to_vec();
            let checked = blocking(move || {
                Ok::<_, Infallible>(
                    resources
                        .iter()
                        .map(|resource| path_drift(&roots, &service_dir, resource))
                        .collect::<Vec<_>>(),
                )
            })
            .await;
            match checked {
                Ok(on_disk) => on_disk,
                Err(never) => match never {},
            }
        };
        let mut findings = Vec::new();
        for (resource, on_disk) in resources.iter().zip(on_disk) {
            let detail = match resource {
                Resource::Process(process) => {
                    match self.applier.supervisor().state(&process.name) {
                        WorkloadState::Stopped => Some("not running".to_owned()),
                        // Running, about to be restarted by its policy, or
                        // done with its work.
                        WorkloadState::Running { .. }
                        | WorkloadState::Restarting
                        | WorkloadState::Completed => None,
                    }
                }
                _ => on_disk,
            };
            if let Some(detail) = detail {
                findings.push(Finding {
                    resource: resource.key(),
                    detail,
                });
            }
        }
        findings
    }

    async fn emit(
        &self,
        event_type: &'static str,
        service: &str,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        let outbox = self.outbox.clone();
        let subject = service.to_owned();
        blocking(move || outbox.append(event_type, &subject, &data, now_ms())).await?;
        Ok(())
    }
}

/// How a file or directory differs from `resource`; `None` for other kinds.
fn path_drift(roots: &Roots, service_dir: &Path, resource: &Resource) -> Option<String> {
    match resource {
        Resource::File(file) => file_drift(roots, service_dir, file),
        Resource::Directory(directory) => directory_drift(roots, service_dir, directory),
        Resource::Command(_) | Resource::Process(_) => None,
    }
}

/// How a file differs, or `None` when it matches (or its path is not one
/// this host allows, which the task was refused for already).
fn file_drift(roots: &Roots, service_dir: &Path, file: &FileResource) -> Option<String> {
    let path = match roots.existing_file(service_dir, &file.path) {
        Ok(Some(path)) => path,
        Ok(None) => return Some("missing".into()),
        Err(err) => {
            debug!(path = %file.path, error = %err, "not checking a path outside the roots");
            return None;
        }
    };
    let metadata = match std::fs::symlink_metadata(&path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Some("missing".into()),
        Err(err) => return Some(format!("unreadable: {err}")),
    };
    if !metadata.is_file() {
        return Some("not a regular file".into());
    }
    let mut differences = Vec::new();
    match std::fs::read(&path) {
        Ok(content) if content == file.content.as_bytes() => {}
        Ok(_) => differences.push("content differs".to_owned()),
        Err(err) => differences.push(format!("unreadable: {err}")),
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode != file.mode {
        differences.push(format!("mode {mode:o}, expected {:o}", file.mode));
    }
    (!differences.is_empty()).then(|| differences.join("; "))
}

fn directory_drift(
    roots: &Roots,
    service_dir: &Path,
    directory: &DirectoryResource,
) -> Option<String> {
    let path = roots.resolve(service_dir, &directory.path).ok()?;
    let real = match roots.existing_dir(&path) {
        Ok(Some(real)) => real,
        Ok(None) => return Some("missing".into()),
        Err(err) => {
            debug!(path = %directory.path, error = %err, "not checking a path outside the roots");
            return None;
        }
    };
    let metadata = match std::fs::metadata(&real) {
        Ok(metadata) => metadata,
        Err(err) => return Some(format!("unreadable: {err}")),
    };
    if !metadata.is_dir() {
        return Some("not a directory".into());
    }
    let mode = metadata.permissions().mode() & 0o7777;
    (mode != directory.mode).then(|| format!("mode {mode:o}, expected {:o}", directory.mode))
}

#[cfg(test)]
mod tests {
    use levee_common::resource::{ProcessResource, RestartPolicy};
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    use serde_json::Value;

    use super::*;
    use crate::task::{Task, TaskState};
    use crate::testing::{Fixture, PATIENCE, events, fixture, wait_until};

    fn web() -> Vec<Resource> {
        vec![
            Resource::File(FileResource {
                path: "banner.txt".into(),
                content: "hi\n".into(),
                secret: None,
                mode: 0o644,
            }),
            Resource::Directory(DirectoryResource {
                path: "data".into(),
                mode: 0o755,
            }),
            Resource::Process(ProcessResource {
                name: "web".into(),
                argv: vec!["/bin/sleep".into(), "600".into()],
                env: Default::default(),
                secret_env: Default::default(),
                working_dir: None,
                restart: RestartPolicy::Never,
                user: None,
                stop_timeout_ms: 5_000,
                health: None,
            }),
        ]
    }

    async fn deploy(fixture: &Fixture) {
        deploy_resources(fixture, &web()).await;
    }

    async fn deploy_resources(fixture: &Fixture, resources: &[Resource]) {
        let task = Task {
            task_id: "t1".into(),
            term: 1,
            plan_id: "p1".into(),
            service: "web".into(),
            resources: Ok(resources.to_vec()),
            remove: false,
            run: None,
        };
        let update = fixture.applier.handle(task).await.unwrap().unwrap();
        assert_eq!(update.state, TaskState::Succeeded, "{update:?}");
    }

    fn running_pid(fixture: &Fixture) -> u32 {
        match fixture.supervisor.state("web") {
            WorkloadState::Running { pid } => pid,
            other => panic!("the workload is {other:?}"),
        }
    }

    /// Kills the workload behind the agent's back.
    async fn kill_workload(fixture: &Fixture) {
        let pid = running_pid(fixture);
        killpg(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        wait_until("the supervisor to see the workload gone", || {
            fixture.supervisor.state("web") == WorkloadState::Stopped
        })
        .await;
    }

    fn detected(fixture: &Fixture) -> Vec<(String, String)> {
        events(&fixture.outbox, DRIFT_DETECTED)
            .into_iter()
            .map(|(subject, data)| {
                assert_eq!(subject, "web");
                assert_eq!(data["service"], "web");
                let field = |name: &str| data[name].as_str().unwrap().to_owned();
                (field("resource"), field("detail"))
            })
            .collect()
    }

    fn resolved(fixture: &Fixture) -> Vec<Value> {
        events(&fixture.outbox, DRIFT_RESOLVED)
            .into_iter()
            .map(|(subject, data)| {
                assert_eq!(subject, "web");
                data
            })
            .collect()
    }

    fn reporter(fixture: &Fixture, correct: bool) -> Drift {
        Drift::new(
            fixture.applier.clone(),
            fixture.outbox.clone(),
            DriftConfig {
                interval_ms: 0,
                correct,
            },
        )
    }

    #[tokio::test]
    async fn drift_is_reported_once_and_so_is_its_resolution() {
        let fixture = fixture();
        deploy(&fixture).await;
        let service_dir = fixture.config.service_dir("web");
        let mut drift = reporter(&fixture, false);
        let never = CancellationToken::new();
        drift.check(&never).await.unwrap();
        assert!(detected(&fixture).is_empty(), "no drift after a deploy");

        std::fs::write(service_dir.join("banner.txt"), "defaced\n").unwrap();
        std::fs::set_permissions(
            service_dir.join("data"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        kill_workload(&fixture).await;
        drift.check(&never).await.unwrap();
        let expected = vec![
            ("file:banner.txt".to_owned(), "content differs".to_owned()),
            (
                "directory:data".to_owned(),
                "mode 700, expected 755".to_owned(),
            ),
            ("process:web".to_owned(), "not running".to_owned()),
        ];
        assert_eq!(detected(&fixture), expected);
        assert_eq!(drift.unresolved.load(Ordering::Relaxed), 3);

        // Unresolved drift is not reported again, and not corrected.
        drift.check(&never).await.unwrap();
        assert_eq!(detected(&fixture), expected);
        assert_eq!(drift.unresolved.load(Ordering::Relaxed), 3);
        assert_eq!(fixture.supervisor.state("web"), WorkloadState::Stopped);

        // Fixed by hand: resolved. A new kind of drift is reported anew.
        std::fs::write(service_dir.join("banner.txt"), "hi\n").unwrap();
        std::fs::set_permissions(
            service_dir.join("data"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        drift.check(&never).await.unwrap();
        assert_eq!(
            resolved(&fixture),
            [json!({"service": "web", "resources": ["directory:data", "file:banner.txt"]})]
        );
        assert_eq!(
            drift.unresolved.load(Ordering::Relaxed),
            1,
            "the process is still down"
        );
        std::fs::remove_file(service_dir.join("banner.txt")).unwrap();
        drift.check(&never).await.unwrap();
        assert_eq!(
            detected(&fixture).last().unwrap(),
            &("file:banner.txt".to_owned(), "missing".to_owned())
        );
        assert_eq!(detected(&fixture).len(), 4);
    }

    #[tokio::test]
    async fn drift_is_corrected_by_converging_the_service_again() {
        let fixture = fixture();
        deploy(&fixture).await;
        let service_dir = fixture.config.service_dir("web");
        let first_pid = running_pid(&fixture);
        let mut drift = reporter(&fixture, true);
        let never = CancellationToken::new();

        std::fs::set_permissions(
            service_dir.join("banner.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        kill_workload(&fixture).await;
        drift.check(&never).await.unwrap();
        assert_eq!(
            detected(&fixture),
            [
                (
                    "file:banner.txt".to_owned(),
                    "mode 600, expected 644".to_owned()
                ),
                ("process:web".to_owned(), "not running".to_owned()),
            ]
        );
        assert_eq!(
            resolved(&fixture),
            [json!({"service": "web", "resources": ["file:banner.txt", "process:web"]})]
        );
        let mode = std::fs::metadata(service_dir.join("banner.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644);
        assert_ne!(running_pid(&fixture), first_pid, "started again");

        drift.check(&never).await.unwrap();
        assert_eq!(detected(&fixture).len(), 2, "nothing new after correcting");
        assert_eq!(resolved(&fixture).len(), 1);
        fixture.supervisor.stop_all().await;
    }

    /// The `web` service with its process running `script` under `restart`.
    fn web_running(script: &str, restart: RestartPolicy) -> Vec<Resource> {
        let mut resources = web();
        let Some(Resource::Process(process)) = resources.last_mut() else {
            unreachable!()
        };
        process.argv = vec!["/bin/sh".into(), "-c".into(), script.into()];
        process.restart = restart;
        resources
    }

    #[tokio::test]
    async fn a_workload_that_completed_is_not_drift_nor_restarted() {
        for restart in [RestartPolicy::Never, RestartPolicy::OnFailure] {
            let fixture = fixture();
            let service_dir = fixture.config.service_dir("web");
            deploy_resources(&fixture, &web_running("echo ran >> runs; exit 0", restart)).await;
            wait_until("the workload to complete", || {
                fixture.supervisor.state("web") == WorkloadState::Completed
            })
            .await;
            let mut drift = reporter(&fixture, true);
            let never = CancellationToken::new();
            drift.check(&never).await.unwrap();
            assert!(detected(&fixture).is_empty(), "{restart:?}");

            // Correcting other drift of the service does not start it again.
            std::fs::write(service_dir.join("banner.txt"), "defaced\n").unwrap();
            drift.check(&never).await.unwrap();
            assert_eq!(
                detected(&fixture),
                [("file:banner.txt".to_owned(), "content differs".to_owned())]
            );
            assert_eq!(resolved(&fixture).len(), 1, "{restart:?}");
            assert_eq!(
                fixture.supervisor.state("web"),
                WorkloadState::Completed,
                "{restart:?}"
            );
            assert_eq!(
                std::fs::read_to_string(service_dir.join("runs")).unwrap(),
                "ran\n"
            );
        }
    }

    #[tokio::test]
    async fn a_workload_that_failed_under_never_is_drift_and_started_again() {
        let fixture = fixture();
        // Fails the first time only, so the corrected one keeps running.
        let script = "test -f failed && exec sleep 600; touch failed; exit 3";
        deploy_resources(&fixture, &web_running(script, RestartPolicy::Never)).await;
        wait_until("the workload to fail", || {
            fixture.supervisor.state("web") == WorkloadState::Stopped
        })
        .await;
        let mut drift = reporter(&fixture, true);
        drift.check(&CancellationToken::new()).await.unwrap();
        assert_eq!(
            detected(&fixture),
            [("process:web".to_owned(), "not running".to_owned())]
        );
        assert_eq!(
            resolved(&fixture),
            [json!({"service": "web", "resources": ["process:web"]})]
        );
        running_pid(&fixture);
        fixture.supervisor.stop_all().await;
    }

    #[tokio::test]
    async fn the_periodic_check_runs_until_cancelled_and_zero_turns_it_off() {
        let fixture = fixture();
        deploy(&fixture).await;
        let banner = fixture.config.service_dir("web").join("banner.txt");
        let shutdown = CancellationToken::new();
        let off = Drift::new(
            fixture.applier.clone(),
            fixture.outbox.clone(),
            DriftConfig {
                interval_ms: 0,
                correct: true,
            },
        );
        tokio::time::timeout(PATIENCE, off.run(shutdown.clone()))
            .await
            .expect("an interval of 0 returns at once");

        let periodic = Drift::new(
            fixture.applier.clone(),
            fixture.outbox.clone(),
            DriftConfig {
                interval_ms: 20,
                correct: true,
            },
        );
        let running = tokio::spawn(periodic.run(shutdown.clone()));
        std::fs::write(&banner, "defaced\n").unwrap();
        wait_until("the periodic check to restore the banner", || {
            std::fs::read_to_string(&banner).is_ok_and(|content| content == "hi\n")
        })
        .await;
        shutdown.cancel();
        tokio::time::timeout(PATIENCE, running)
            .await
            .expect("the drift task stops when cancelled")
            .unwrap();
        assert_eq!(resolved(&fixture).len(), 1);
        fixture.supervisor.stop_all().await;
    }
}
