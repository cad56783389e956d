//! Which rules an event triggers.

use levee_common::event::Event;
use levee_common::spec::{RuleSpec, SpecSet};

use crate::engine::fleet::AgentRecord;

/// The rules of `specs` whose pattern matches `event`, in name order.
/// `agent` is the agent the event is about (its sender, or for the
/// controllers' own events the agent they concern): patterns can match its
/// id and labels as `agent: { id: [...], labels: { site: [...] } }`.
pub fn matching_rules<'a>(
    specs: &'a SpecSet,
    event: &Event,
    agent: Option<&AgentRecord>,
) -> Vec<&'a RuleSpec> {
    let document = match_document(event, agent);
    specs
        .rules
        .values()
        .filter(|rule| rule.pattern.matches(&document))
        .collect()
}

/// The document patterns match: the event's fields, plus `agent: { id,
/// labels }` when the event is about a known agent.
pub fn match_document(event: &Event, agent: Option<&AgentRecord>) -> serde_json::Value {
    let mut document = event.to_match_document();
    if let (Some(agent), Some(fields)) = (agent, document.as_object_mut()) {
        fields.insert(
            "agent".into(),
            serde_json::json!({ "id": agent.agent_id.as_str(), "labels": agent.labels }),
        );
    }
    document
}

#[cfg(test)]
mod tests {
    use levee_common::ids::EventKey;
    use serde_json::json;

    use super::*;

    fn specs() -> SpecSet {
        let yaml = r#"
kind: Service
name: clock
process: { argv: [/bin/true] }
---
kind: Rule
name: on-exit
match: { type: [host.process.exited], data: { service: [clock] } }
action: { repair: { service: clock } }
---
kind: Rule
name: on-anything-from-edge
match: { source: [{ prefix: agent/edge- }] }
action: { repair: { service: clock } }
"#;
        SpecSet::parse([("s.yaml", yaml)]).unwrap()
    }

    fn event(agent: &str, event_type: &str, data: serde_json::Value) -> Event {
        Event {
            key: EventKey {
                agent_id: agent.into(),
                boot_epoch: 1,
                seq: 1,
            },
            source: format!("agent/{agent}"),
            event_type: event_type.into(),
            subject: String::new(),
            time_unix_ms: 0,
            data,
        }
    }

    #[test]
    fn rules_match_on_type_data_and_source() {
        let specs = specs();
        let names = |event: &Event| {
            matching_rules(&specs, event, None)
                .iter()
                .map(|rule| rule.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&event(
                "dc-1",
                "host.process.exited",
                json!({"service": "clock"})
            )),
            ["on-exit"]
        );
        assert_eq!(
            names(&event(
                "edge-1",
                "host.process.exited",
                json!({"service": "clock"})
            )),
            ["on-anything-from-edge", "on-exit"]
        );
        assert!(
            names(&event(
                "dc-1",
                "host.process.exited",
                json!({"service": "web"})
            ))
            .is_empty()
        );
    }

    #[test]
    fn rules_match_on_the_agent_s_labels() {
        let yaml = r#"
kind: Service
name: clock
process: { argv: [/bin/true] }
---
kind: Rule
name: ams-only
match: { type: [host.process.exited], agent: { labels: { site: [ams] } } }
action: { repair: { service: clock } }
"#;
        let specs = SpecSet::parse([("s.yaml", yaml)]).unwrap();
        let agent = |site: &str| AgentRecord {
            agent_id: "edge-1".into(),
            boot_epoch: 1,
            labels: [("site".to_owned(), site.to_owned())].into(),
            facts: Default::default(),
            cpu_millis: 0,
            memory_bytes: 0,
            first_seen_ms: 0,
            last_hello_ms: 0,
            events_committed: 0,
            lost: false,
            avoid: Default::default(),
        };
        let exit = event("edge-1", "host.process.exited", json!({}));
        assert_eq!(matching_rules(&specs, &exit, Some(&agent("ams"))).len(), 1);
        assert!(matching_rules(&specs, &exit, Some(&agent("fra"))).is_empty());
        assert!(
            matching_rules(&specs, &exit, None).is_empty(),
            "no agent, no labels"
        );
    }
}
