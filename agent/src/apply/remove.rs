//! Taking things off the host: a `remove` task stops a service's workloads
//! and deletes its files; a task that no longer lists a file or process of
//! its service prunes it. Directories stay: they may hold data the service
//! wrote, which a redeploy would want back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use levee_common::resource::Resource;
use tracing::{info, warn};

use super::{Applier, ApplyError};
use crate::task::ResourceOutcome;
use crate::util::blocking;

impl Applier {
    /// Stops the processes and deletes the files of `stored`, the service's
    /// desired state (`None`: the service is unknown here, nothing to do).
    /// Processes stop first, so none rewrites a file being deleted. A file
    /// that cannot be deleted fails the task, but the other files are
    /// still deleted.
    pub(super) async fn remove_service(
        &self,
        service: &str,
        stored: Option<&[Resource]>,
        outcomes: &mut Vec<ResourceOutcome>,
    ) -> Result<(), ApplyError> {
        let Some(stored) = stored else {
            info!("service unknown on this host; nothing to remove");
            return Ok(());
        };
        for resource in stored {
            if let Resource::Process(process) = resource {
                let stopped = self.supervisor.stop(&process.name).await;
                outcomes.push(outcome(resource, stopped, "not running"));
            }
        }
        let service_dir = self.service_dir(service);
        let mut failure = None;
        for resource in stored {
            match resource {
                Resource::File(file) => match delete_file(self, &service_dir, &file.path).await {
                    Ok(removed) => outcomes.push(outcome(resource, removed, "already absent")),
                    Err(reason) => {
                        warn!(path = %file.path, %reason, "could not delete a file of a removed service");
                        outcomes.push(ResourceOutcome {
                            resource: resource.key(),
                            changed: false,
                            detail: format!("not removed: {reason}"),
                        });
                        failure.get_or_insert(ApplyError::Failed {
                            resource: resource.key(),
                            reason,
                        });
                    }
                },
                Resource::Directory(_) => {
                    outcomes.push(outcome(resource, false, "left in place"));
                }
                Resource::Command(_) => {
                    outcomes.push(outcome(resource, false, "nothing to undo"));
                }
                Resource::Process(_) => {}
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Stops the processes of `previous` that `current` no longer lists.
    pub(super) async fn prune_processes(
        &self,
        previous: &[Resource],
        current: &[Resource],
        outcomes: &mut Vec<ResourceOutcome>,
    ) {
        let kept: HashSet<&str> = current
            .iter()
            .filter_map(|resource| match resource {
                Resource::Process(process) => Some(process.name.as_str()),
                _ => None,
            })
            .collect();
        for resource in previous {
            if let Resource::Process(process) = resource
                && !kept.contains(process.name.as_str())
            {
                let stopped = self.supervisor.stop(&process.name).await;
                info!(workload = %process.name, stopped, "pruned a process no longer specified");
                outcomes.push(outcome(resource, stopped, "not running"));
            }
        }
    }

    /// Deletes the files of `previous` that `current` no longer lists
    /// (compared by resolved path, so `a` and `./a` are the same file). A
    /// file that cannot be deleted is reported, not fatal: the task's new
    /// state is in place.
    pub(super) async fn prune_files(
        &self,
        service: &str,
        previous: &[Resource],
        current: &[Resource],
        outcomes: &mut Vec<ResourceOutcome>,
    ) {
        let service_dir = self.service_dir(service);
        let resolve = |path: &str| self.roots.resolve(&service_dir, path).ok();
        let kept: HashSet<PathBuf> = current
            .iter()
            .filter_map(|resource| match resource {
                Resource::File(file) => resolve(&file.path),
                _ => None,
            })
            .collect();
        for resource in previous {
            let Resource::File(file) = resource else {
                continue;
            };
            if resolve(&file.path).is_some_and(|path| kept.contains(&path)) {
                continue;
            }
            match delete_file(self, &service_dir, &file.path).await {
                Ok(removed) => {
                    if removed {
                        info!(path = %file.path, "pruned a file no longer specified");
                    }
                    outcomes.push(outcome(resource, removed, "already absent"));
                }
                Err(reason) => {
                    warn!(path = %file.path, %reason, "could not prune a file no longer specified");
                    outcomes.push(ResourceOutcome {
                        resource: resource.key(),
                        changed: false,
                        detail: format!("no longer specified, but not removed: {reason}"),
                    });
                }
            }
        }
    }
}

/// `removed` when `changed`, else `unchanged_detail`.
fn outcome(resource: &Resource, changed: bool, unchanged_detail: &str) -> ResourceOutcome {
    ResourceOutcome {
        resource: resource.key(),
        changed,
        detail: if changed {
            "removed".into()
        } else {
            unchanged_detail.into()
        },
    }
}

/// Deletes a service's file (a symlink there is removed, not followed).
/// Returns whether there was one.
async fn delete_file(applier: &Applier, service_dir: &Path, path: &str) -> Result<bool, String> {
    let Some(target) = applier
        .roots
        .existing_file(service_dir, path)
        .map_err(|err| err.to_string())?
    else {
        return Ok(false);
    };
    blocking(move || match std::fs::remove_file(&target) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(format!("deleting {}: {err}", target.display())),
    })
    .await
}
