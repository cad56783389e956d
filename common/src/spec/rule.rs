//! The `Rule` and `Provisioner` kinds. Rules turn events into changes;
//! provisioners make new hosts. This module parses and validates them.

use std::collections::BTreeMap;

use schemars::JsonSchema;

use crate::pattern::EventPattern;
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
    #[schemars(with = "serde_json::Value")]
    pub pattern: EventPattern,
    /// Written as a one-key map, `repair: { service: clock }`.
    #[serde(with = "yaml_serde::with::singleton_map")]
    #[schemars(with = "RuleAction")]
    pub action: RuleAction,
    /// Limits on how often and how far the rule may act.
    #[serde(default)]
    pub guardrails: Guardrails,
    /// Act on a pattern over time (a count, or an average) instead of on
    /// each matching event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// What to do when the events this rule watches stop coming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
    /// Where in the event the host it is about is named, e.g.
    /// `data.labels.instance` for an alert; by default the agent that sent
    /// the event (or, for `host.lost`, the lost agent). Used by `repair`,
    /// `reschedule`, `drain` and `per: agent` windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_from: Option<String>,
}

impl RuleSpec {
    /// What is wrong with the rule on its own, as (field, message).
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        let rule = &self.name;
        let mut problems = action_problems(rule, &self.action);
        let guardrails = &self.guardrails;
        let windowed = [
            ("max_actions", guardrails.max_actions > 0),
            ("max_hosts", guardrails.limits_hosts()),
        ];
        for (field, set) in windowed {
            if set && guardrails.window_ms == 0 {
                problems.push((
                    field,
                    format!("rule `{rule}`: `guardrails.{field}` needs a `window_ms`"),
                ));
            }
        }
        if guardrails.max_chain_depth > MAX_CHAIN_DEPTH_LIMIT {
            problems.push((
                "max_chain_depth",
                format!(
                    "rule `{rule}`: `guardrails.max_chain_depth` is at most {MAX_CHAIN_DEPTH_LIMIT}"
                ),
            ));
        }
        if !(0.0..=1.0).contains(&guardrails.max_hosts_share) {
            problems.push((
                "max_hosts_share",
                format!("rule `{rule}`: `guardrails.max_hosts_share` is a share, from 0.0 to 1.0"),
            ));
        }
        if let Some(window) = &self.window {
            problems.extend(window.problems(rule));
        }
        if let Some(signal) = &self.signal {
            if signal.silent_after_ms == 0 {
                problems.push((
                    "silent_after_ms",
                    format!("rule `{rule}`: `signal.silent_after_ms` must be above 0"),
                ));
            }
            match (&signal.fallback, signal.on_silent) {
                (None, OnSilent::Fallback) => problems.push((
                    "on_silent",
                    format!("rule `{rule}`: `on_silent: fallback` needs a `fallback` action"),
                )),
                (Some(_), OnSilent::Hold | OnSilent::Alert) => problems.push((
                    "fallback",
                    format!("rule `{rule}`: a `fallback` action needs `on_silent: fallback`"),
                )),
                (Some(action), OnSilent::Fallback) => {
                    if action.needs_host() {
                        problems.push((
                            "fallback",
                            format!(
                                "rule `{rule}`: a silent signal has no host, so the fallback cannot be `{}`",
                                action.name()
                            ),
                        ));
                    }
                    problems.extend(action_problems(rule, action));
                }
                (None, _) => {}
            }
        }
        problems
    }
}

fn action_problems(rule: &str, action: &RuleAction) -> Vec<(&'static str, String)> {
    match action {
        RuleAction::Scale { by, to, .. } if by.is_some() == to.is_some() => vec![(
            "scale",
            format!("rule `{rule}`: action `scale` needs exactly one of `by` or `to`"),
        )],
        RuleAction::ApplyVersion { version: 0 } => vec![(
            "version",
            format!("rule `{rule}`: `apply_version.version` starts at 1"),
        )],
        RuleAction::Run { argv, .. } if argv.first().is_none_or(String::is_empty) => vec![(
            "argv",
            format!("rule `{rule}`: `run.argv` must name a program"),
        )],
        RuleAction::Webhook {
            url,
            token_file: Some(_),
        } if !url.starts_with("https://") => vec![(
            "url",
            format!(
                "rule `{rule}`: a `webhook` with a `token_file` must use https://, so the token never travels in the clear"
            ),
        )],
        RuleAction::Webhook { url, .. }
            if !(url.starts_with("https://") || url.starts_with("http://")) =>
        {
            vec![(
                "url",
                format!("rule `{rule}`: `webhook.url` must start with https:// or http://"),
            )]
        }
        RuleAction::Provision { count: 0, .. } => vec![(
            "count",
            format!("rule `{rule}`: `provision.count` must be at least 1"),
        )],
        _ => Vec::new(),
    }
}

/// Matching events gathered over time, per key; the rule acts when the
/// window's condition holds, and the window starts afresh after it acts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Act once this many matching events arrived within `within_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Act when the average of this numeric field (a dotted path such as
    /// `data.load`) over `within_ms` is `above` or `below` a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// For `average`: the fewest samples an average is taken over.
    #[serde(default = "one")]
    pub min_samples: u32,
    pub within_ms: u64,
    /// One window for all events (`all`), one per agent (`agent`), or one
    /// per value of an agent label (`{label: zone}`).
    #[serde(default, with = "yaml_serde::with::singleton_map")]
    #[schemars(with = "WindowScope")]
    pub per: WindowScope,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowScope {
    #[default]
    All,
    Agent,
    Label(String),
}

impl Window {
    pub(super) fn problems(&self, rule: &str) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        match (&self.count, &self.average) {
            (Some(0), None) => problems.push((
                "count",
                format!("rule `{rule}`: `window.count` must be at least 1"),
            )),
            (Some(_), None) => {}
            (None, Some(_)) if self.above.is_some() == self.below.is_some() => problems.push((
                "average",
                format!("rule `{rule}`: `window.average` needs exactly one of `above` or `below`"),
            )),
            (None, Some(field)) if field.is_empty() => problems.push((
                "average",
                format!("rule `{rule}`: `window.average` names no field"),
            )),
            (None, Some(_)) => {}
            _ => problems.push((
                "window",
                format!("rule `{rule}`: `window` needs exactly one of `count` or `average`"),
            )),
        }
        if self.within_ms == 0 {
            problems.push((
                "within_ms",
                format!("rule `{rule}`: `window.within_ms` must be above 0"),
            ));
        }
        problems
    }
}

/// A rule's signal going silent is a state of its own, never a zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// Silent once no matching event came for this long (counted from the
    /// last one, or from when the rule was added).
    pub silent_after_ms: u64,
    /// `hold`: act on nothing until the signal returns (the window is
    /// emptied, so no decision rests on stale samples); `alert`: hold and
    /// raise `levee.rule.silent` for other rules; `fallback`: hold, alert,
    /// and carry out `fallback` once.
    #[serde(default)]
    pub on_silent: OnSilent,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "yaml_serde::with::singleton_map"
    )]
    #[schemars(with = "Option<RuleAction>")]
    pub fallback: Option<RuleAction>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnSilent {
    #[default]
    Hold,
    Alert,
    Fallback,
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
    /// Move the service off the host the event is about, to other
    /// matching agents; it is not placed there again until `levee
    /// undrain`.
    Reschedule { service: String },
    /// Move everything off the host the event is about and place nothing
    /// there until `levee undrain`.
    Drain {},
    /// Make spec version `version` current again (as a new version), e.g.
    /// a known-good release when an alert fires.
    ApplyVersion { version: u64 },
    /// Run a command, once, on the event's host, or with `selector` on
    /// every live agent whose labels match it (`{}`: every agent).
    Run {
        /// Program and arguments, never through a shell.
        argv: Vec<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        env: BTreeMap<String, String>,
        /// 0: the agent's default, 60 s.
        #[serde(default)]
        timeout_ms: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        selector: Option<BTreeMap<String, String>>,
    },
    /// POST the event and what the rule decided, as JSON, to `url`
    /// (delivered by the leader at least once, retried with backoff; the
    /// `Idempotency-Key` header lets the receiver drop repeats).
    Webhook {
        url: String,
        /// A file on the controllers holding a token sent as
        /// `Authorization: Bearer`; kept out of the specs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_file: Option<String>,
    },
    /// Make `count` new hosts with the named `Provisioner`.
    Provision {
        provisioner: String,
        #[serde(default = "one")]
        count: u32,
    },
}

impl RuleAction {
    /// The service the action changes, if it names one.
    pub fn service(&self) -> Option<&str> {
        match self {
            RuleAction::Repair { service }
            | RuleAction::Scale { service, .. }
            | RuleAction::Reschedule { service } => Some(service),
            RuleAction::Drain {}
            | RuleAction::ApplyVersion { .. }
            | RuleAction::Provision { .. }
            | RuleAction::Run { .. }
            | RuleAction::Webhook { .. } => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            RuleAction::Repair { .. } => "repair",
            RuleAction::Scale { .. } => "scale",
            RuleAction::Reschedule { .. } => "reschedule",
            RuleAction::Drain {} => "drain",
            RuleAction::ApplyVersion { .. } => "apply_version",
            RuleAction::Provision { .. } => "provision",
            RuleAction::Run { .. } => "run",
            RuleAction::Webhook { .. } => "webhook",
        }
    }

    /// Whether the action is about one host (the event's).
    pub fn needs_host(&self) -> bool {
        matches!(
            self,
            RuleAction::Repair { .. }
                | RuleAction::Reschedule { .. }
                | RuleAction::Drain {}
                | RuleAction::Run { selector: None, .. }
        )
    }
}

/// What keeps a rule from doing harm: how often it may act, and whether
/// it only reports what it would have done. All of it is enforced in the
/// replicated state, so a new leader keeps every cooldown and count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// Blast radius: at most this many distinct hosts touched (sent a
    /// task) by the rule's actions per `window_ms` (0: no limit).
    #[serde(default)]
    pub max_hosts: u32,
    /// Blast radius as a share of the live hosts, 0.0 to 1.0 (0: no limit).
    #[serde(default)]
    pub max_hosts_share: f64,
}

/// How deep a chain of reactions may go when a rule does not say.
pub const DEFAULT_MAX_CHAIN_DEPTH: u32 = 5;
/// The deepest chain any rule may allow: reactions to the controllers' own
/// events nest inside one log entry, so this bounds that nesting.
pub const MAX_CHAIN_DEPTH_LIMIT: u32 = 20;

impl Guardrails {
    /// Whether a blast radius is set.
    pub fn limits_hosts(&self) -> bool {
        self.max_hosts > 0 || self.max_hosts_share > 0.0
    }

    pub fn max_chain_depth(&self) -> u32 {
        if self.max_chain_depth == 0 {
            DEFAULT_MAX_CHAIN_DEPTH
        } else {
            self.max_chain_depth
        }
    }
}

/// A command that makes a new host, which then enrolls as an agent. The
/// leader runs it once per host asked for, with `LEVEE_PROVISION_ID`,
/// `LEVEE_PROVISIONER` and `LEVEE_LABELS` (`k=v,...`) set. It should
/// return once the host is on its way; on timeout its process group is
/// killed. A local host process it starts must detach (`setsid`) and not
/// hold the command's stdout or stderr open.
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
