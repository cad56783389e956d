//! Events: CloudEvents-shaped facts about a host, committed through Raft.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::{AgentId, EventKey};
use crate::pb;

/// Largest `data` document accepted in one event.
pub const MAX_EVENT_DATA_BYTES: usize = 64 * 1024;
/// Longest `type` or `subject`.
pub const MAX_EVENT_FIELD_BYTES: usize = 256;

/// Event types emitted by the agent.
pub mod types {
    /// A supervised workload exited without being asked to.
    pub const PROCESS_EXITED: &str = "host.process.exited";
    /// A resource on the host no longer matches its desired state. Data:
    /// `{"service", "resource", "detail"}`, one event per resource.
    pub const DRIFT_DETECTED: &str = "host.drift.detected";
    /// Drift reported earlier is gone, corrected by the agent or by hand.
    /// Data: `{"service", "resources": [resource keys]}`.
    pub const DRIFT_RESOLVED: &str = "host.drift.resolved";
    /// Raised by the controllers: an agent had no session for too long
    /// (subject: the agent; data: agent, silent_ms, labels).
    pub const HOST_LOST: &str = "host.lost";
    /// Raised by the controllers: a lost agent said hello again.
    pub const HOST_RECOVERED: &str = "host.recovered";
    /// Raised by the controllers on a `Timer`'s schedule (subject: the
    /// timer; data: timer, scheduled, and the timer's `data`).
    pub const TIMER_FIRED: &str = "timer.fired";
    /// A watched file was created, modified or removed (subject: its path;
    /// data: path, change).
    pub const FILE_CHANGED: &str = "host.file.changed";
    /// A metric threshold held past its limit for its sustained time
    /// (subject: the threshold's name; data: metric, value, limit).
    pub const METRIC_EXCEEDED: &str = "host.metric.exceeded";
    /// Raised by the controllers: a rule's signal (the events it matches)
    /// stopped coming for its `signal.silent_after_ms` (subject: the rule;
    /// data: rule, silent_ms, on_silent, fallback: what the fallback did).
    pub const RULE_SILENT: &str = "levee.rule.silent";
    /// Raised by the controllers: a service has fewer replicas placed than
    /// its target because no matching agent has room (subject: the
    /// service; data: service, target, placed, short). Raised again only
    /// when the shortfall changes.
    pub const SERVICE_UNPLACED: &str = "levee.service.unplaced";
    /// Raised by the controllers: an operator changed an agent's labels
    /// (subject: the agent; data: agent, labels, previous, by).
    pub const AGENT_LABELLED: &str = "levee.agent.labelled";
    /// The metric came back past the threshold's `clear` value.
    pub const METRIC_CLEARED: &str = "host.metric.cleared";
    /// A `[[check]]` probe failed `unhealthy_threshold` times in a row
    /// (subject: the check's name; data: check, probe, failures, error).
    /// Sent once per outage, not per failed probe.
    pub const CHECK_FAILED: &str = "host.check.failed";
    /// A failing check passed `healthy_threshold` times in a row (subject:
    /// the check's name; data: check, probe, failures, failing_ms).
    pub const CHECK_RECOVERED: &str = "host.check.recovered";
    /// A line of a `[[log_pattern]]` file matched its regex, unless the
    /// pattern names its own type (subject: the pattern's name; data:
    /// pattern, path, line, captures, and `suppressed` when matches were
    /// held back by the pattern's rate limit).
    pub const LOG_MATCHED: &str = "host.log.matched";
}

/// A validated event, as stored in the replicated state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub key: EventKey,
    /// Who sent it: `agent/<agent id>`, stamped by the controller from the
    /// sender's certificate.
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: String,
    pub time_unix_ms: i64,
    pub data: serde_json::Value,
}

/// Why an event from the wire was refused.
#[derive(Debug, Error, PartialEq)]
pub enum EventError {
    #[error("event {id:?}: field `{field}` is empty")]
    Empty { id: String, field: &'static str },
    #[error("event {id:?}: field `{field}` is {len} bytes, more than the limit of {limit}")]
    TooLarge {
        id: String,
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("event {id:?}: `data_json` is not valid JSON: {reason}")]
    BadData { id: String, reason: String },
    #[error("event {id:?}: seq 0 is reserved; sequences start at 1")]
    ZeroSeq { id: String },
}

impl Event {
    /// The event's stable id, `<agent>/<epoch>/<seq>`.
    pub fn id(&self) -> String {
        self.key.to_string()
    }

    /// Validates a wire event sent by `agent_id` (the certificate's name,
    /// never a field of the message).
    pub fn from_wire(agent_id: &AgentId, wire: pb::Event) -> Result<Self, EventError> {
        let id = wire.id.clone();
        if wire.seq == 0 {
            return Err(EventError::ZeroSeq { id });
        }
        if wire.r#type.is_empty() {
            return Err(EventError::Empty { id, field: "type" });
        }
        for (field, value) in [("type", &wire.r#type), ("subject", &wire.subject)] {
            if value.len() > MAX_EVENT_FIELD_BYTES {
                return Err(EventError::TooLarge {
                    id,
                    field,
                    len: value.len(),
                    limit: MAX_EVENT_FIELD_BYTES,
                });
            }
        }
        if wire.data_json.len() > MAX_EVENT_DATA_BYTES {
            return Err(EventError::TooLarge {
                id,
                field: "data_json",
                len: wire.data_json.len(),
                limit: MAX_EVENT_DATA_BYTES,
            });
        }
        let data = if wire.data_json.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&wire.data_json).map_err(|err| EventError::BadData {
                id: id.clone(),
                reason: err.to_string(),
            })?
        };
        Ok(Self {
            key: EventKey {
                agent_id: agent_id.clone(),
                boot_epoch: wire.boot_epoch,
                seq: wire.seq,
            },
            source: format!("agent/{agent_id}"),
            event_type: wire.r#type,
            subject: wire.subject,
            time_unix_ms: wire.time_unix_ms,
            data,
        })
    }

    /// The event as a JSON document, the shape rule patterns match against.
    pub fn to_match_document(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id(),
            "source": self.source,
            "type": self.event_type,
            "subject": self.subject,
            "data": self.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(seq: u64, data_json: &str) -> pb::Event {
        pb::Event {
            id: format!("x/1/{seq}"),
            boot_epoch: 1,
            seq,
            r#type: types::PROCESS_EXITED.into(),
            subject: "clock".into(),
            time_unix_ms: 5,
            data_json: data_json.into(),
        }
    }

    #[test]
    fn source_and_key_come_from_the_certificate_not_the_message() {
        let event = Event::from_wire(&"edge-1".into(), wire(7, r#"{"code":1}"#)).unwrap();
        assert_eq!(event.source, "agent/edge-1");
        assert_eq!(event.id(), "edge-1/1/7");
        assert_eq!(event.data["code"], 1);
    }

    #[test]
    fn malformed_events_are_refused_with_the_field_named() {
        let agent = AgentId::from("a");
        assert!(matches!(
            Event::from_wire(&agent, wire(0, "")),
            Err(EventError::ZeroSeq { .. })
        ));
        let err = Event::from_wire(&agent, wire(1, "{nope")).unwrap_err();
        assert!(err.to_string().contains("data_json"), "{err}");
        let mut empty_type = wire(1, "");
        empty_type.r#type.clear();
        assert_eq!(
            Event::from_wire(&agent, empty_type).unwrap_err(),
            EventError::Empty {
                id: "x/1/1".into(),
                field: "type"
            }
        );
        let huge = "x".repeat(MAX_EVENT_DATA_BYTES + 1);
        let err = Event::from_wire(&agent, wire(1, &format!("\"{huge}\""))).unwrap_err();
        assert!(matches!(
            err,
            EventError::TooLarge {
                field: "data_json",
                ..
            }
        ));
    }
}
