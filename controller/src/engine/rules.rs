//! Which rules an event triggers.

use levee_common::event::Event;
use levee_common::pattern::Pattern;
use levee_common::spec::{RuleSpec, SpecSet};

/// The rules of `specs` whose pattern matches `event`, in name order.
pub fn matching_rules<'a>(specs: &'a SpecSet, event: &Event) -> Vec<&'a RuleSpec> {
    let document = event.to_match_document();
    specs
        .rules
        .values()
        .filter(|rule| {
            // Rules in a SpecSet were compiled once at validation; a failure
            // here would mean a state written by another version, which we
            // treat as "matches nothing" rather than crash every node.
            Pattern::compile(&rule.pattern).is_ok_and(|pattern| pattern.matches(&document))
        })
        .collect()
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
            matching_rules(&specs, event)
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
}
