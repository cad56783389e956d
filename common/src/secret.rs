//! Secrets by name: specs, plans, tasks and the replicated state hold a
//! secret's name only; its value is read from the controller's secrets
//! directory by the leader when it sends a task to an agent the planner
//! chose, and travels only inside that task.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::identity::check_name;
use crate::resource::Resource;

/// A value given by a secret's name (`{ secret: db-password }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub secret: String,
}

/// How a secret is shown anywhere but inside a task: its name, never
/// its value.
pub fn shown(name: &str) -> String {
    format!("<secret:{name}>")
}

/// Why a secret's name is not one, if it is not: names are file names in
/// the secrets directory, so they are kept to the boring characters.
pub fn name_problem(name: &str) -> Option<String> {
    check_name(name)
        .err()
        .map(|_| format!("secret name `{}` must be 1-128 letters, digits, `-`, `_` and `.`, not starting with `.` or `-`", name.escape_debug()))
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret `{name}` is not in this controller's secrets directory{where_}")]
    Missing { name: String, where_: String },
    #[error("secret `{name}`: {reason}")]
    Unreadable { name: String, reason: String },
}

/// Where secret values come from.
pub trait SecretSource {
    fn value(&self, name: &str) -> Result<String, SecretError>;
}

/// The secret names `resource` refers to.
pub fn names(resource: &Resource) -> Vec<&str> {
    match resource {
        Resource::File(file) => file.secret.iter().map(String::as_str).collect(),
        Resource::Process(process) => process.secret_env.values().map(String::as_str).collect(),
        Resource::Directory(_) | Resource::Command(_) => Vec::new(),
    }
}

/// `resource` as the agent receives it: every secret it names replaced by
/// its value. Only for the message to the agent; never stored.
pub fn resolve(resource: &Resource, source: &dyn SecretSource) -> Result<Resource, SecretError> {
    let mut resolved = resource.clone();
    match &mut resolved {
        Resource::File(file) => {
            if let Some(name) = file.secret.take() {
                file.content = source.value(&name)?;
            }
        }
        Resource::Process(process) => {
            let secret_env = std::mem::take(&mut process.secret_env);
            for (variable, name) in secret_env {
                process.env.insert(variable, source.value(&name)?);
            }
        }
        Resource::Directory(_) | Resource::Command(_) => {}
    }
    Ok(resolved)
}

/// A source holding values in memory, for tests and previews.
#[derive(Debug, Clone, Default)]
pub struct InMemory(pub BTreeMap<String, String>);

impl SecretSource for InMemory {
    fn value(&self, name: &str) -> Result<String, SecretError> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::Missing {
                name: name.to_owned(),
                where_: String::new(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{FileResource, ProcessResource, RestartPolicy};

    fn process() -> Resource {
        Resource::Process(ProcessResource {
            name: "web".into(),
            argv: vec!["/bin/web".into()],
            env: [("PLAIN".to_owned(), "1".to_owned())].into(),
            secret_env: [("DB_PASSWORD".to_owned(), "db-password".to_owned())].into(),
            working_dir: None,
            restart: RestartPolicy::Never,
            user: None,
            stop_timeout_ms: 1000,
            health: None,
        })
    }

    #[test]
    fn resolving_puts_values_in_and_names_out() {
        let source = InMemory([("db-password".to_owned(), "hunter2".to_owned())].into());
        let Resource::Process(resolved) = resolve(&process(), &source).unwrap() else {
            unreachable!()
        };
        assert_eq!(resolved.env["DB_PASSWORD"], "hunter2");
        assert_eq!(resolved.env["PLAIN"], "1");
        assert!(resolved.secret_env.is_empty());
        let file = Resource::File(FileResource {
            path: "creds".into(),
            content: String::new(),
            secret: Some("db-password".into()),
            mode: 0o600,
        });
        assert_eq!(names(&file), ["db-password"]);
        let Resource::File(resolved) = resolve(&file, &source).unwrap() else {
            unreachable!()
        };
        assert_eq!(
            (resolved.content.as_str(), resolved.secret),
            ("hunter2", None)
        );
    }

    #[test]
    fn a_missing_secret_fails_the_whole_resource_naming_it() {
        let err = resolve(&process(), &InMemory::default()).unwrap_err();
        assert!(err.to_string().contains("`db-password`"), "{err}");
    }

    #[test]
    fn the_stored_form_shows_names_only() {
        let stored = serde_json::to_string(&process()).unwrap();
        assert!(stored.contains("db-password") && !stored.contains("hunter2"));
        assert_eq!(shown("db-password"), "<secret:db-password>");
        assert!(name_problem("../etc/shadow").is_some());
        assert!(name_problem("db-password").is_none());
    }
}
