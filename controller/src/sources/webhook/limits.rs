//! What every event from a webhook must respect, whatever its format:
//! sizes the state machine accepts, and event types outsiders may not use.

use levee_common::event::{MAX_EVENT_DATA_BYTES, MAX_EVENT_FIELD_BYTES};
use sha2::{Digest, Sha256};

use super::error::{PayloadError, shown};
use crate::state::inbound::{InboundEvent, is_reserved_type};

/// Most events one request may carry (a CloudEvents batch, an
/// Alertmanager group).
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

/// Where an event's type and subject came from, to name them in errors,
/// e.g. `` `type` `` or `` header `ce-type` ``.
pub(super) struct Origin<'a> {
    pub at: &'a str,
    pub type_from: &'a str,
    pub subject_from: &'a str,
}

pub(super) fn check_count(count: usize) -> Result<(), PayloadError> {
    if count > MAX_EVENTS_PER_REQUEST {
        return Err(PayloadError::TooManyEvents {
            count,
            limit: MAX_EVENTS_PER_REQUEST,
        });
    }
    Ok(())
}

/// Refuses an event outsiders may not raise or the state cannot hold, and
/// bounds its dedup id.
pub(super) fn checked(
    mut event: InboundEvent,
    origin: &Origin<'_>,
) -> Result<InboundEvent, PayloadError> {
    let too_large = |what: &str, len: usize, limit: usize| PayloadError::TooLarge {
        at: origin.at.to_owned(),
        what: what.to_owned(),
        len,
        limit,
    };
    if is_reserved_type(&event.event_type) {
        return Err(PayloadError::ReservedType {
            at: origin.at.to_owned(),
            event_type: shown(&event.event_type),
        });
    }
    if event.event_type.len() > MAX_EVENT_FIELD_BYTES {
        let what = format!("{} (the event type)", origin.type_from);
        return Err(too_large(
            &what,
            event.event_type.len(),
            MAX_EVENT_FIELD_BYTES,
        ));
    }
    if event.subject.len() > MAX_EVENT_FIELD_BYTES {
        let what = format!("{} (the event subject)", origin.subject_from);
        return Err(too_large(&what, event.subject.len(), MAX_EVENT_FIELD_BYTES));
    }
    // The same measure as the agent's events: the serialized document.
    let data_len = serde_json::to_vec(&event.data).map_or(usize::MAX, |json| json.len());
    if data_len > MAX_EVENT_DATA_BYTES {
        return Err(too_large(
            "the event's data",
            data_len,
            MAX_EVENT_DATA_BYTES,
        ));
    }
    event.dedup_id = event.dedup_id.map(bounded_dedup_id);
    Ok(event)
}

/// Dedup ids are kept in the replicated state (thousands per source), so a
/// long one is replaced by its SHA-256: still unique, bounded in size.
fn bounded_dedup_id(id: String) -> String {
    if id.len() <= MAX_EVENT_FIELD_BYTES {
        return id;
    }
    let digest = Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ORIGIN: Origin<'static> = Origin {
        at: "CloudEvent",
        type_from: "`type`",
        subject_from: "`source`",
    };

    fn event(event_type: &str, subject: &str) -> InboundEvent {
        InboundEvent {
            event_type: event_type.to_owned(),
            subject: subject.to_owned(),
            data: json!({}),
            dedup_id: None,
            time_unix_ms: None,
            remember: None,
        }
    }

    #[test]
    fn reserved_types_are_refused_with_the_reason() {
        for reserved in ["host.lost", "host.process.exited", "levee.anything"] {
            let err = checked(event(reserved, "s"), &ORIGIN)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("{reserved:?} is reserved")), "{err}");
            assert!(err.contains("agents and controllers"), "{err}");
        }
        // Only the dotted prefixes are reserved.
        assert!(checked(event("hosting.changed", "s"), &ORIGIN).is_ok());
        assert!(checked(event("levee", "s"), &ORIGIN).is_ok());
    }

    #[test]
    fn oversize_type_subject_and_data_name_the_field() {
        let long = "x".repeat(MAX_EVENT_FIELD_BYTES + 1);
        let ok = "x".repeat(MAX_EVENT_FIELD_BYTES);
        assert!(checked(event(&ok, &ok), &ORIGIN).is_ok());

        let err = checked(event(&long, "s"), &ORIGIN).unwrap_err().to_string();
        assert_eq!(
            err,
            "CloudEvent: `type` (the event type) is 257 bytes, more than the limit of 256"
        );
        let err = checked(event("t", &long), &ORIGIN).unwrap_err().to_string();
        assert_eq!(
            err,
            "CloudEvent: `source` (the event subject) is 257 bytes, more than the limit of 256"
        );

        let mut big = event("t", "s");
        big.data = json!({"blob": "y".repeat(MAX_EVENT_DATA_BYTES)});
        let err = checked(big, &ORIGIN).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "CloudEvent: the event's data is 65547 bytes, more than the limit of 65536"
            ),
            "{err}"
        );
    }

    #[test]
    fn long_dedup_ids_are_hashed_and_short_ones_kept() {
        let mut short = event("t", "s");
        short.dedup_id = Some("abc".to_owned());
        assert_eq!(
            checked(short, &ORIGIN).unwrap().dedup_id.as_deref(),
            Some("abc")
        );

        let mut long = event("t", "s");
        long.dedup_id = Some("z".repeat(1000));
        let id = checked(long, &ORIGIN).unwrap().dedup_id.unwrap();
        assert!(id.starts_with("sha256:") && id.len() == 7 + 64, "{id}");
    }

    #[test]
    fn counts_above_the_limit_are_refused() {
        assert!(check_count(MAX_EVENTS_PER_REQUEST).is_ok());
        let err = check_count(MAX_EVENTS_PER_REQUEST + 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "1001 events in one request, more than the limit of 1000"
        );
    }
}
