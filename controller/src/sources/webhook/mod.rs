//! HTTPS webhooks: payload formats and authentication (pure), turned into
//! [`InboundEvent`]s.
//!
//! The receiver calls [`auth::check`] on every request, then [`parse`]
//! with the endpoint's [`Format`]. Nothing here reads a socket or a clock:
//! times come from the payloads, and their absence is left to the commit.
//!
//! Every event is checked the same way whatever its format
//! (see `limits`): types under `host.` and `levee.` are refused (they are
//! raised only inside the fleet), `type` and `subject` are at most
//! [`MAX_EVENT_FIELD_BYTES`](levee_common::event::MAX_EVENT_FIELD_BYTES),
//! serialized `data` at most
//! [`MAX_EVENT_DATA_BYTES`](levee_common::event::MAX_EVENT_DATA_BYTES),
//! and one request carries at most [`MAX_EVENTS_PER_REQUEST`] events. Dedup
//! ids longer than `MAX_EVENT_FIELD_BYTES` are replaced by
//! `sha256:<hex>` of themselves, since the state remembers thousands.
//!
//! The mapping of each format is documented in its module: `cloudevents`,
//! `alertmanager`, `sns`.

pub mod auth;

mod alertmanager;
mod cloudevents;
mod encoding;
mod error;
mod fields;
mod limits;
mod sns;

use http::HeaderMap;
use serde::{Deserialize, Serialize};

pub use auth::{AuthError, Secret, WebhookAuth};
pub use error::PayloadError;
pub use limits::MAX_EVENTS_PER_REQUEST;

use crate::state::inbound::InboundEvent;

/// Event types this module produces besides a CloudEvent's own `type`.
pub mod types {
    /// A Prometheus alert started (or is still) firing; subject: its
    /// `alertname`.
    pub const ALERT_FIRING: &str = "alert.firing";
    /// A Prometheus alert resolved; subject: its `alertname`.
    pub const ALERT_RESOLVED: &str = "alert.resolved";
    /// A CloudWatch alarm changed state, delivered through SNS; subject:
    /// the alarm's name.
    pub const CLOUDWATCH_ALARM: &str = "cloudwatch.alarm";
    /// Any other SNS notification; subject: its `Subject` or topic ARN.
    pub const SNS_NOTIFICATION: &str = "sns.notification";
}

/// The payload format an endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// CloudEvents 1.0 over HTTP: structured, batch or binary mode.
    CloudEvents,
    /// Prometheus Alertmanager's webhook, payload version 4.
    Alertmanager,
    /// AWS SNS HTTP(S) deliveries, CloudWatch alarms recognised.
    Sns,
}

/// What a request carried.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub events: Vec<InboundEvent>,
    /// An SNS `SubscriptionConfirmation`'s `SubscribeURL`: the subscription
    /// starts once someone opens it, so the receiver shows it to the
    /// operator rather than fetching it itself.
    pub subscribe_url: Option<String>,
}

/// Turns a request's body (and, for CloudEvents, its headers) into events.
/// Call it only after [`auth::check`] admitted the request.
pub fn parse(format: Format, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, PayloadError> {
    let parsed = match format {
        Format::CloudEvents => Parsed {
            events: cloudevents::parse(headers, body)?,
            subscribe_url: None,
        },
        Format::Alertmanager => Parsed {
            events: alertmanager::parse(body)?,
            subscribe_url: None,
        },
        Format::Sns => sns::parse(body)?,
    };
    limits::check_count(parsed.events.len())?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http::header::CONTENT_TYPE;

    use super::*;

    #[test]
    fn formats_are_named_in_lower_case() {
        for (format, name) in [
            (Format::CloudEvents, "\"cloudevents\""),
            (Format::Alertmanager, "\"alertmanager\""),
            (Format::Sns, "\"sns\""),
        ] {
            assert_eq!(serde_json::to_string(&format).unwrap(), name);
            assert_eq!(serde_json::from_str::<Format>(name).unwrap(), format);
        }
        assert!(serde_json::from_str::<Format>("\"cloud_events\"").is_err());
    }

    #[test]
    fn parse_dispatches_on_the_format_whatever_the_content_type() {
        // SNS says text/plain; the body is JSON all the same.
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        );
        let sns = parse(
            Format::Sns,
            &headers,
            include_bytes!("fixtures/sns_notification.json"),
        )
        .unwrap();
        assert_eq!(sns.events[0].event_type, types::SNS_NOTIFICATION);

        let alerts = parse(
            Format::Alertmanager,
            &headers,
            include_bytes!("fixtures/alertmanager.json"),
        )
        .unwrap();
        assert_eq!(alerts.events.len(), 2);
        assert_eq!(alerts.subscribe_url, None);

        // The same body as a CloudEvent lacks the binary mode's headers.
        let err = parse(
            Format::CloudEvents,
            &headers,
            include_bytes!("fixtures/alertmanager.json"),
        )
        .unwrap_err();
        assert!(matches!(err, PayloadError::NotACloudEvent { .. }), "{err}");
    }
}
