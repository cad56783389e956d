//! Resources: the units of desired state that agents converge, and their
//! conversion to and from the wire.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::is_valid_name;
use crate::pb;

/// One unit of desired state on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    File(FileResource),
    Directory(DirectoryResource),
    Command(CommandResource),
    Process(ProcessResource),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryResource {
    pub path: String,
    #[serde(default = "default_dir_mode")]
    pub mode: u32,
}

/// A command run from argv, never through a shell. Guards make it
/// idempotent: it is skipped when `creates` exists or `unless` exits 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResource {
    pub name: String,
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub creates: Option<String>,
    #[serde(default)]
    pub unless: Option<Vec<String>>,
    #[serde(default = "default_command_timeout_ms")]
    pub timeout_ms: u32,
}

/// How an agent decides a workload is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    /// Consecutive passes that make a workload healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make it unhealthy.
    pub unhealthy_threshold: u32,
    /// How long a new workload may take to become healthy.
    pub start_timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Probe {
    /// GET `http://127.0.0.1:{port}{path}` answers 2xx or 3xx.
    Http { port: u16, path: String },
    /// `127.0.0.1:{port}` accepts a connection.
    Tcp { port: u16 },
    /// `argv` exits 0.
    Command { argv: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileResource {
    /// Absolute path; agents refuse paths outside their allowed roots.
    pub path: String,
    pub content: String,
    /// The content is this secret's value (`content` is then empty until
    /// the leader resolves it into the task; see `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
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
    /// Variables whose value is a secret's, by the secret's name; the
    /// leader resolves them into `env` in the task it sends (`secret`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Run as this user (name or uid); `None` runs as the agent's user.
    #[serde(default)]
    pub user: Option<String>,
    /// Between SIGTERM and SIGKILL when stopping the workload.
    #[serde(default = "default_stop_timeout_ms")]
    pub stop_timeout_ms: u32,
    #[serde(default)]
    pub health: Option<HealthCheck>,
}

/// What the agent does by itself when a workload exits. Whatever the
/// policy, the exit is also reported as an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

fn default_dir_mode() -> u32 {
    0o755
}

pub const DEFAULT_STOP_TIMEOUT_MS: u32 = 10_000;
pub const DEFAULT_COMMAND_TIMEOUT_MS: u32 = 60_000;

fn default_stop_timeout_ms() -> u32 {
    DEFAULT_STOP_TIMEOUT_MS
}

fn default_command_timeout_ms() -> u32 {
    DEFAULT_COMMAND_TIMEOUT_MS
}

impl Resource {
    /// A stable key naming the resource on its host, e.g. `file:/etc/x`.
    pub fn key(&self) -> String {
        match self {
            Resource::File(file) => format!("file:{}", file.path),
            Resource::Directory(dir) => format!("directory:{}", dir.path),
            Resource::Command(command) => format!("command:{}", command.name),
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
    /// Agents use process and command names in paths.
    #[error("name {name:?} must be 1-63 characters of a-z, 0-9 and `-`, not starting with `-`")]
    BadName { name: String },
    #[error("{kind} resource has an empty path")]
    EmptyPath { kind: &'static str },
    #[error("{name:?}: health check has no probe")]
    MissingProbe { name: String },
    #[error("{name:?}: health check port {port} is not a TCP port")]
    BadPort { name: String, port: u32 },
}

impl From<&Resource> for pb::Resource {
    fn from(resource: &Resource) -> Self {
        let kind = match resource {
            Resource::File(file) => pb::resource::Kind::File(pb::FileResource {
                path: file.path.clone(),
                content: file.content.clone(),
                mode: file.mode,
            }),
            Resource::Directory(dir) => pb::resource::Kind::Directory(pb::DirectoryResource {
                path: dir.path.clone(),
                mode: dir.mode,
            }),
            Resource::Command(command) => pb::resource::Kind::Command(pb::CommandResource {
                name: command.name.clone(),
                argv: command.argv.clone(),
                env: command.env.clone().into_iter().collect(),
                working_dir: command.working_dir.clone().unwrap_or_default(),
                creates: command.creates.clone().unwrap_or_default(),
                unless: command.unless.clone().unwrap_or_default(),
                timeout_ms: command.timeout_ms,
            }),
            Resource::Process(process) => pb::resource::Kind::Process(pb::ProcessResource {
                name: process.name.clone(),
                argv: process.argv.clone(),
                env: process.env.clone().into_iter().collect(),
                working_dir: process.working_dir.clone().unwrap_or_default(),
                restart: pb::RestartPolicy::from(process.restart) as i32,
                user: process.user.clone().unwrap_or_default(),
                stop_timeout_ms: process.stop_timeout_ms,
                health: process.health.as_ref().map(pb::HealthCheck::from),
            }),
        };
        pb::Resource { kind: Some(kind) }
    }
}

impl From<&HealthCheck> for pb::HealthCheck {
    fn from(check: &HealthCheck) -> Self {
        let probe = match &check.probe {
            Probe::Http { port, path } => pb::health_check::Probe::Http(pb::HttpProbe {
                port: u32::from(*port),
                path: path.clone(),
            }),
            Probe::Tcp { port } => pb::health_check::Probe::Tcp(pb::TcpProbe {
                port: u32::from(*port),
            }),
            Probe::Command { argv } => {
                pb::health_check::Probe::Command(pb::CommandProbe { argv: argv.clone() })
            }
        };
        pb::HealthCheck {
            probe: Some(probe),
            interval_ms: check.interval_ms,
            timeout_ms: check.timeout_ms,
            healthy_threshold: check.healthy_threshold,
            unhealthy_threshold: check.unhealthy_threshold,
            start_timeout_ms: check.start_timeout_ms,
        }
    }
}

fn non_empty(value: String) -> Option<String> {
    Some(value).filter(|value| !value.is_empty())
}

/// A process or command name, refused unless it is safe in a path.
fn check_name(name: &str) -> Result<(), ResourceError> {
    if name.is_empty() {
        Err(ResourceError::EmptyName)
    } else if is_valid_name(name) {
        Ok(())
    } else {
        Err(ResourceError::BadName {
            name: name.to_owned(),
        })
    }
}

fn health_from_wire(name: &str, wire: pb::HealthCheck) -> Result<HealthCheck, ResourceError> {
    let port = |port: u32| {
        u16::try_from(port)
            .ok()
            .filter(|port| *port != 0)
            .ok_or(ResourceError::BadPort {
                name: name.to_owned(),
                port,
            })
    };
    let probe = match wire.probe.ok_or_else(|| ResourceError::MissingProbe {
        name: name.to_owned(),
    })? {
        pb::health_check::Probe::Http(http) => Probe::Http {
            port: port(http.port)?,
            path: http.path,
        },
        pb::health_check::Probe::Tcp(tcp) => Probe::Tcp {
            port: port(tcp.port)?,
        },
        pb::health_check::Probe::Command(command) => {
            if command.argv.is_empty() {
                return Err(ResourceError::EmptyArgv {
                    name: name.to_owned(),
                });
            }
            Probe::Command { argv: command.argv }
        }
    };
    Ok(HealthCheck {
        probe,
        interval_ms: wire.interval_ms,
        timeout_ms: wire.timeout_ms,
        healthy_threshold: wire.healthy_threshold,
        unhealthy_threshold: wire.unhealthy_threshold,
        start_timeout_ms: wire.start_timeout_ms,
    })
}

impl TryFrom<pb::Resource> for Resource {
    type Error = ResourceError;

    fn try_from(wire: pb::Resource) -> Result<Self, Self::Error> {
        match wire.kind.ok_or(ResourceError::MissingKind)? {
            pb::resource::Kind::File(file) => {
                if file.path.is_empty() {
                    return Err(ResourceError::EmptyPath { kind: "file" });
                }
                Ok(Resource::File(FileResource {
                    path: file.path,
                    content: file.content,
                    secret: None,
                    mode: file.mode,
                }))
            }
            pb::resource::Kind::Directory(dir) => {
                if dir.path.is_empty() {
                    return Err(ResourceError::EmptyPath { kind: "directory" });
                }
                Ok(Resource::Directory(DirectoryResource {
                    path: dir.path,
                    mode: dir.mode,
                }))
            }
            pb::resource::Kind::Command(command) => {
                check_name(&command.name)?;
                if command.argv.is_empty() {
                    return Err(ResourceError::EmptyArgv { name: command.name });
                }
                Ok(Resource::Command(CommandResource {
                    name: command.name,
                    argv: command.argv,
                    env: command.env.into_iter().collect(),
                    working_dir: non_empty(command.working_dir),
                    creates: non_empty(command.creates),
                    unless: Some(command.unless).filter(|argv| !argv.is_empty()),
                    timeout_ms: command.timeout_ms,
                }))
            }
            pb::resource::Kind::Process(process) => {
                check_name(&process.name)?;
                if process.argv.is_empty() {
                    return Err(ResourceError::EmptyArgv { name: process.name });
                }
                let restart = match pb::RestartPolicy::try_from(process.restart) {
                    Ok(pb::RestartPolicy::OnFailure) => RestartPolicy::OnFailure,
                    Ok(pb::RestartPolicy::Always) => RestartPolicy::Always,
                    _ => RestartPolicy::Never,
                };
                let health = process
                    .health
                    .map(|health| health_from_wire(&process.name, health))
                    .transpose()?;
                Ok(Resource::Process(ProcessResource {
                    name: process.name,
                    argv: process.argv,
                    env: process.env.into_iter().collect(),
                    secret_env: Default::default(),
                    working_dir: non_empty(process.working_dir),
                    restart,
                    user: non_empty(process.user),
                    stop_timeout_ms: if process.stop_timeout_ms == 0 {
                        DEFAULT_STOP_TIMEOUT_MS
                    } else {
                        process.stop_timeout_ms
                    },
                    health,
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
                secret: None,
                mode: 0o600,
            }),
            Resource::Directory(DirectoryResource {
                path: "/srv/d".into(),
                mode: 0o750,
            }),
            Resource::Command(CommandResource {
                name: "migrate".into(),
                argv: vec!["/bin/true".into()],
                env: BTreeMap::new(),
                working_dir: None,
                creates: Some("/srv/done".into()),
                unless: Some(vec!["/bin/false".into()]),
                timeout_ms: 5_000,
            }),
            Resource::Process(ProcessResource {
                name: "clock".into(),
                argv: vec!["/bin/sleep".into(), "9".into()],
                env: BTreeMap::from([("A".into(), "1".into())]),
                secret_env: Default::default(),
                working_dir: Some("/srv".into()),
                restart: RestartPolicy::OnFailure,
                user: Some("nobody".into()),
                stop_timeout_ms: 2_000,
                health: Some(HealthCheck {
                    probe: Probe::Http {
                        port: 8080,
                        path: "/healthz".into(),
                    },
                    interval_ms: 500,
                    timeout_ms: 1_000,
                    healthy_threshold: 2,
                    unhealthy_threshold: 3,
                    start_timeout_ms: 30_000,
                }),
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

    #[test]
    fn process_and_command_names_that_are_not_safe_in_a_path_are_refused() {
        let process = |name: &str| pb::Resource {
            kind: Some(pb::resource::Kind::Process(pb::ProcessResource {
                name: name.into(),
                argv: vec!["/bin/true".into()],
                ..Default::default()
            })),
        };
        let command = |name: &str| pb::Resource {
            kind: Some(pb::resource::Kind::Command(pb::CommandResource {
                name: name.into(),
                argv: vec!["/bin/true".into()],
                ..Default::default()
            })),
        };
        for name in ["../../etc", "a/b", "Web", "-web", "web_1", &"a".repeat(64)] {
            for wire in [process(name), command(name)] {
                assert_eq!(
                    Resource::try_from(wire),
                    Err(ResourceError::BadName { name: name.into() })
                );
            }
        }
        assert_eq!(
            Resource::try_from(command("")),
            Err(ResourceError::EmptyName)
        );
        assert!(Resource::try_from(process("web-1")).is_ok());
        assert!(Resource::try_from(command("migrate-2")).is_ok());
    }
}
