//! Spec documents: the desired state users write in YAML and keep in git.
//!
//! A file may hold several documents separated by `---`. Each has a `kind`.
//! Errors name the file, line and column, and unknown fields are errors.

mod locate;
mod module;
mod replicas;
mod rule;
mod schema;
mod service;
mod template;
mod timer;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use self::module::{ModuleSpec, ModuleUse, ParameterSpec, ParameterType};
pub use self::replicas::Replicas;
pub use self::rule::{
    Guardrails, OnSilent, ProvisionerSpec, RuleAction, RuleSpec, Signal, Window, WindowScope,
};
pub use self::schema::spec_schema;
pub use self::service::{
    HealthSpec, Placement, ResourceRequests, ServiceCommand, ServiceDirectory, ServiceFile,
    ServiceProcess, ServiceSpec, UpdateStrategy,
};
pub use self::template::AgentFacts;
pub use self::timer::TimerSpec;

const KINDS: &str = "`Service`, `Module`, `Rule`, `Provisioner` or `Timer`";

/// Largest spec file accepted, a guard against resource exhaustion.
pub const MAX_SPEC_FILE_BYTES: usize = 1024 * 1024;

/// All documents of one desired-state version, validated together.
/// Services hold their modules already expanded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecSet {
    pub services: BTreeMap<String, ServiceSpec>,
    #[serde(default)]
    pub modules: BTreeMap<String, ModuleSpec>,
    pub rules: BTreeMap<String, RuleSpec>,
    #[serde(default)]
    pub provisioners: BTreeMap<String, ProvisionerSpec>,
    #[serde(default)]
    pub timers: BTreeMap<String, TimerSpec>,
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

#[derive(Deserialize)]
struct KindOnly {
    kind: Option<String>,
}

/// Where each document came from, to point errors found after parsing
/// (module expansion, references) at the right place.
#[derive(Default)]
struct Sources<'a> {
    files: BTreeMap<(&'static str, String), (&'a str, &'a str)>,
}

impl Sources<'_> {
    fn error(&self, kind: &'static str, name: &str, field: &str, message: String) -> SpecError {
        match self.files.get(&(kind, name.to_owned())) {
            Some((file, content)) => SpecError::located(file, content, name, field, message),
            None => SpecError::whole_file(&format!("{kind} `{name}`"), message),
        }
    }
}

impl SpecSet {
    /// Parses and validates `(file name, content)` pairs into one set,
    /// reporting every problem found, each with file, line and column.
    pub fn parse<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, SpecErrors> {
        let mut set = SpecSet::default();
        let mut sources = Sources::default();
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
            set.parse_file(file, content, &mut sources, &mut errors);
        }
        set.expand_modules(&sources, &mut errors);
        set.check_references(&sources, &mut errors);
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(SpecErrors(errors))
        }
    }

    fn parse_file<'a>(
        &mut self,
        file: &'a str,
        content: &'a str,
        sources: &mut Sources<'a>,
        errors: &mut Vec<SpecError>,
    ) {
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
                                    format!("document has no `kind` (expected {KINDS})"),
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
            let here = |name: &str, field: &str, message: String| {
                SpecError::located(file, content, name, field, message)
            };
            let (kind, name, problems): (&'static str, String, Vec<(&str, String)>) =
                match kind.as_str() {
                    "Service" => {
                        let Some(service) = decode::<ServiceSpec>(file, document, errors) else {
                            continue;
                        };
                        let name = service.name.clone();
                        let problems = service.problems();
                        if problems.is_empty() && check_name(&name).is_ok() {
                            insert_once(&mut self.services, name.clone(), service);
                        }
                        ("Service", name, problems)
                    }
                    "Module" => {
                        let Some(module) = decode::<ModuleSpec>(file, document, errors) else {
                            continue;
                        };
                        let name = module.name.clone();
                        let problems: Vec<_> = module
                            .problems()
                            .into_iter()
                            .map(|m| ("parameters", m))
                            .collect();
                        if problems.is_empty() && check_name(&name).is_ok() {
                            insert_once(&mut self.modules, name.clone(), module);
                        }
                        ("Module", name, problems)
                    }
                    "Rule" => {
                        let Some(rule) = decode::<RuleSpec>(file, document, errors) else {
                            continue;
                        };
                        let name = rule.name.clone();
                        let mut problems = match rule.pattern.problem() {
                            None => Vec::new(),
                            Some(err) => vec![("match", format!("rule `{name}`: `match`: {err}"))],
                        };
                        problems.extend(rule.problems());
                        if problems.is_empty() && check_name(&name).is_ok() {
                            insert_once(&mut self.rules, name.clone(), rule);
                        }
                        ("Rule", name, problems)
                    }
                    "Provisioner" => {
                        let Some(provisioner) = decode::<ProvisionerSpec>(file, document, errors)
                        else {
                            continue;
                        };
                        let name = provisioner.name.clone();
                        let problems = provisioner.problems();
                        if problems.is_empty() && check_name(&name).is_ok() {
                            insert_once(&mut self.provisioners, name.clone(), provisioner);
                        }
                        ("Provisioner", name, problems)
                    }
                    "Timer" => {
                        let Some(timer) = decode::<TimerSpec>(file, document, errors) else {
                            continue;
                        };
                        let name = timer.name.clone();
                        let problems = timer.problems();
                        if problems.is_empty() && check_name(&name).is_ok() {
                            insert_once(&mut self.timers, name.clone(), timer);
                        }
                        ("Timer", name, problems)
                    }
                    other => {
                        errors.push(SpecError::whole_file(
                            file,
                            format!("unknown kind `{other}`, expected one of {KINDS}"),
                        ));
                        continue;
                    }
                };
            if let Err(message) = check_name(&name) {
                errors.push(here(&name, "name", format!("{kind}: {message}")));
            } else {
                match sources.files.entry((kind, name.clone())) {
                    std::collections::btree_map::Entry::Occupied(first) => {
                        let (first, _) = first.get();
                        errors.push(here(
                            &name,
                            "name",
                            format!(
                                "{} `{name}` is defined twice (first in {first})",
                                kind.to_lowercase()
                            ),
                        ));
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert((file, content));
                    }
                }
            }
            errors.extend(
                problems
                    .into_iter()
                    .map(|(field, message)| here(&name, field, message)),
            );
        }
    }

    /// Replaces each service's `uses` with the modules' resources, placed
    /// before the service's own.
    fn expand_modules(&mut self, sources: &Sources<'_>, errors: &mut Vec<SpecError>) {
        let mut broken = Vec::new();
        for (name, service) in &mut self.services {
            let mut directories = Vec::new();
            let mut files = Vec::new();
            let mut commands = Vec::new();
            let mut problems = Vec::new();
            for using in &service.uses {
                let Some(module) = self.modules.get(&using.module) else {
                    problems.push(format!(
                        "service `{name}` uses module `{}`, which no spec defines",
                        using.module
                    ));
                    continue;
                };
                match module.expand(using) {
                    Ok(expansion) => {
                        directories.extend(expansion.directories);
                        files.extend(expansion.files);
                        commands.extend(expansion.commands);
                    }
                    Err(messages) => problems.extend(
                        messages
                            .into_iter()
                            .map(|message| format!("service `{name}`: {message}")),
                    ),
                }
            }
            if service.uses.is_empty() {
                continue;
            }
            directories.append(&mut service.directories);
            files.append(&mut service.files);
            commands.append(&mut service.commands);
            service.directories = directories;
            service.files = files;
            service.commands = commands;
            // The expanded service must still be valid as a whole (e.g. two
            // modules writing the same file).
            problems.extend(service.problems().into_iter().map(|(_, message)| message));
            if !problems.is_empty() {
                broken.push(name.clone());
                errors.extend(
                    problems
                        .into_iter()
                        .map(|message| sources.error("Service", name, "uses", message)),
                );
            }
        }
        for name in broken {
            self.services.remove(&name);
        }
    }

    fn check_references(&self, sources: &Sources<'_>, errors: &mut Vec<SpecError>) {
        for rule in self.rules.values() {
            let fallback = rule
                .signal
                .as_ref()
                .and_then(|signal| signal.fallback.as_ref());
            for action in std::iter::once(&rule.action).chain(fallback) {
                if let Some(service) = action.service()
                    && !self.services.contains_key(service)
                {
                    errors.push(sources.error(
                        "Rule",
                        &rule.name,
                        "service",
                        format!(
                            "rule `{}`: action `{}` names service `{service}`, which no spec defines",
                            rule.name,
                            action.name()
                        ),
                    ));
                }
                if let RuleAction::Provision { provisioner, .. } = action
                    && !self.provisioners.contains_key(provisioner)
                {
                    errors.push(sources.error(
                        "Rule",
                        &rule.name,
                        "provisioner",
                        format!(
                            "rule `{}`: action `provision` names provisioner `{provisioner}`, which no spec defines",
                            rule.name
                        ),
                    ));
                }
            }
        }
    }
}

fn insert_once<T>(map: &mut BTreeMap<String, T>, name: String, value: T) {
    map.entry(name).or_insert(value);
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

pub(crate) fn check_name(name: &str) -> Result<(), String> {
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
pub(crate) fn check_path(path: &str) -> Result<(), String> {
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
    /// Points at `field` inside the document named `name`, or at its name.
    fn located(file: &str, content: &str, name: &str, field: &str, message: String) -> Self {
        let (line, column) = locate::find(content, name, field).unwrap_or((0, 0));
        Self {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    }

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
