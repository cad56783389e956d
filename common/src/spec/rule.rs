//! The `Rule` and `Provisioner` kinds. Rules turn events into changes;
//! provisioners make new hosts. This module parses and validates them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When an event matches `match`, do `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// An EventBridge-style pattern over the event document
    /// (`type`, `source`, `subject`, `data`).
    #[serde(rename = "match")]
    pub pattern: serde_json::Value,
    /// Written as a one-key map, `repair: { service: clock }`.
    #[serde(with = "yaml_serde::with::singleton_map")]
    #[schemars(with = "RuleAction")]
    pub action: RuleAction,
    /// Limits on how often and how far the rule may act.
    #[serde(default)]
    pub guardrails: Guardrails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleAction {
    /// Converge the service again on the agent that sent the event.
    Repair { service: String },
    /// Change a service's replica count `by` a step (negative scales down)
    /// or `to` a count; either way kept within its `min..=max`.
    Scale {
        service: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<u32>,
    },
}

impl RuleAction {
    /// The service the action changes.
    pub fn service(&self) -> &str {
        match self {
            RuleAction::Repair { service } | RuleAction::Scale { service, .. } => service,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            RuleAction::Repair { .. } => "repair",
            RuleAction::Scale { .. } => "scale",
        }
    }
}

/// What keeps a rule from doing harm: how often it may act, and whether
/// it only reports what it would have done. All of it is enforced in the
/// replicated state, so a new leader keeps every cooldown and count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    /// After acting, the rule does nothing for this long.
    #[serde(default)]
    pub cooldown_ms: u64,
    /// For `scale` down: hold while the service was scaled up less than
    /// this long ago (so a falling signal right after a rise does not
    /// flap the service).
    #[serde(default)]
    pub scale_down_after_up_ms: u64,
    /// At most this many actions per `window_ms` (0: no limit).
    #[serde(default)]
    pub max_actions: u32,
    #[serde(default)]
    pub window_ms: u64,
    /// Record what the rule would do, and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Wait for an operator: the action is recorded and carried out only
    /// on `levee approve ID` (guardrails are checked again then).
    #[serde(default)]
    pub approval: bool,
    /// Refuse to act on an event that is itself the consequence of this
    /// many rule reactions (a repair that crashes the workload it repairs,
    /// again and again). 0 means the default, 5.
    #[serde(default)]
    pub max_chain_depth: u32,
}

/// How deep a chain of reactions may go when a rule does not say.
pub const DEFAULT_MAX_CHAIN_DEPTH: u32 = 5;

impl Guardrails {
    pub fn max_chain_depth(&self) -> u32 {
        if self.max_chain_depth == 0 {
            DEFAULT_MAX_CHAIN_DEPTH
        } else {
            self.max_chain_depth
        }
    }
}

/// A command that makes a new host, which then enrolls as an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionerSpec {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Run from argv on the controller; never through a shell.
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// Labels the hosts it makes will carry, so placement knows which
    /// services they can take.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Most hosts this provisioner may have made at once.
    #[serde(default = "default_max_hosts")]
    pub max_hosts: u32,
}

fn default_timeout_ms() -> u32 {
    300_000
}

fn default_max_hosts() -> u32 {
    10
}

impl ProvisionerSpec {
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.argv.first().is_none_or(String::is_empty) {
            problems.push((
                "argv",
                format!("provisioner `{}`: `argv` must name a program", self.name),
            ));
        }
        if self.timeout_ms == 0 {
            problems.push((
                "timeout_ms",
                format!("provisioner `{}`: `timeout_ms` must be above 0", self.name),
            ));
        }
        if self.max_hosts == 0 {
            problems.push((
                "max_hosts",
                format!(
                    "provisioner `{}`: `max_hosts` must be at least 1",
                    self.name
                ),
            ));
        }
        problems
    }
}
