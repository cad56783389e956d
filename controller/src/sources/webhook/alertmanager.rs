//! Prometheus Alertmanager's webhook payload, version 4
//! (<https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>).
//!
//! One event per alert in the group:
//! - `event_type`: `alert.firing` or `alert.resolved`, from the alert's own
//!   `status` (a group may hold both);
//! - `subject`: `labels.alertname`;
//! - `dedup_id`: `"<fingerprint> <status> <startsAt>"`, so Alertmanager's
//!   re-notifications of a firing alert are one event and its resolution
//!   another;
//! - `time_unix_ms`: `startsAt` when firing, `endsAt` when resolved;
//! - `data`: `{"labels", "annotations", "starts_at", "ends_at",
//!   "generator_url", "fingerprint", "receiver", "group_key",
//!   "external_url"}` (the last three from the group; `null` when absent).
//!
//! What protects an Alertmanager endpoint: its bearer token (Alertmanager
//! cannot sign), and the dedup id, which makes a replay of a captured
//! request a repeat while the id is remembered (at least 20 minutes and
//! the source's last 10,000 ids, see `state::inbound`). What does not: the
//! payload carries no time of sending (re-notifications repeat the same
//! body hours later), so there is no replay window; a captured request
//! replayed after its id is forgotten is committed again, and whoever
//! holds the token can send any alert. Keep the token as secret as the
//! rules it can trigger, and rotate it if a request may have leaked.

use serde_json::{Value, json};

use super::error::{PayloadError, shown};
use super::fields::{Obj, parse_body};
use super::limits::{Origin, check_count, checked};
use super::types::{ALERT_FIRING, ALERT_RESOLVED};
use crate::state::inbound::InboundEvent;

/// The group's fields copied into each alert's data.
struct Group {
    receiver: Value,
    group_key: Value,
    external_url: Value,
}

pub(super) fn parse(body: &[u8]) -> Result<Vec<InboundEvent>, PayloadError> {
    let value = parse_body(body)?;
    let root = Obj::root("Alertmanager payload", &value)?;
    // A later version may move fields: refuse it rather than guess.
    if let Some(version) = root.opt_str("version")?
        && version != "4"
    {
        return Err(PayloadError::Unsupported {
            at: root.at().to_owned(),
            field: "version".to_owned(),
            value: shown(version),
            expected: "\"4\"",
        });
    }
    let group = Group {
        receiver: root.value("receiver"),
        group_key: root.value("groupKey"),
        external_url: root.value("externalURL"),
    };
    let alerts = root.array("alerts")?;
    check_count(alerts.len())?;
    alerts
        .iter()
        .enumerate()
        .map(|(i, alert)| event(&format!("alerts[{i}]"), alert, &group))
        .collect()
}

fn event(at: &str, value: &Value, group: &Group) -> Result<InboundEvent, PayloadError> {
    let alert = Obj::root(at, value)?;
    let status = alert.str("status")?;
    let firing = match status {
        "firing" => true,
        "resolved" => false,
        other => {
            return Err(PayloadError::Unsupported {
                at: at.to_owned(),
                field: "status".to_owned(),
                value: shown(other),
                expected: "\"firing\" or \"resolved\"",
            });
        }
    };
    let labels = alert.object("labels")?;
    let alertname = labels.str("alertname")?;
    let (starts_at, starts_ms) = alert.time("startsAt")?;
    let fingerprint = alert.str("fingerprint")?;
    let (ends_at, time_unix_ms) = if firing {
        // A firing alert's endsAt is a guess (or Go's zero time): unused.
        (alert.opt_str("endsAt")?, starts_ms)
    } else {
        let (ends_at, ends_ms) = alert.time("endsAt")?;
        (Some(ends_at), ends_ms)
    };
    let data = json!({
        "labels": labels.to_value(),
        "annotations": alert.object_or_empty("annotations")?,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "generator_url": alert.opt_str("generatorURL")?,
        "fingerprint": fingerprint,
        "receiver": group.receiver,
        "group_key": group.group_key,
        "external_url": group.external_url,
    });
    let event = InboundEvent {
        event_type: if firing { ALERT_FIRING } else { ALERT_RESOLVED }.to_owned(),
        subject: alertname.to_owned(),
        data,
        dedup_id: Some(format!("{fingerprint} {status} {starts_at}")),
        time_unix_ms: Some(time_unix_ms),
        remember: None,
    };
    let origin = Origin {
        at,
        type_from: "`status`",
        subject_from: "`labels.alertname`",
    };
    checked(event, &origin)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FIXTURE: &str = include_str!("fixtures/alertmanager.json");

    /// The fixture with `edit` applied, as a body.
    fn edited(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut payload: Value = serde_json::from_str(FIXTURE).unwrap();
        edit(&mut payload);
        serde_json::to_vec(&payload).unwrap()
    }

    fn error(body: &[u8]) -> String {
        parse(body).unwrap_err().to_string()
    }

    #[test]
    fn a_v4_group_becomes_one_event_per_alert() {
        let events = parse(FIXTURE.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);

        let firing = &events[0];
        assert_eq!(firing.event_type, "alert.firing");
        assert_eq!(firing.subject, "HighRequestLatency");
        assert_eq!(
            firing.dedup_id.as_deref(),
            Some("6d3c1c3f0b7f9a21 firing 2024-05-01T10:00:00.123456789Z")
        );
        assert_eq!(firing.time_unix_ms, Some(1_714_557_600_123));
        assert_eq!(firing.data["labels"]["severity"], "page");
        assert_eq!(firing.data["labels"]["alertname"], "HighRequestLatency");
        assert_eq!(
            firing.data["annotations"]["runbook_url"],
            "https://runbooks.example.com/latency"
        );
        assert_eq!(firing.data["starts_at"], "2024-05-01T10:00:00.123456789Z");
        assert_eq!(firing.data["ends_at"], "0001-01-01T00:00:00Z");
        assert!(
            firing.data["generator_url"]
                .as_str()
                .unwrap()
                .starts_with("http://prometheus.example.com:9090/graph")
        );
        assert_eq!(firing.data["fingerprint"], "6d3c1c3f0b7f9a21");
        assert_eq!(firing.data["receiver"], "levee");
        assert_eq!(firing.data["group_key"], "{}:{}");
        assert_eq!(
            firing.data["external_url"],
            "http://alertmanager.example.com:9093"
        );

        let resolved = &events[1];
        assert_eq!(resolved.event_type, "alert.resolved");
        assert_eq!(resolved.subject, "DiskFillingUp");
        assert_eq!(
            resolved.dedup_id.as_deref(),
            Some("a1f2e3d4c5b6a798 resolved 2024-05-01T08:30:00Z")
        );
        // A resolved alert happened when it ended.
        assert_eq!(resolved.time_unix_ms, Some(1_714_556_730_500));
        assert_eq!(resolved.data["ends_at"], "2024-05-01T09:45:30.5Z");
    }

    #[test]
    fn a_renotification_repeats_the_dedup_id_and_the_resolution_does_not() {
        let first = parse(FIXTURE.as_bytes()).unwrap();
        let again = parse(FIXTURE.as_bytes()).unwrap();
        assert_eq!(first[0].dedup_id, again[0].dedup_id);

        let resolved = parse(&edited(|p| {
            p["alerts"][0]["status"] = json!("resolved");
            p["alerts"][0]["endsAt"] = json!("2024-05-01T11:00:00Z");
        }))
        .unwrap();
        assert_eq!(resolved[0].event_type, "alert.resolved");
        assert_ne!(first[0].dedup_id, resolved[0].dedup_id);
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let events = parse(&edited(|p| {
            let alert = p["alerts"][0].as_object_mut().unwrap();
            alert.remove("annotations");
            alert.remove("generatorURL");
            alert.remove("endsAt");
            let root = p.as_object_mut().unwrap();
            root.remove("version");
            root.remove("externalURL");
        }))
        .unwrap();
        assert_eq!(events[0].data["annotations"], json!({}));
        assert_eq!(events[0].data["generator_url"], Value::Null);
        assert_eq!(events[0].data["external_url"], Value::Null);
    }

    #[test]
    fn missing_alertname_names_the_alert() {
        let body = edited(|p| {
            p["alerts"][1]["labels"]
                .as_object_mut()
                .unwrap()
                .remove("alertname");
        });
        assert_eq!(error(&body), "alerts[1]: `labels.alertname` is missing");
    }

    #[test]
    fn an_unknown_alert_status_names_the_alert() {
        let body = edited(|p| p["alerts"][1]["status"] = json!("pending"));
        assert_eq!(
            error(&body),
            "alerts[1]: `status` is \"pending\"; expected \"firing\" or \"resolved\""
        );
    }

    #[test]
    fn a_resolved_alert_needs_its_end() {
        let body = edited(|p| {
            p["alerts"][1].as_object_mut().unwrap().remove("endsAt");
        });
        assert_eq!(error(&body), "alerts[1]: `endsAt` is missing");
    }

    #[test]
    fn fingerprint_and_start_are_required() {
        let body = edited(|p| {
            p["alerts"][0]
                .as_object_mut()
                .unwrap()
                .remove("fingerprint");
        });
        assert_eq!(error(&body), "alerts[0]: `fingerprint` is missing");

        let body = edited(|p| p["alerts"][0]["startsAt"] = json!("10:00 today"));
        let err = error(&body);
        assert!(
            err.starts_with("alerts[0]: `startsAt` is not an RFC 3339 time (\"10:00 today\")"),
            "{err}"
        );
    }

    #[test]
    fn malformed_groups_are_refused() {
        let body = edited(|p| p["version"] = json!("5"));
        assert_eq!(
            error(&body),
            "Alertmanager payload: `version` is \"5\"; expected \"4\""
        );
        let body = edited(|p| {
            p.as_object_mut().unwrap().remove("alerts");
        });
        assert_eq!(error(&body), "Alertmanager payload: `alerts` is missing");
        let body = edited(|p| p["alerts"] = json!({}));
        assert_eq!(
            error(&body),
            "Alertmanager payload: `alerts` must be an array, not an object"
        );
        let body = edited(|p| p["alerts"][0]["labels"] = json!(["a"]));
        assert_eq!(
            error(&body),
            "alerts[0]: `labels` must be an object, not an array"
        );
        let body = edited(|p| p["alerts"][0] = json!("alert"));
        assert_eq!(
            error(&body),
            "alerts[0]: must be a JSON object, not a string"
        );
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let err = error(b"{\"alerts\": [\n  {\"status\": firing}\n]}");
        assert!(err.starts_with("body is not JSON: "), "{err}");
        assert!(err.contains("line 2 column 15"), "{err}");
    }

    #[test]
    fn too_many_alerts_are_refused() {
        let body = edited(|p| {
            let alert = p["alerts"][0].clone();
            p["alerts"] = Value::Array(vec![alert; 1001]);
        });
        assert_eq!(
            error(&body),
            "1001 events in one request, more than the limit of 1000"
        );
    }

    #[test]
    fn an_oversize_alertname_names_the_label() {
        let body = edited(|p| p["alerts"][0]["labels"]["alertname"] = json!("a".repeat(300)));
        assert_eq!(
            error(&body),
            "alerts[0]: `labels.alertname` (the event subject) is 300 bytes, more than the limit of 256"
        );
    }
}
