//! Identifier newtypes, so an agent id can never be passed where a task id
//! is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}

string_id!(
    /// An agent's name, as written in its certificate.
    AgentId
);
string_id!(
    /// A plan's id, derived from the Raft log index that created it.
    PlanId
);
string_id!(
    /// A task's id: the idempotency key agents apply at most once.
    TaskId
);

/// Whether `name` can name a service, process or command: 1-63
/// characters of a-z, 0-9 and `-`, not starting with `-`. Agents use such
/// names in paths (a service's directory, a workload's log directory), so
/// one must never hold `/`, `..` or anything else a path would interpret.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
}

/// The idempotency key of an event: who sent it, in which run of the agent,
/// at which position of that run's stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventKey {
    pub agent_id: AgentId,
    pub boot_epoch: u64,
    pub seq: u64,
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.agent_id, self.boot_epoch, self.seq)
    }
}

impl PlanId {
    /// The id of the `ordinal`-th plan made by the log entry at `log_index`.
    pub fn at(log_index: u64, ordinal: usize) -> Self {
        Self(format!("p{log_index}.{ordinal}"))
    }
}

impl TaskId {
    /// The id of the `ordinal`-th task of `plan`.
    pub fn of_plan(plan: &PlanId, ordinal: usize) -> Self {
        Self(format!(
            "t{}.{ordinal}",
            plan.as_str().trim_start_matches('p')
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_derived_from_the_log_are_distinct_and_readable() {
        let plan = PlanId::at(42, 0);
        assert_eq!(plan.as_str(), "p42.0");
        assert_eq!(TaskId::of_plan(&plan, 3).as_str(), "t42.0.3");
        assert_ne!(
            TaskId::of_plan(&PlanId::at(4, 20), 0),
            TaskId::of_plan(&PlanId::at(42, 0), 0)
        );
    }

    #[test]
    fn names_are_short_lowercase_words_with_dashes() {
        for valid in ["web", "web-1", "0", "a-b-c", &"a".repeat(63)] {
            assert!(is_valid_name(valid), "{valid:?}");
        }
        for invalid in [
            "",
            "-web",
            "Web",
            "web_1",
            "a b",
            "../etc",
            "a/b",
            ".",
            "web\0",
            "wéb",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_name(invalid), "{invalid:?}");
        }
    }

    #[test]
    fn event_key_displays_as_agent_epoch_seq() {
        let key = EventKey {
            agent_id: "edge-1".into(),
            boot_epoch: 3,
            seq: 17,
        };
        assert_eq!(key.to_string(), "edge-1/3/17");
    }
}
