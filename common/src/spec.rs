//! Spec documents: the desired state users write in YAML and keep in git.
//!
//! A file may hold several documents separated by `---`. Each has a `kind`.
//! Errors name the file, line and column, and unknown fields are errors.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::pattern::{Pattern, PatternError};
use crate::resource::{FileResource, ProcessResource, Resource, RestartPolicy};

/// Largest spec file accepted, a guard against resource exhaustion.
pub const MAX_SPEC_FILE_BYTES: usize = 1024 * 1024;

/// A workload: what runs, with which files, on how many matching agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub kind: String,
    pub name: String,
    /// Agents whose labels contain all of these may run the service.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default = "one")]
    pub replicas: u32,
    pub process: ServiceProcess,
    #[serde(default)]
    pub files: Vec<ServiceFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceProcess {
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Relative to the service's directory on the agent unless absolute.
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    /// Relative to the service's directory on the agent unless absolute.
    pub path: String,
    pub content: String,
    #[serde(default = "default_mode")]
    pub mode: u32,
}

/// When an event matches `match`, do `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub kind: String,
    pub name: String,
    /// An EventBridge-style pattern over the event document
    /// (`type`, `source`, `subject`, `data`).
    #[serde(rename = "match")]
    pub pattern: serde_json::Value,
    /// Written as a one-key map, `repair: { service: clock }`.
    #[serde(with = "yaml_serde::with::singleton_map")]
    pub action: RuleAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleAction {
    /// Converge the service again on the agent that sent the event.
    Repair { service: String },
}

/// All documents of one desired-state version, validated together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecSet {
    pub services: BTreeMap<String, ServiceSpec>,
    pub rules: BTreeMap<String, RuleSpec>,
}

/// One problem in one spec file.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("{file}:{line}:{column}: {message}")]
pub struct SpecError {
    pub file: String,
    /// 1-based; 0 when the problem has no single position.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every problem found, not just the first.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("{}", render_errors(.0))]
pub struct SpecErrors(pub Vec<SpecError>);

fn render_errors(errors: &[SpecError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn one() -> u32 {
    1
}

fn default_mode() -> u32 {
    0o644
}

#[derive(Deserialize)]
struct KindOnly {
    kind: Option<String>,
}

impl SpecSet {
    /// Parses and validates `(file name, content)` pairs into one set.
    pub fn parse<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, SpecErrors> {
        let mut set = SpecSet::default();
        let mut errors = Vec::new();
        for (file, content) in files {
            if content.len() > MAX_SPEC_FILE_BYTES {
                errors.push(SpecError::whole_file(
                    file,
                    format!(
                        "file is {} bytes, more than the limit of {MAX_SPEC_FILE_BYTES}",
                        content.len()
                    ),
                ));
                continue;
            }
            set.parse_file(file, content, &mut errors);
        }
        set.check_references(&mut errors);
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(SpecErrors(errors))
        }
    }

    fn parse_file(&mut self, file: &str, content: &str, errors: &mut Vec<SpecError>) {
        // After a syntax error the document stream may repeat that error
        // forever, so stop reading at the first one.
        let mut kinds: Vec<Result<KindOnly, yaml_serde::Error>> = Vec::new();
        for document in yaml_serde::Deserializer::from_str(content) {
            let kind = KindOnly::deserialize(document);
            let failed = kind.is_err();
            kinds.push(kind);
            if failed {
                break;
            }
        }
        let documents = yaml_serde::Deserializer::from_str(content);
        for (kind, document) in kinds.into_iter().zip(documents) {
            let kind = match kind {
                Ok(KindOnly { kind: Some(kind) }) => kind,
                Ok(KindOnly { kind: None }) => {
                    // An empty document (a trailing `---`) is fine.
                    if let Err(err) = yaml_serde::Value::deserialize(document)
                        .map_err(|err| SpecError::from_yaml(file, &err))
                        .and_then(|value| {
                            if value.is_null() {
                                Ok(())
                            } else {
                                Err(SpecError::whole_file(
                                    file,
                                    "document has no `kind` (expected Service or Rule)".into(),
                                ))
                            }
                        })
                    {
                        errors.push(err);
                    }
                    continue;
                }
                Err(err) => {
                    errors.push(SpecError::from_yaml(file, &err));
                    // The stream cannot be trusted past a syntax error.
                    return;
                }
            };
            match kind.as_str() {
                "Service" => {
                    if let Some(service) = decode::<ServiceSpec>(file, document, errors) {
                        self.add_service(file, service, errors);
                    }
                }
                "Rule" => {
                    if let Some(rule) = decode::<RuleSpec>(file, document, errors) {
                        self.add_rule(file, rule, errors);
                    }
                }
                other => errors.push(SpecError::whole_file(
                    file,
                    format!("unknown kind `{other}`, expected one of `Service`, `Rule`"),
                )),
            }
        }
    }

    fn add_service(&mut self, file: &str, service: ServiceSpec, errors: &mut Vec<SpecError>) {
        let name = service.name.clone();
        let mut problems = Vec::new();
        if let Err(message) = check_name(&name) {
            problems.push(message);
        }
        if service.process.argv.is_empty() || service.process.argv[0].is_empty() {
            problems.push(format!(
                "service `{name}`: `process.argv` must name a program"
            ));
        }
        if service.replicas == 0 {
            problems.push(format!("service `{name}`: `replicas` must be at least 1"));
        }
        let mut paths = BTreeSet::new();
        for file_spec in &service.files {
            if let Err(message) = check_relative_path(&file_spec.path) {
                problems.push(format!(
                    "service `{name}`: file `{}`: {message}",
                    file_spec.path
                ));
            }
            if !paths.insert(file_spec.path.clone()) {
                problems.push(format!(
                    "service `{name}`: file `{}` is listed twice",
                    file_spec.path
                ));
            }
            if file_spec.mode > 0o7777 {
                problems.push(format!(
                    "service `{name}`: file `{}`: mode {:o} is not a permission mode",
                    file_spec.path, file_spec.mode
                ));
            }
        }
        if self.services.contains_key(&name) {
            problems.push(format!("service `{name}` is defined twice"));
        }
        if problems.is_empty() {
            self.services.insert(name, service);
        }
        errors.extend(
            problems
                .into_iter()
                .map(|message| SpecError::whole_file(file, message)),
        );
    }

    fn add_rule(&mut self, file: &str, rule: RuleSpec, errors: &mut Vec<SpecError>) {
        let name = rule.name.clone();
        if let Err(message) = check_name(&name) {
            errors.push(SpecError::whole_file(file, message));
        } else if let Err(err) = Pattern::compile(&rule.pattern) {
            errors.push(SpecError::whole_file(
                file,
                format!("rule `{name}`: `match`: {err}"),
            ));
        } else {
            match self.rules.entry(name) {
                std::collections::btree_map::Entry::Occupied(existing) => {
                    errors.push(SpecError::whole_file(
                        file,
                        format!("rule `{}` is defined twice", existing.key()),
                    ))
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(rule);
                }
            }
        }
    }

    fn check_references(&self, errors: &mut Vec<SpecError>) {
        for rule in self.rules.values() {
            let RuleAction::Repair { service } = &rule.action;
            if !self.services.contains_key(service) {
                errors.push(SpecError {
                    file: format!("rule `{}`", rule.name),
                    line: 0,
                    column: 0,
                    message: format!(
                        "action `repair` names service `{service}`, which no spec defines"
                    ),
                });
            }
        }
    }

    /// The rule's compiled pattern. Rules in a `SpecSet` were validated, so
    /// compilation cannot fail here; a failure is reported as no match.
    pub fn rule_pattern(rule: &RuleSpec) -> Result<Pattern, PatternError> {
        Pattern::compile(&rule.pattern)
    }
}

impl ServiceSpec {
    /// The resources an agent converges for this service. Relative paths
    /// stay relative: each agent resolves them under its own directory for
    /// the service, and refuses anything outside its allowed roots.
    pub fn resources(&self) -> Vec<Resource> {
        let mut resources: Vec<Resource> = self
            .files
            .iter()
            .map(|file| {
                Resource::File(FileResource {
                    path: file.path.clone(),
                    content: file.content.clone(),
                    mode: file.mode,
                })
            })
            .collect();
        resources.push(Resource::Process(ProcessResource {
            name: self.name.clone(),
            argv: self.process.argv.clone(),
            env: self.process.env.clone(),
            working_dir: self.process.working_dir.clone(),
            restart: self.process.restart,
        }));
        resources
    }
}

fn decode<T: DeserializeOwned>(
    file: &str,
    document: yaml_serde::Deserializer<'_>,
    errors: &mut Vec<SpecError>,
) -> Option<T> {
    T::deserialize(document)
        .map_err(|err| errors.push(SpecError::from_yaml(file, &err)))
        .ok()
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "name `{name}` must be 1-63 characters of a-z, 0-9 and `-`, not starting with `-`"
        ))
    }
}

/// Paths in specs are relative to a service's directory, or absolute; they
/// never climb out with `..`, and carry no NUL.
fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("path is empty".into());
    }
    if path.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    if path.split('/').any(|part| part == "..") {
        return Err("path must not contain `..`".into());
    }
    Ok(())
}

impl SpecError {
    fn whole_file(file: &str, message: String) -> Self {
        Self {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message,
        }
    }

    fn from_yaml(file: &str, err: &yaml_serde::Error) -> Self {
        let (line, column) = err
            .location()
            .map(|at| (at.line(), at.column()))
            .unwrap_or((0, 0));
        Self {
            file: file.to_owned(),
            line,
            column,
            message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
