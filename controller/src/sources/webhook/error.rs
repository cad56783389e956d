//! Why a webhook's payload was refused. Every message says where (`at`: a
//! part of the payload such as `alerts[1]` or `CloudEvent`) and what, since
//! it goes back to whoever configured the sender.

use thiserror::Error;

/// A payload that cannot become events. The sender should not retry it
/// unchanged (answer 400).
#[derive(Debug, Error)]
pub enum PayloadError {
    #[error("body is empty")]
    EmptyBody,
    #[error("{what} is not JSON: {cause}")]
    NotJson {
        what: String,
        cause: serde_json::Error,
    },
    #[error("{what} is not UTF-8: {cause}")]
    NotUtf8 {
        what: String,
        cause: std::str::Utf8Error,
    },
    #[error("{at}: must be a JSON object, not {found}")]
    NotAnObject { at: String, found: &'static str },
    #[error("{at}: must be a JSON array, not {found}")]
    NotAnArray { at: String, found: &'static str },
    #[error("{at}: `{field}` is missing")]
    Missing { at: String, field: String },
    #[error("{at}: `{field}` is empty")]
    Empty { at: String, field: String },
    #[error("{at}: `{field}` must be {expected}, not {found}")]
    WrongType {
        at: String,
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{at}: `{field}` is {value:?}; expected {expected}")]
    Unsupported {
        at: String,
        field: String,
        value: String,
        expected: &'static str,
    },
    #[error("{at}: `{field}` is not an RFC 3339 time ({value:?}): {cause}")]
    BadTime {
        at: String,
        field: String,
        value: String,
        cause: time::error::Parse,
    },
    #[error("{at}: header `{header}` is missing")]
    MissingHeader { at: String, header: String },
    #[error("{at}: header `{header}` {reason}")]
    BadHeader {
        at: String,
        header: String,
        reason: &'static str,
    },
    #[error(
        "not a CloudEvent: Content-Type is {content_type:?} and there are no `ce-*` headers; \
         send one event with `Content-Type: application/cloudevents+json`, a batch with \
         `application/cloudevents-batch+json`, or the binary mode's `ce-specversion`, \
         `ce-id`, `ce-source` and `ce-type` headers"
    )]
    NotACloudEvent { content_type: String },
    #[error("{at}: `data` and `data_base64` are both present; a CloudEvent carries one")]
    TwoDatas { at: String },
    #[error(
        "{at}: event type {event_type:?} is reserved: types starting with `host.` or \
         `levee.` are raised only by agents and controllers"
    )]
    ReservedType { at: String, event_type: String },
    #[error("{at}: {what} is {len} bytes, more than the limit of {limit}")]
    TooLarge {
        at: String,
        what: String,
        len: usize,
        limit: usize,
    },
    #[error("{count} events in one request, more than the limit of {limit}")]
    TooManyEvents { count: usize, limit: usize },
}

/// A payload's value as shown in an error: long values are cut, since the
/// message is logged and sent back.
pub(super) fn shown(value: &str) -> String {
    const MAX_CHARS: usize = 80;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_cuts_long_values_on_a_char_boundary() {
        assert_eq!(shown("short"), "short");
        let long = "é".repeat(100);
        let cut = shown(&long);
        assert_eq!(cut.chars().count(), 81);
        assert!(cut.ends_with('…'));
    }
}
