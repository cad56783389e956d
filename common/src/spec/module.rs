//! The `Module` kind: a reusable, parameterised group of directories,
//! files and commands that services pull in with `uses`. Parameters are
//! typed, may have defaults, and are substituted as `${name}` (`$${` for a
//! literal `${`) when the specs are parsed, so a plan shows the result.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::service::{ServiceCommand, ServiceDirectory, ServiceFile};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModuleSpec {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: BTreeMap<String, ParameterSpec>,
    #[serde(default)]
    pub directories: Vec<ServiceDirectory>,
    #[serde(default)]
    pub files: Vec<ServiceFile>,
    #[serde(default)]
    pub commands: Vec<ServiceCommand>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// Without a default the parameter is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParameterType {
    String,
    Integer,
    Boolean,
}

/// A service's use of a module, with its parameter values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModuleUse {
    pub module: String,
    #[serde(default, rename = "with")]
    pub values: BTreeMap<String, Value>,
}

/// What a module contributes to a service once its parameters are bound.
#[derive(Debug, Default)]
pub struct Expansion {
    pub directories: Vec<ServiceDirectory>,
    pub files: Vec<ServiceFile>,
    pub commands: Vec<ServiceCommand>,
}

impl ParameterType {
    fn admits(self, value: &Value) -> bool {
        match self {
            ParameterType::String => value.is_string(),
            ParameterType::Integer => value.is_i64() || value.is_u64(),
            ParameterType::Boolean => value.is_boolean(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ParameterType::String => "a string",
            ParameterType::Integer => "an integer",
            ParameterType::Boolean => "a boolean",
        }
    }
}

impl ModuleSpec {
    /// Problems with the module on its own: bad defaults and references to
    /// parameters it does not declare.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, parameter) in &self.parameters {
            if let Err(message) = super::check_name(name) {
                problems.push(format!("module `{}`: parameter {message}", self.name));
            }
            if let Some(default) = &parameter.default
                && !parameter.kind.admits(default)
            {
                problems.push(format!(
                    "module `{}`: parameter `{name}`: default {default} is not {}",
                    self.name,
                    parameter.kind.name()
                ));
            }
        }
        let placeholders: BTreeMap<String, String> = self
            .parameters
            .keys()
            .map(|name| (name.clone(), String::new()))
            .collect();
        if let Err(errors) = self.substitute(&placeholders) {
            problems.extend(
                errors
                    .into_iter()
                    .map(|err| format!("module `{}`: {err}", self.name)),
            );
        }
        problems
    }

    /// Binds `using`'s values (checked against the declared types) and
    /// returns the module's resources with every `${name}` replaced.
    pub fn expand(&self, using: &ModuleUse) -> Result<Expansion, Vec<String>> {
        let mut errors = Vec::new();
        let mut bound = BTreeMap::new();
        for name in using.values.keys() {
            if !self.parameters.contains_key(name) {
                errors.push(format!(
                    "module `{}` has no parameter `{name}` (it has: {})",
                    self.name,
                    self.parameters
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for (name, parameter) in &self.parameters {
            match using.values.get(name).or(parameter.default.as_ref()) {
                None => errors.push(format!(
                    "module `{}` needs parameter `{name}` ({})",
                    self.name,
                    parameter.kind.name()
                )),
                Some(value) if !parameter.kind.admits(value) => errors.push(format!(
                    "module `{}`: parameter `{name}` must be {}, got {value}",
                    self.name,
                    parameter.kind.name()
                )),
                Some(Value::String(text)) => {
                    bound.insert(name.clone(), text.clone());
                }
                Some(value) => {
                    bound.insert(name.clone(), value.to_string());
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        self.substitute(&bound).map_err(|errors| {
            errors
                .into_iter()
                .map(|err| format!("module `{}`: {err}", self.name))
                .collect()
        })
    }

    fn substitute(&self, values: &BTreeMap<String, String>) -> Result<Expansion, Vec<String>> {
        let mut errors = Vec::new();
        let mut sub = |text: &str| match substitute(text, values) {
            Ok(text) => text,
            Err(err) => {
                errors.push(err);
                String::new()
            }
        };
        let mut sub_opt = |text: &Option<String>| text.as_deref().map(&mut sub);
        let directories = self
            .directories
            .iter()
            .map(|dir| ServiceDirectory {
                path: sub_opt(&Some(dir.path.clone())).unwrap_or_default(),
                mode: dir.mode,
            })
            .collect();
        let files = self
            .files
            .iter()
            .map(|file| ServiceFile {
                path: sub_opt(&Some(file.path.clone())).unwrap_or_default(),
                content: sub_opt(&file.content),
                template: sub_opt(&file.template),
                secret: None,
                mode: file.mode,
            })
            .collect();
        let commands = self
            .commands
            .iter()
            .map(|command| ServiceCommand {
                name: command.name.clone(),
                argv: command
                    .argv
                    .iter()
                    .map(|arg| sub_opt(&Some(arg.clone())).unwrap_or_default())
                    .collect(),
                env: command
                    .env
                    .iter()
                    .map(|(key, value)| {
                        (
                            key.clone(),
                            sub_opt(&Some(value.clone())).unwrap_or_default(),
                        )
                    })
                    .collect(),
                working_dir: sub_opt(&command.working_dir),
                creates: sub_opt(&command.creates),
                unless: command.unless.as_ref().map(|argv| {
                    argv.iter()
                        .map(|arg| sub_opt(&Some(arg.clone())).unwrap_or_default())
                        .collect()
                }),
                timeout_ms: command.timeout_ms,
            })
            .collect();
        if errors.is_empty() {
            Ok(Expansion {
                directories,
                files,
                commands,
            })
        } else {
            errors.sort();
            errors.dedup();
            Err(errors)
        }
    }
}

/// Replaces each `${name}` with its value; `$${` stays a literal `${`.
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in {text:?}"))?;
            let name = after[..end].trim();
            let value = values
                .get(name)
                .ok_or_else(|| format!("`${{{name}}}` names no parameter"))?;
            out.push_str(value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_names_and_keeps_escaped_and_lone_dollars() {
        let values = BTreeMap::from([("port".to_owned(), "8080".to_owned())]);
        assert_eq!(
            substitute("listen ${port}; $HOME $${port}", &values).unwrap(),
            "listen 8080; $HOME ${port}"
        );
        assert!(substitute("${nope}", &values).unwrap_err().contains("nope"));
        assert!(
            substitute("${port", &values)
                .unwrap_err()
                .contains("closing")
        );
    }
}
