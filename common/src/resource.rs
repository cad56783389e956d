//! Resources: the units of desired state that agents converge, and their
//! conversion to and from the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::pb;

/// One unit of desired state on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    File(FileResource),
    Process(ProcessResource),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileResource {
    /// Absolute path; agents refuse paths outside their allowed roots.
    pub path: String,
    pub content: String,
    /// Unix permission bits.
    #[serde(default = "default_file_mode")]
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessResource {
    pub name: String,
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
}

/// What the agent does by itself when a workload exits. Whatever the
/// policy, the exit is also reported as an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Leave recovery to the controllers' rules.
    #[default]
    Never,
    OnFailure,
    Always,
}

fn default_file_mode() -> u32 {
    0o644
}

impl Resource {
    /// A stable key naming the resource on its host, e.g. `file:/etc/x`.
    pub fn key(&self) -> String {
        match self {
            Resource::File(file) => format!("file:{}", file.path),
            Resource::Process(process) => format!("process:{}", process.name),
        }
    }
}

/// Why a wire resource could not be read.
#[derive(Debug, Error, PartialEq)]
pub enum ResourceError {
    #[error("resource has no kind")]
    MissingKind,
    #[error("process {name:?} has an empty argv")]
    EmptyArgv { name: String },
    #[error("process has an empty name")]
    EmptyName,
    #[error("file resource has an empty path")]
    EmptyPath,
}

impl From<&Resource> for pb::Resource {
    fn from(resource: &Resource) -> Self {
        let kind = match resource {
            Resource::File(file) => pb::resource::Kind::File(pb::FileResource {
                path: file.path.clone(),
                content: file.content.clone(),
                mode: file.mode,
            }),
            Resource::Process(process) => pb::resource::Kind::Process(pb::ProcessResource {
                name: process.name.clone(),
                argv: process.argv.clone(),
                env: process.env.clone().into_iter().collect(),
                working_dir: process.working_dir.clone().unwrap_or_default(),
                restart: pb::RestartPolicy::from(process.restart) as i32,
            }),
        };
        pb::Resource { kind: Some(kind) }
    }
}

impl TryFrom<pb::Resource> for Resource {
    type Error = ResourceError;

    fn try_from(wire: pb::Resource) -> Result<Self, Self::Error> {
        match wire.kind.ok_or(ResourceError::MissingKind)? {
            pb::resource::Kind::File(file) => {
                if file.path.is_empty() {
                    return Err(ResourceError::EmptyPath);
                }
                Ok(Resource::File(FileResource {
                    path: file.path,
                    content: file.content,
                    mode: file.mode,
                }))
            }
            pb::resource::Kind::Process(process) => {
                if process.name.is_empty() {
                    return Err(ResourceError::EmptyName);
                }
                if process.argv.is_empty() {
                    return Err(ResourceError::EmptyArgv { name: process.name });
                }
                let restart = match pb::RestartPolicy::try_from(process.restart) {
                    Ok(pb::RestartPolicy::OnFailure) => RestartPolicy::OnFailure,
                    Ok(pb::RestartPolicy::Always) => RestartPolicy::Always,
                    _ => RestartPolicy::Never,
                };
                Ok(Resource::Process(ProcessResource {
                    name: process.name,
                    argv: process.argv,
                    env: process.env.into_iter().collect(),
                    working_dir: Some(process.working_dir).filter(|dir| !dir.is_empty()),
                    restart,
                }))
            }
        }
    }
}

impl From<RestartPolicy> for pb::RestartPolicy {
    fn from(policy: RestartPolicy) -> Self {
        match policy {
            RestartPolicy::Never => pb::RestartPolicy::Never,
            RestartPolicy::OnFailure => pb::RestartPolicy::OnFailure,
            RestartPolicy::Always => pb::RestartPolicy::Always,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_survive_the_wire_unchanged() {
        let resources = [
            Resource::File(FileResource {
                path: "/srv/a".into(),
                content: "hi\n".into(),
                mode: 0o600,
            }),
            Resource::Process(ProcessResource {
                name: "clock".into(),
                argv: vec!["/bin/sleep".into(), "9".into()],
                env: BTreeMap::from([("A".into(), "1".into())]),
                working_dir: Some("/srv".into()),
                restart: RestartPolicy::OnFailure,
            }),
        ];
        for resource in resources {
            let wire = pb::Resource::from(&resource);
            assert_eq!(Resource::try_from(wire).unwrap(), resource);
        }
    }

    #[test]
    fn incomplete_wire_resources_are_refused() {
        assert_eq!(
            Resource::try_from(pb::Resource { kind: None }),
            Err(ResourceError::MissingKind)
        );
        let no_argv = pb::Resource {
            kind: Some(pb::resource::Kind::Process(pb::ProcessResource {
                name: "x".into(),
                ..Default::default()
            })),
        };
        assert_eq!(
            Resource::try_from(no_argv),
            Err(ResourceError::EmptyArgv { name: "x".into() })
        );
    }
}
