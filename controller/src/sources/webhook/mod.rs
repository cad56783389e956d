//! HTTPS webhooks: payload formats and authentication (pure), turned into
//! [`InboundEvent`]s.
//!
//! The receiver calls [`auth::check`] on every request, then [`parse`]
//! with the endpoint's [`Format`], then [`check_sent`] (an SNS message's
//! own time against the endpoint's replay window), and gives a signed
//! request's events without an id of their own the signature's
//! ([`identify_by_signature`]). Nothing here reads a socket or a clock:
//! the receiver passes its clock, times come from the payloads, and their
//! absence is left to the commit.
//!
//! What each endpoint withstands is in `auth` (tokens and signatures,
//! replays) and in each format's module.
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
pub mod freshness;
pub mod signing;

mod alertmanager;
mod cloudevents;
mod credentials;
mod encoding;
mod error;
mod fields;
mod limits;
mod sns;

use http::HeaderMap;
use serde::{Deserialize, Serialize};

pub use auth::{Admitted, AuthError, Secret, WebhookAuth};
pub use error::PayloadError;
pub use freshness::{ReplayWindow, Sent, Stale};
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
    /// When the sender says it sent the request, in ms, for formats that
    /// carry it in the payload (an SNS message's `Timestamp`): checked
    /// against the endpoint's replay window by [`check_sent`].
    pub sent_at_ms: Option<i64>,
}

/// Turns a request's body (and, for CloudEvents, its headers) into events.
/// Call it only after [`auth::check`] admitted the request.
pub fn parse(format: Format, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, PayloadError> {
    let parsed = match format {
        Format::CloudEvents => Parsed {
            events: cloudevents::parse(headers, body)?,
            ..Parsed::default()
        },
        Format::Alertmanager => Parsed {
            events: alertmanager::parse(body)?,
            ..Parsed::default()
        },
        Format::Sns => sns::parse(body)?,
    };
    limits::check_count(parsed.events.len())?;
    Ok(parsed)
}

/// Refuses a request whose payload says it was sent outside `window` of
/// `now_ms` (answer 401, like a stale signature).
pub fn check_sent(parsed: &Parsed, window: &ReplayWindow, now_ms: i64) -> Result<(), Stale> {
    match parsed.sent_at_ms {
        Some(sent_ms) => window.check(Sent::SnsTimestamp, sent_ms.div_euclid(1000), now_ms),
        None => Ok(()),
    }
}

/// Gives each event of a signed request that has no id of its own one
/// made from the signature and its place in the request, so an identical
/// replay inside the window is a repeat. Every format gives ids today;
/// this keeps that true for one that would not.
pub fn identify_by_signature(events: &mut [InboundEvent], signature_hex: &str) {
    for (index, event) in events.iter_mut().enumerate() {
        if event.dedup_id.is_none() {
            event.dedup_id = Some(format!("signature:{signature_hex}/{index}"));
        }
    }
}

/// Headers from `(name, value)` pairs, names in any case: for the format
/// and signature tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    map
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
        assert_eq!(alerts.sent_at_ms, None);
        assert_eq!(sns.sent_at_ms, Some(1_335_920_046_655));

        // The same body as a CloudEvent lacks the binary mode's headers.
        let err = parse(
            Format::CloudEvents,
            &headers,
            include_bytes!("fixtures/alertmanager.json"),
        )
        .unwrap_err();
        assert!(matches!(err, PayloadError::NotACloudEvent { .. }), "{err}");
    }

    #[test]
    fn an_sns_message_outside_the_window_is_stale() {
        let sns = parse(
            Format::Sns,
            &HeaderMap::new(),
            include_bytes!("fixtures/sns_notification.json"),
        )
        .unwrap();
        // Published 2012-05-02T00:54:06.655Z.
        let published_ms = 1_335_920_046_655;
        let window = ReplayWindow::of(300);
        assert_eq!(check_sent(&sns, &window, published_ms + 300_000), Ok(()));
        let err = check_sent(&sns, &window, published_ms + 301_000).unwrap_err();
        assert_eq!(
            err,
            Stale::TooOld {
                what: Sent::SnsTimestamp,
                age_s: 301,
                window_s: 300
            }
        );
        assert!(matches!(
            check_sent(&sns, &window, published_ms - 61_000),
            Err(Stale::Ahead { .. })
        ));
        // Formats without a time of sending are not checked here.
        assert_eq!(check_sent(&Parsed::default(), &window, 0), Ok(()));
    }

    #[test]
    fn events_without_an_id_take_the_signature_s() {
        let event = |dedup_id: Option<&str>| InboundEvent {
            event_type: "app.x".into(),
            subject: "s".into(),
            data: serde_json::Value::Null,
            dedup_id: dedup_id.map(str::to_owned),
            time_unix_ms: None,
            remember: None,
        };
        let mut events = vec![event(None), event(Some("own")), event(None)];
        identify_by_signature(&mut events, "ab12");
        let ids: Vec<_> = events.iter().map(|e| e.dedup_id.as_deref()).collect();
        assert_eq!(
            ids,
            [
                Some("signature:ab12/0"),
                Some("own"),
                Some("signature:ab12/2")
            ]
        );
        // The same request again gets the same ids: a repeat.
        let mut again = vec![event(None), event(Some("own")), event(None)];
        identify_by_signature(&mut again, "ab12");
        assert_eq!(again, events);
    }
}
