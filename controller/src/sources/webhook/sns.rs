//! AWS SNS HTTP(S) deliveries
//! (<https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html>).
//!
//! SNS sends `Content-Type: text/plain`, so the body is read as JSON
//! whatever the header says.
//!
//! What protects an SNS endpoint: its token, given as the password of
//! HTTP Basic auth in the subscription's URL
//! (`https://levee:<token>@host/path`); the message's `Timestamp` (when
//! SNS published it, unchanged on SNS's retries), which must be within
//! the endpoint's replay window (`check_sent`, 5 minutes by default, the
//! same 401 as a stale signature); and its `MessageId`, by which a repeat
//! inside the window is dropped. What does not: SNS's own signature
//! (`Signature`, `SigningCertURL`) is not verified, since that means
//! fetching AWS's certificate from a URL in the message; so the
//! `Timestamp` is the sender's claim, and whoever holds the token (it is
//! in every captured request) can send any message with a fresh one. A
//! delivery policy that retries for longer than the window loses the late
//! retries (SNS takes the 401 as final).
//!
//! - `SubscriptionConfirmation`: no events; its `SubscribeURL` is returned
//!   for the operator to visit.
//! - `UnsubscribeConfirmation`: no events.
//! - `Notification`: one event, `dedup_id` = `MessageId`, `time_unix_ms` =
//!   `Timestamp` (required). When `Message` is a CloudWatch alarm's JSON (it has
//!   `AlarmName` and `NewStateValue`): type `cloudwatch.alarm`, subject the
//!   alarm's name, data `{"alarm", "state", "old_state", "reason",
//!   "region", "account", "metric", "namespace", "dimensions" (name →
//!   value), "threshold", "topic_arn"}`. Otherwise: type
//!   `sns.notification`, subject `Subject` or else `TopicArn`, data
//!   `{"topic_arn", "subject", "message" (its JSON when it parses, else
//!   the text), "message_attributes"}`.

use serde_json::{Map, Value, json};

use super::Parsed;
use super::error::{PayloadError, shown};
use super::fields::{Obj, parse_body};
use super::limits::{Origin, checked};
use super::types::{CLOUDWATCH_ALARM, SNS_NOTIFICATION};
use crate::state::inbound::InboundEvent;

const AT: &str = "SNS message";

pub(super) fn parse(body: &[u8]) -> Result<Parsed, PayloadError> {
    let value = parse_body(body)?;
    let message = Obj::root(AT, &value)?;
    match message.str("Type")? {
        "Notification" => {
            let (event, sent_at_ms) = notification(&message)?;
            Ok(Parsed {
                events: vec![event],
                subscribe_url: None,
                sent_at_ms: Some(sent_at_ms),
            })
        }
        "SubscriptionConfirmation" => {
            let url = message.str("SubscribeURL")?;
            // The operator is asked to open it: nothing but https.
            if !url.starts_with("https://") {
                return Err(PayloadError::Unsupported {
                    at: AT.to_owned(),
                    field: "SubscribeURL".to_owned(),
                    value: shown(url),
                    expected: "an https:// URL",
                });
            }
            Ok(Parsed {
                subscribe_url: Some(url.to_owned()),
                ..Parsed::default()
            })
        }
        "UnsubscribeConfirmation" => Ok(Parsed::default()),
        other => Err(PayloadError::Unsupported {
            at: AT.to_owned(),
            field: "Type".to_owned(),
            value: shown(other),
            expected: "\"Notification\", \"SubscriptionConfirmation\" or \"UnsubscribeConfirmation\"",
        }),
    }
}

/// The event and when SNS published the message.
fn notification(envelope: &Obj<'_>) -> Result<(InboundEvent, i64), PayloadError> {
    let message_id = envelope.str("MessageId")?;
    let topic_arn = envelope.str("TopicArn")?;
    let text = envelope.str("Message")?;
    // Required: it is what the replay window is checked against.
    let (_, published_ms) = envelope.time("Timestamp")?;
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let (event_type, subject, data, subject_from) = match &parsed {
        Some(alarm @ Value::Object(fields)) if is_alarm(fields) => {
            let (subject, data) = cloudwatch_alarm(alarm, topic_arn)?;
            (CLOUDWATCH_ALARM, subject, data, "`Message.AlarmName`")
        }
        _ => {
            let sns_subject = envelope.opt_str("Subject")?.filter(|s| !s.is_empty());
            let data = json!({
                "topic_arn": topic_arn,
                "subject": sns_subject,
                "message": parsed.unwrap_or_else(|| text.into()),
                "message_attributes": envelope.object_or_empty("MessageAttributes")?,
            });
            match sns_subject {
                Some(subject) => (SNS_NOTIFICATION, subject, data, "`Subject`"),
                None => (SNS_NOTIFICATION, topic_arn, data, "`TopicArn`"),
            }
        }
    };
    let event = InboundEvent {
        event_type: event_type.to_owned(),
        subject: subject.to_owned(),
        data,
        dedup_id: Some(message_id.to_owned()),
        time_unix_ms: Some(published_ms),
        remember: None,
    };
    let origin = Origin {
        at: AT,
        type_from: "`Type`",
        subject_from,
    };
    Ok((checked(event, &origin)?, published_ms))
}

fn is_alarm(fields: &Map<String, Value>) -> bool {
    fields.contains_key("AlarmName") && fields.contains_key("NewStateValue")
}

/// The alarm's name and the event data for a CloudWatch alarm's state
/// change (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html>).
/// Metric-math and composite alarms have no single metric: those fields
/// are then `null`.
fn cloudwatch_alarm<'a>(
    message: &'a Value,
    topic_arn: &str,
) -> Result<(&'a str, Value), PayloadError> {
    let alarm = Obj::nested(AT, "Message", message)?;
    let name = alarm.str("AlarmName")?;
    let trigger = alarm.opt_object("Trigger")?;
    let from_trigger = |field| trigger.as_ref().map_or(Value::Null, |t| t.value(field));
    let dimensions = match &trigger {
        Some(trigger) => dimensions(trigger)?,
        None => Map::new(),
    };
    let data = json!({
        "alarm": name,
        "state": alarm.str("NewStateValue")?,
        "old_state": alarm.value("OldStateValue"),
        "reason": alarm.value("NewStateReason"),
        "region": alarm.value("Region"),
        "account": alarm.value("AWSAccountId"),
        "metric": from_trigger("MetricName"),
        "namespace": from_trigger("Namespace"),
        "dimensions": dimensions,
        "threshold": from_trigger("Threshold"),
        "topic_arn": topic_arn,
    });
    Ok((name, data))
}

/// `[{"name": "InstanceId", "value": "i-1"}]` → `{"InstanceId": "i-1"}`,
/// which rules can match on directly.
fn dimensions(trigger: &Obj<'_>) -> Result<Map<String, Value>, PayloadError> {
    let Some(list) = trigger.get("Dimensions") else {
        return Ok(Map::new());
    };
    let Value::Array(items) = list else {
        return Err(PayloadError::WrongType {
            at: AT.to_owned(),
            field: trigger.path("Dimensions"),
            expected: "an array",
            found: super::fields::kind(list),
        });
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let dimension = Obj::nested(AT, &trigger.path(&format!("Dimensions[{i}]")), item)?;
            Ok((dimension.str("name")?.to_owned(), dimension.value("value")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALARM: &str = include_str!("fixtures/sns_cloudwatch_alarm.json");
    const NOTIFICATION: &str = include_str!("fixtures/sns_notification.json");
    const CONFIRMATION: &str = include_str!("fixtures/sns_subscription_confirmation.json");

    fn edited(fixture: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut message: Value = serde_json::from_str(fixture).unwrap();
        edit(&mut message);
        serde_json::to_vec(&message).unwrap()
    }

    /// The alarm fixture with its inner `Message` edited.
    fn edited_alarm(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        edited(ALARM, |envelope| {
            let mut alarm: Value =
                serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
            edit(&mut alarm);
            envelope["Message"] = alarm.to_string().into();
        })
    }

    fn error(body: &[u8]) -> String {
        parse(body).unwrap_err().to_string()
    }

    fn only_event(body: &[u8]) -> InboundEvent {
        let parsed = parse(body).unwrap();
        assert_eq!(parsed.subscribe_url, None);
        let [event] = parsed.events.try_into().unwrap();
        event
    }

    #[test]
    fn a_cloudwatch_alarm_becomes_a_cloudwatch_event() {
        let event = only_event(ALARM.as_bytes());
        assert_eq!(event.event_type, "cloudwatch.alarm");
        assert_eq!(event.subject, "web-cpu-high");
        assert_eq!(
            event.dedup_id.as_deref(),
            Some("5c4b2e3a-8f1d-5d7e-9b0a-1c2d3e4f5a6b")
        );
        assert_eq!(event.time_unix_ms, Some(1_714_558_212_400));
        assert_eq!(
            event.data,
            json!({
                "alarm": "web-cpu-high",
                "state": "ALARM",
                "old_state": "OK",
                "reason": "Threshold Crossed: 2 out of the last 2 datapoints [91.2 (01/05/24 10:05:00), 88.7 (01/05/24 10:00:00)] were greater than the threshold (80.0) (minimum 2 datapoints for OK -> ALARM transition).",
                "region": "EU (Ireland)",
                "account": "123456789012",
                "metric": "CPUUtilization",
                "namespace": "AWS/EC2",
                "dimensions": {"AutoScalingGroupName": "web-asg"},
                "threshold": 80.0,
                "topic_arn": "arn:aws:sns:eu-west-1:123456789012:levee-alarms",
            })
        );
    }

    #[test]
    fn a_composite_alarm_without_trigger_has_null_metric_fields() {
        let body = edited_alarm(|alarm| {
            alarm.as_object_mut().unwrap().remove("Trigger");
        });
        let event = only_event(&body);
        assert_eq!(event.event_type, "cloudwatch.alarm");
        assert_eq!(event.data["metric"], Value::Null);
        assert_eq!(event.data["threshold"], Value::Null);
        assert_eq!(event.data["dimensions"], json!({}));
    }

    #[test]
    fn a_plain_notification_keeps_subject_message_and_attributes() {
        let event = only_event(NOTIFICATION.as_bytes());
        assert_eq!(event.event_type, "sns.notification");
        assert_eq!(event.subject, "My First Message");
        assert_eq!(
            event.dedup_id.as_deref(),
            Some("22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324")
        );
        assert_eq!(event.time_unix_ms, Some(1_335_920_046_655));
        assert_eq!(
            event.data,
            json!({
                "topic_arn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
                "subject": "My First Message",
                "message": "Hello world!",
                "message_attributes": {"deploy": {"Type": "String", "Value": "blue"}},
            })
        );
    }

    #[test]
    fn a_json_message_is_parsed_and_the_topic_is_the_subject_without_one() {
        let body = edited(NOTIFICATION, |m| {
            let envelope = m.as_object_mut().unwrap();
            envelope.remove("Subject");
            envelope.remove("MessageAttributes");
            envelope.insert(
                "Message".into(),
                r#"{"order": 42, "AlarmName": "x"}"#.into(),
            );
        });
        let event = only_event(&body);
        // AlarmName alone does not make a CloudWatch alarm.
        assert_eq!(event.event_type, "sns.notification");
        assert_eq!(event.subject, "arn:aws:sns:us-west-2:123456789012:MyTopic");
        assert_eq!(event.data["subject"], Value::Null);
        assert_eq!(
            event.data["message"],
            json!({"order": 42, "AlarmName": "x"})
        );
        assert_eq!(event.data["message_attributes"], json!({}));
    }

    #[test]
    fn a_subscription_confirmation_returns_the_url_and_no_events() {
        let parsed = parse(CONFIRMATION.as_bytes()).unwrap();
        assert!(parsed.events.is_empty());
        let url = parsed.subscribe_url.unwrap();
        assert!(
            url.starts_with("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&"),
            "{url}"
        );
    }

    #[test]
    fn a_subscription_confirmation_needs_an_https_url() {
        let body = edited(CONFIRMATION, |m| {
            m.as_object_mut().unwrap().remove("SubscribeURL");
        });
        assert_eq!(error(&body), "SNS message: `SubscribeURL` is missing");
        let body = edited(CONFIRMATION, |m| {
            m["SubscribeURL"] = "http://evil.example.com/".into();
        });
        assert_eq!(
            error(&body),
            "SNS message: `SubscribeURL` is \"http://evil.example.com/\"; expected an https:// URL"
        );
    }

    #[test]
    fn an_unsubscribe_confirmation_is_nothing() {
        let body = edited(CONFIRMATION, |m| {
            m["Type"] = "UnsubscribeConfirmation".into()
        });
        assert_eq!(parse(&body).unwrap(), Parsed::default());
    }

    #[test]
    fn unknown_types_and_missing_fields_are_named() {
        let body = edited(NOTIFICATION, |m| m["Type"] = "Telegram".into());
        let err = error(&body);
        assert!(
            err.starts_with("SNS message: `Type` is \"Telegram\"; expected \"Notification\""),
            "{err}"
        );
        for field in ["Type", "MessageId", "TopicArn", "Message", "Timestamp"] {
            let body = edited(NOTIFICATION, |m| {
                m.as_object_mut().unwrap().remove(field);
            });
            assert_eq!(error(&body), format!("SNS message: `{field}` is missing"));
        }
        let body = edited(NOTIFICATION, |m| m["Timestamp"] = "May 2nd".into());
        assert!(
            error(&body).starts_with("SNS message: `Timestamp` is not an RFC 3339 time"),
            "{}",
            error(&body)
        );
    }

    #[test]
    fn alarm_errors_name_the_path_inside_message() {
        let body = edited_alarm(|alarm| {
            alarm["Trigger"]["Dimensions"][0]
                .as_object_mut()
                .unwrap()
                .remove("name");
        });
        assert_eq!(
            error(&body),
            "SNS message: `Message.Trigger.Dimensions[0].name` is missing"
        );
        let body = edited_alarm(|alarm| alarm["Trigger"]["Dimensions"] = json!("web-asg"));
        assert_eq!(
            error(&body),
            "SNS message: `Message.Trigger.Dimensions` must be an array, not a string"
        );
        let body = edited_alarm(|alarm| alarm["NewStateValue"] = json!(1));
        assert_eq!(
            error(&body),
            "SNS message: `Message.NewStateValue` must be a string, not a number"
        );
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let err = error(b"{\n  \"Type\" : \"Notification\"\n  \"MessageId\": \"x\"\n}");
        assert!(err.starts_with("body is not JSON: "), "{err}");
        assert!(err.contains("line 3 column 3"), "{err}");
    }
}
