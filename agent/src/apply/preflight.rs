//! Refusing before touching anything: every path every resource names is
//! checked against the allowed roots, symlinks followed and nothing
//! created, before the first resource (or prune) changes the host. So a
//! refused task is one that applied nothing.

use std::path::Path;

use levee_common::resource::Resource;

use super::ApplyError;
use crate::paths::{PathError, Roots};

/// Checks the paths of `resources`, relative to `service_dir`: file and
/// directory paths, command working directories and `creates`, process
/// working directories. The first one outside the roots refuses them all.
pub fn paths(roots: &Roots, service_dir: &Path, resources: &[Resource]) -> Result<(), ApplyError> {
    for resource in resources {
        resource_paths(roots, service_dir, resource).map_err(|err| ApplyError::Refused {
            resource: resource.key(),
            reason: err.to_string(),
        })?;
    }
    Ok(())
}

fn resource_paths(roots: &Roots, service_dir: &Path, resource: &Resource) -> Result<(), PathError> {
    let working_dir =
        |dir: Option<&str>| roots.check_dir(&roots.resolve(service_dir, dir.unwrap_or("."))?);
    match resource {
        Resource::File(file) => roots.check_file(service_dir, &file.path).map(drop),
        Resource::Directory(directory) => {
            roots.check_dir(&roots.resolve(service_dir, &directory.path)?)
        }
        Resource::Command(command) => {
            working_dir(command.working_dir.as_deref())?;
            // `creates` is only looked at, never followed at its last part.
            match &command.creates {
                Some(creates) => roots.check_file(service_dir, creates).map(drop),
                None => Ok(()),
            }
        }
        Resource::Process(process) => working_dir(process.working_dir.as_deref()),
    }
}
