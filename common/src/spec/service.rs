//! The `Service` kind: what runs, where, how it is checked and updated.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::module::ModuleUse;
use super::replicas::Replicas;
use super::template::{self, AgentFacts};
use crate::resource::{
    CommandResource, DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_STOP_TIMEOUT_MS, DirectoryResource,
    FileResource, HealthCheck, Probe, ProcessResource, Resource, RestartPolicy,
};
use crate::secret::{self, SecretRef};

/// A workload: what runs, with which files, on how many matching agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A count, or `{min, max, initial}` for a service that scales.
    #[serde(default)]
    pub replicas: Replicas,
    #[serde(default)]
    pub placement: Placement,
    pub process: ServiceProcess,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// Created before the files, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<ServiceDirectory>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ServiceFile>,
    /// Run after the files and before the process, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<ServiceCommand>,
    #[serde(default)]
    pub update: UpdateStrategy,
    /// Modules whose directories, files and commands come before the
    /// service's own. After parsing they are already expanded into those
    /// lists; `uses` stays as a record of where they came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<ModuleUse>,
}

/// Where a service may run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Agents whose labels contain all of these may run the service.
    /// Labels are given by the cluster (`levee agents label`), never
    /// claimed by an agent.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Agents must also report all of these facts about themselves (the
    /// `labels` of the agent's own config). An opt-in: any host, or anyone
    /// holding its certificate, can claim any fact.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
    /// Spread replicas evenly across the values of this agent label
    /// (e.g. `site`), so one site's loss takes as few as possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<String>,
    /// What one replica needs; agents are never filled past the capacity
    /// they announce.
    #[serde(default)]
    pub resources: ResourceRequests,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequests {
    #[serde(default)]
    pub cpu_millis: u32,
    #[serde(default)]
    pub memory_mb: u64,
}

/// An environment variable's value: given, or a secret's by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    Plain(String),
    Secret(SecretRef),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceProcess {
    /// Program and arguments, run directly (never through a shell built
    /// from data).
    pub argv: Vec<String>,
    /// Each variable a string, or `{ secret: NAME }`: the value of a
    /// secret in the controllers' secrets directory, sent only inside the
    /// task for an agent the service is placed on.
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Relative to the service's directory on the agent unless absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Run as this user (name or uid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Between SIGTERM and SIGKILL when the workload is stopped.
    #[serde(default = "default_stop_timeout_ms")]
    pub stop_timeout_ms: u32,
}

/// Exactly one of `http`, `tcp` or `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandProbeSpec>,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u32,
    #[serde(default = "default_probe_timeout_ms")]
    pub timeout_ms: u32,
    #[serde(default = "one")]
    pub healthy_threshold: u32,
    #[serde(default = "three")]
    pub unhealthy_threshold: u32,
    #[serde(default = "default_start_timeout_ms")]
    pub start_timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeSpec {
    pub port: u16,
    #[serde(default = "root_path")]
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpProbeSpec {
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandProbeSpec {
    pub argv: Vec<String>,
}

/// A file: exact `content`, a `template` rendered per agent with
/// `agent.id`, `agent.labels` and `service.name`, or a `secret`'s value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    /// Relative to the service's directory on the agent unless absolute.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The value of this secret in the controllers' secrets directory,
    /// sent only inside the task for an agent the service is placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default = "default_file_mode")]
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceDirectory {
    pub path: String,
    #[serde(default = "default_dir_mode")]
    pub mode: u32,
}

/// A command run from argv; `creates` and `unless` make it idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceCommand {
    pub name: String,
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Skip the command when this path exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    /// Skip the command when this argv exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<Vec<String>>,
    #[serde(default = "default_command_timeout_ms")]
    pub timeout_ms: u32,
}

/// How a changed service rolls out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStrategy {
    /// Agents updated at once; the next batch starts when this one is
    /// applied and healthy.
    #[serde(default = "one")]
    pub max_parallel: u32,
    /// On a failed batch, restore the service's previous version.
    #[serde(default)]
    pub auto_rollback: bool,
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        Self {
            max_parallel: 1,
            auto_rollback: false,
        }
    }
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn root_path() -> String {
    "/".into()
}
fn default_file_mode() -> u32 {
    0o644
}
fn default_dir_mode() -> u32 {
    0o755
}
fn default_interval_ms() -> u32 {
    1_000
}
fn default_probe_timeout_ms() -> u32 {
    1_000
}
fn default_start_timeout_ms() -> u32 {
    30_000
}
fn default_stop_timeout_ms() -> u32 {
    DEFAULT_STOP_TIMEOUT_MS
}
fn default_command_timeout_ms() -> u32 {
    DEFAULT_COMMAND_TIMEOUT_MS
}

impl ServiceSpec {
    /// The resources one agent converges for this service, in order:
    /// directories, files, commands, then the process. Templates are
    /// rendered with the agent's facts. Relative paths stay relative: each
    /// agent resolves them under its own directory for the service.
    pub fn resources_for(&self, agent: &AgentFacts<'_>) -> Result<Vec<Resource>, String> {
        let mut resources =
            Vec::with_capacity(self.directories.len() + self.files.len() + self.commands.len() + 1);
        resources.extend(self.directories.iter().map(|dir| {
            Resource::Directory(DirectoryResource {
                path: dir.path.clone(),
                mode: dir.mode,
            })
        }));
        for file in &self.files {
            let content = match (&file.content, &file.template) {
                (Some(content), _) => content.clone(),
                (None, Some(source)) => template::render(source, &self.name, agent)
                    .map_err(|err| format!("file `{}`: {err}", file.path))?,
                (None, None) => String::new(),
            };
            resources.push(Resource::File(FileResource {
                path: file.path.clone(),
                content,
                secret: file.secret.clone(),
                mode: file.mode,
            }));
        }
        resources.extend(self.commands.iter().map(|command| {
            Resource::Command(CommandResource {
                name: command.name.clone(),
                argv: command.argv.clone(),
                env: command.env.clone(),
                working_dir: command.working_dir.clone(),
                creates: command.creates.clone(),
                unless: command.unless.clone(),
                timeout_ms: command.timeout_ms,
            })
        }));
        resources.push(Resource::Process(ProcessResource {
            name: self.name.clone(),
            argv: self.process.argv.clone(),
            env: self
                .process
                .env
                .iter()
                .filter_map(|(name, value)| match value {
                    EnvValue::Plain(value) => Some((name.clone(), value.clone())),
                    EnvValue::Secret(_) => None,
                })
                .collect(),
            secret_env: self
                .process
                .env
                .iter()
                .filter_map(|(name, value)| match value {
                    EnvValue::Secret(SecretRef { secret }) => Some((name.clone(), secret.clone())),
                    EnvValue::Plain(_) => None,
                })
                .collect(),
            working_dir: self.process.working_dir.clone(),
            restart: self.process.restart,
            user: self.process.user.clone(),
            stop_timeout_ms: self.process.stop_timeout_ms,
            health: self.health.as_ref().and_then(HealthSpec::to_check),
        }));
        Ok(resources)
    }

    /// The secrets this service's process and files name, sorted.
    pub fn secret_names(&self) -> std::collections::BTreeSet<&str> {
        let env = self.process.env.values().filter_map(|value| match value {
            EnvValue::Secret(SecretRef { secret }) => Some(secret.as_str()),
            EnvValue::Plain(_) => None,
        });
        let files = self.files.iter().filter_map(|file| file.secret.as_deref());
        env.chain(files).collect()
    }

    /// Every problem with this service on its own (references to other
    /// documents are checked by the set).
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        let name = &self.name;
        let mut problems = Vec::new();
        if self.process.argv.first().is_none_or(String::is_empty) {
            problems.push(("argv", "`process.argv` must name a program".to_owned()));
        }
        if let Err(message) = self.replicas.check() {
            problems.push(("replicas", message));
        }
        if self.update.max_parallel == 0 {
            problems.push((
                "max_parallel",
                "`update.max_parallel` must be at least 1".into(),
            ));
        }
        if let Some(spread) = &self.placement.spread
            && spread.is_empty()
        {
            problems.push(("spread", "`placement.spread` names no label".into()));
        }
        if let Some(health) = &self.health {
            problems.extend(health.problems().into_iter().map(|m| ("health", m)));
        }
        let mut paths = std::collections::BTreeSet::new();
        for dir in &self.directories {
            if let Err(message) = super::check_path(&dir.path) {
                problems.push((
                    "directories",
                    format!("directory `{}`: {message}", dir.path),
                ));
            }
            if dir.mode > 0o7777 {
                problems.push((
                    "mode",
                    format!(
                        "directory `{}`: mode {:o} is not a permission mode",
                        dir.path, dir.mode
                    ),
                ));
            }
        }
        for file in &self.files {
            if let Err(message) = super::check_path(&file.path) {
                problems.push(("files", format!("file `{}`: {message}", file.path)));
            }
            if !paths.insert(file.path.clone()) {
                problems.push(("files", format!("file `{}` is listed twice", file.path)));
            }
            if file.mode > 0o7777 {
                problems.push((
                    "mode",
                    format!(
                        "file `{}`: mode {:o} is not a permission mode",
                        file.path, file.mode
                    ),
                ));
            }
            if let Some(name) = &file.secret {
                if file.content.is_some() || file.template.is_some() {
                    problems.push((
                        "secret",
                        format!(
                            "file `{}`: give `content`, `template` or `secret`, only one",
                            file.path
                        ),
                    ));
                }
                if let Some(problem) = secret::name_problem(name) {
                    problems.push(("secret", format!("file `{}`: {problem}", file.path)));
                }
                continue;
            }
            match (&file.content, &file.template) {
                (Some(_), Some(_)) => problems.push((
                    "template",
                    format!(
                        "file `{}`: give `content` or `template`, not both",
                        file.path
                    ),
                )),
                (None, None) => problems.push((
                    "path",
                    format!(
                        "file `{}`: needs `content`, `template` or `secret`",
                        file.path
                    ),
                )),
                (None, Some(source)) => {
                    if let Err(err) = template::check(source) {
                        problems.push(("template", format!("file `{}`: {err}", file.path)));
                    }
                }
                (Some(_), None) => {}
            }
        }
        for (variable, value) in &self.process.env {
            if let EnvValue::Secret(SecretRef { secret }) = value
                && let Some(problem) = secret::name_problem(secret)
            {
                problems.push(("env", format!("env `{variable}`: {problem}")));
            }
        }
        let mut commands = std::collections::BTreeSet::new();
        for command in &self.commands {
            if let Err(message) = super::check_name(&command.name) {
                problems.push(("commands", format!("command: {message}")));
            }
            if !commands.insert(command.name.clone()) {
                problems.push((
                    "commands",
                    format!("command `{}` is listed twice", command.name),
                ));
            }
            if command.argv.first().is_none_or(String::is_empty) {
                problems.push((
                    "argv",
                    format!("command `{}`: `argv` must name a program", command.name),
                ));
            }
            if command
                .unless
                .as_ref()
                .is_some_and(|argv| argv.first().is_none_or(String::is_empty))
            {
                problems.push((
                    "unless",
                    format!("command `{}`: `unless` must name a program", command.name),
                ));
            }
            if command.timeout_ms == 0 {
                problems.push((
                    "timeout_ms",
                    format!("command `{}`: `timeout_ms` must be above 0", command.name),
                ));
            }
        }
        problems
            .into_iter()
            .map(|(field, message)| (field, format!("service `{name}`: {message}")))
            .collect()
    }
}

impl HealthSpec {
    fn probe(&self) -> Option<Probe> {
        match (&self.http, &self.tcp, &self.command) {
            (Some(http), None, None) => Some(Probe::Http {
                port: http.port,
                path: http.path.clone(),
            }),
            (None, Some(tcp), None) => Some(Probe::Tcp { port: tcp.port }),
            (None, None, Some(command)) => Some(Probe::Command {
                argv: command.argv.clone(),
            }),
            _ => None,
        }
    }

    fn to_check(&self) -> Option<HealthCheck> {
        Some(HealthCheck {
            probe: self.probe()?,
            interval_ms: self.interval_ms,
            timeout_ms: self.timeout_ms,
            healthy_threshold: self.healthy_threshold,
            unhealthy_threshold: self.unhealthy_threshold,
            start_timeout_ms: self.start_timeout_ms,
        })
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let probes = [
            self.http.is_some(),
            self.tcp.is_some(),
            self.command.is_some(),
        ];
        if probes.iter().filter(|set| **set).count() != 1 {
            problems.push("`health` needs exactly one of `http`, `tcp` or `command`".to_owned());
        }
        let ports = [
            self.http.as_ref().map(|p| p.port),
            self.tcp.as_ref().map(|p| p.port),
        ];
        if ports.contains(&Some(0)) {
            problems.push("`health` port must be 1-65535".to_owned());
        }
        if let Some(http) = &self.http
            && !http.path.starts_with('/')
        {
            problems.push(format!(
                "`health.http.path` `{}` must start with `/`",
                http.path
            ));
        }
        if self
            .command
            .as_ref()
            .is_some_and(|command| command.argv.first().is_none_or(String::is_empty))
        {
            problems.push("`health.command.argv` must name a program".to_owned());
        }
        for (field, value) in [
            ("interval_ms", self.interval_ms),
            ("timeout_ms", self.timeout_ms),
            ("healthy_threshold", self.healthy_threshold),
            ("unhealthy_threshold", self.unhealthy_threshold),
            ("start_timeout_ms", self.start_timeout_ms),
        ] {
            if value == 0 {
                problems.push(format!("`health.{field}` must be above 0"));
            }
        }
        problems
    }
}
