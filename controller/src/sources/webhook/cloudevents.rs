//! CloudEvents 1.0 over HTTP: structured, batch and binary modes
//! (<https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md>).
//!
//! Each CloudEvent becomes one event:
//! - `event_type`: the CloudEvent's `type` (`host.*` and `levee.*` refused);
//! - `subject`: its `subject`, or else its `source`;
//! - `dedup_id`: `source` and `id` as a JSON array (`["src","id"]`), which
//!   no other pair of strings produces, since the spec makes the pair unique;
//! - `time_unix_ms`: its `time`;
//! - `data`, always with the same keys, plus three only when sent:
//!   ```json
//!   { "source": "...", "id": "...",
//!     "data": <the event's data: JSON as sent, text as a string, null when none>,
//!     "extensions": { "<attribute>": <value> },
//!     "datacontenttype": "...", "dataschema": "...", "data_base64": "..." }
//!   ```
//!   `data_base64` is kept as sent, not decoded: binary data is not
//!   something rules can match on. Binary-mode extensions are strings
//!   (headers carry no types); structured-mode ones keep their JSON type.

use std::collections::BTreeMap;

use http::HeaderMap;
use http::header::CONTENT_TYPE;
use serde_json::{Map, Value};

use super::encoding::percent_decode;
use super::error::{PayloadError, shown};
use super::fields::{Obj, kind, parse_body, parse_time};
use super::limits::{Origin, check_count, checked};
use crate::state::inbound::InboundEvent;

const SPEC_VERSION: &str = "1.0";
const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";
/// Attributes defined by the spec; anything else is an extension.
const CONTEXT_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Vec<InboundEvent>, PayloadError> {
    let content_type = header_text(headers, "CloudEvent", CONTENT_TYPE.as_str(), false)?;
    match content_type.as_deref().map(media_type).as_deref() {
        Some(STRUCTURED) => {
            let value = parse_body(body)?;
            Ok(vec![structured("CloudEvent", &value)?])
        }
        Some(BATCH) => batch(&parse_body(body)?),
        _ => Ok(vec![binary(headers, content_type.as_deref(), body)?]),
    }
}

/// The attributes every mode ends with.
struct CloudEvent<'a> {
    id: &'a str,
    source: &'a str,
    event_type: &'a str,
    subject: Option<&'a str>,
    time_unix_ms: Option<i64>,
    datacontenttype: Option<&'a str>,
    dataschema: Option<&'a str>,
    data: Value,
    data_base64: Option<&'a str>,
    extensions: Map<String, Value>,
}

impl CloudEvent<'_> {
    fn into_event(self, at: &str, field: fn(&str) -> String) -> Result<InboundEvent, PayloadError> {
        // An empty subject says nothing; the source does.
        let (subject, subject_from) = match self.subject.filter(|s| !s.is_empty()) {
            Some(subject) => (subject, field("subject")),
            None => (self.source, field("source")),
        };
        let mut data = Map::new();
        data.insert("source".into(), self.source.into());
        data.insert("id".into(), self.id.into());
        data.insert("data".into(), self.data);
        data.insert("extensions".into(), Value::Object(self.extensions));
        let optional = [
            ("datacontenttype", self.datacontenttype),
            ("dataschema", self.dataschema),
            ("data_base64", self.data_base64),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                data.insert(key.into(), value.into());
            }
        }
        let dedup_id = serde_json::to_string(&[self.source, self.id]).ok();
        let event = InboundEvent {
            event_type: self.event_type.to_owned(),
            subject: subject.to_owned(),
            data: Value::Object(data),
            dedup_id,
            time_unix_ms: self.time_unix_ms,
            remember: None,
        };
        let origin = Origin {
            at,
            type_from: &field("type"),
            subject_from: &subject_from,
        };
        checked(event, &origin)
    }
}

/// `application/cloudevents+json; charset=utf-8` → `application/cloudevents+json`.
fn media_type(content_type: &str) -> String {
    let essence = content_type.split(';').next().unwrap_or_default();
    essence.trim().to_ascii_lowercase()
}

fn batch(value: &Value) -> Result<Vec<InboundEvent>, PayloadError> {
    let Value::Array(items) = value else {
        return Err(PayloadError::NotAnArray {
            at: "CloudEvent batch".to_owned(),
            found: kind(value),
        });
    };
    check_count(items.len())?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| structured(&format!("CloudEvent batch[{i}]"), item))
        .collect()
}

/// One event in the JSON event format.
fn structured(at: &str, value: &Value) -> Result<InboundEvent, PayloadError> {
    let obj = Obj::root(at, value)?;
    check_version(at, "specversion", obj.str("specversion")?)?;
    let data = obj.get("data").cloned();
    let data_base64 = obj.opt_str("data_base64")?;
    if data.is_some() && data_base64.is_some() {
        return Err(PayloadError::TwoDatas { at: at.to_owned() });
    }
    let extensions = obj
        .map()
        .iter()
        .filter(|(name, _)| !CONTEXT_ATTRIBUTES.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    CloudEvent {
        id: obj.str("id")?,
        source: obj.str("source")?,
        event_type: obj.str("type")?,
        subject: obj.opt_str("subject")?,
        time_unix_ms: obj.opt_time("time")?,
        datacontenttype: obj.opt_str("datacontenttype")?,
        dataschema: obj.opt_str("dataschema")?,
        data: data.unwrap_or(Value::Null),
        data_base64,
        extensions,
    }
    .into_event(at, |name| format!("`{name}`"))
}

/// Attributes in `ce-*` headers, the body is the data.
fn binary(
    headers: &HeaderMap,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<InboundEvent, PayloadError> {
    const AT: &str = "CloudEvent";
    let mut attributes = BTreeMap::new();
    for name in headers.keys() {
        // Header names are lower-case here, so `CE-Type` is found too.
        if let Some(attribute) = name.as_str().strip_prefix("ce-")
            && let Some(value) = header_text(headers, AT, name.as_str(), true)?
        {
            attributes.insert(attribute, value);
        }
    }
    if attributes.is_empty() {
        return Err(PayloadError::NotACloudEvent {
            content_type: content_type.map_or_else(|| "absent".to_owned(), shown),
        });
    }
    let optional = |name: &str| attributes.get(name).map(String::as_str);
    let required = |name: &str| match optional(name) {
        None => Err(PayloadError::MissingHeader {
            at: AT.to_owned(),
            header: format!("ce-{name}"),
        }),
        Some("") => Err(PayloadError::BadHeader {
            at: AT.to_owned(),
            header: format!("ce-{name}"),
            reason: "is empty",
        }),
        Some(value) => Ok(value),
    };
    check_version(AT, "ce-specversion", required("specversion")?)?;
    let time_unix_ms = optional("time")
        .map(|time| parse_time(AT, "ce-time", time))
        .transpose()?;
    let extensions = attributes
        .iter()
        .filter(|(name, _)| !CONTEXT_ATTRIBUTES.contains(name))
        .map(|(name, value)| ((*name).to_owned(), Value::String(value.clone())))
        .collect();
    CloudEvent {
        id: required("id")?,
        source: required("source")?,
        event_type: required("type")?,
        subject: optional("subject"),
        time_unix_ms,
        datacontenttype: content_type,
        dataschema: optional("dataschema"),
        data: body_data(content_type, body)?,
        data_base64: None,
        extensions,
    }
    .into_event(AT, |name| format!("header `ce-{name}`"))
}

fn check_version(at: &str, field: &str, version: &str) -> Result<(), PayloadError> {
    if version != SPEC_VERSION {
        return Err(PayloadError::Unsupported {
            at: at.to_owned(),
            field: field.to_owned(),
            value: shown(version),
            expected: "\"1.0\"",
        });
    }
    Ok(())
}

/// A binary-mode body: JSON for JSON media types, text otherwise.
fn body_data(content_type: Option<&str>, body: &[u8]) -> Result<Value, PayloadError> {
    const WHAT: &str = "CloudEvent data (the body)";
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let media = content_type.map(media_type).unwrap_or_default();
    let json = media == "application/json" || media == "text/json" || media.ends_with("+json");
    if json {
        return serde_json::from_slice(body).map_err(|cause| PayloadError::NotJson {
            what: format!("{WHAT}, Content-Type {}", shown(&media)),
            cause,
        });
    }
    match std::str::from_utf8(body) {
        Ok(text) => Ok(Value::String(text.to_owned())),
        Err(cause) => Err(PayloadError::NotUtf8 {
            what: WHAT.to_owned(),
            cause,
        }),
    }
}

/// A header's only value as text; `ce-*` values are percent-decoded as
/// the binding asks (`%20`, `%22`, `%25` and non-ASCII as UTF-8 bytes).
fn header_text(
    headers: &HeaderMap,
    at: &str,
    name: &str,
    percent_encoded: bool,
) -> Result<Option<String>, PayloadError> {
    let bad = |reason| PayloadError::BadHeader {
        at: at.to_owned(),
        header: name.to_owned(),
        reason,
    };
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(bad("is given more than once"));
    }
    let text = value
        .to_str()
        .map_err(|_| bad("is not visible ASCII (percent-encode other characters)"))?;
    if !percent_encoded {
        return Ok(Some(text.to_owned()));
    }
    let bytes =
        percent_decode(text).ok_or_else(|| bad("has a `%` not followed by two hex digits"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| bad("is not UTF-8 once percent-decoded"))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::sources::webhook::test_headers as headers;

    const STRUCTURED_FIXTURE: &str = include_str!("fixtures/cloudevent_structured.json");
    const BATCH_FIXTURE: &str = include_str!("fixtures/cloudevents_batch.json");

    fn structured_headers() -> HeaderMap {
        headers(&[(
            "Content-Type",
            "application/cloudevents+json; charset=utf-8",
        )])
    }

    /// The binary mode's required headers plus `extra`.
    fn binary_headers(extra: &[(&str, &str)]) -> HeaderMap {
        let mut pairs = vec![
            ("CE-SpecVersion", "1.0"),
            ("ce-id", "evt-1"),
            ("Ce-Source", "/monitoring/grafana"),
            ("ce-type", "com.example.disk.low"),
        ];
        pairs.extend_from_slice(extra);
        headers(&pairs)
    }

    fn structured_error(event: &Value) -> String {
        let body = serde_json::to_vec(event).unwrap();
        parse(&structured_headers(), &body).unwrap_err().to_string()
    }

    fn fixture() -> Value {
        serde_json::from_str(STRUCTURED_FIXTURE).unwrap()
    }

    #[test]
    fn a_structured_event_maps_attributes_and_keeps_extensions() {
        let events = parse(&structured_headers(), STRUCTURED_FIXTURE.as_bytes()).unwrap();
        let [event] = events.as_slice() else {
            panic!("one event expected: {events:?}")
        };
        assert_eq!(event.event_type, "com.github.pull_request.opened");
        assert_eq!(event.subject, "123");
        assert_eq!(
            event.dedup_id.as_deref(),
            Some(r#"["https://github.com/example/shop","A234-1234-1234"]"#)
        );
        assert_eq!(event.time_unix_ms, Some(1_714_584_660_000));
        assert_eq!(
            event.data,
            json!({
                "source": "https://github.com/example/shop",
                "id": "A234-1234-1234",
                "data": {"number": 123, "title": "Bump the cache size", "base": "main"},
                "extensions": {"comexampleextension1": "value", "comexampleothervalue": 5},
                "datacontenttype": "application/json",
            })
        );
    }

    #[test]
    fn a_batch_becomes_one_event_per_entry() {
        let headers = headers(&[("content-type", "application/cloudevents-batch+json")]);
        let events = parse(&headers, BATCH_FIXTURE.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_type, "com.example.deploy.finished");
        // No subject: the source says what it is about.
        assert_eq!(events[0].subject, "/ci/pipelines/42");
        assert_eq!(events[0].time_unix_ms, Some(1_714_557_600_000));
        assert_eq!(events[0].data["data"]["version"], "1.4.2");
        assert_eq!(events[0].data["extensions"], json!({}));

        assert_eq!(events[1].subject, "/backup/db-1");
        assert_eq!(events[1].time_unix_ms, None);
        assert_eq!(events[1].data["data"], Value::Null);
        assert_eq!(events[1].data["data_base64"], "AAECAwQ=");
        assert_eq!(
            events[1].data["datacontenttype"],
            "application/octet-stream"
        );
    }

    #[test]
    fn an_empty_batch_is_no_events() {
        let headers = headers(&[("content-type", "application/cloudevents-batch+json")]);
        assert_eq!(parse(&headers, b"[]").unwrap(), vec![]);
    }

    #[test]
    fn binary_mode_reads_headers_in_any_case_and_json_data() {
        let headers = binary_headers(&[
            ("Content-Type", "application/json"),
            ("ce-subject", "caf%C3%A9%20%25"),
            ("ce-time", "2024-05-01T10:00:00Z"),
            (
                "ce-traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]);
        let body = br#"{"mount": "/var", "free_percent": 4.5}"#;
        let [event] = parse(&headers, body).unwrap().try_into().unwrap();
        assert_eq!(event.event_type, "com.example.disk.low");
        // Percent-decoded as the HTTP binding asks.
        assert_eq!(event.subject, "café %");
        assert_eq!(event.time_unix_ms, Some(1_714_557_600_000));
        assert_eq!(
            event.dedup_id.as_deref(),
            Some(r#"["/monitoring/grafana","evt-1"]"#)
        );
        assert_eq!(
            event.data,
            json!({
                "source": "/monitoring/grafana",
                "id": "evt-1",
                "data": {"mount": "/var", "free_percent": 4.5},
                "extensions": {
                    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                },
                "datacontenttype": "application/json",
            })
        );
    }

    #[test]
    fn binary_mode_json_media_types_include_the_plus_json_suffix() {
        let headers = binary_headers(&[("content-type", "application/vnd.example+json")]);
        let [event] = parse(&headers, b"[1, 2]").unwrap().try_into().unwrap();
        assert_eq!(event.data["data"], json!([1, 2]));
    }

    #[test]
    fn binary_mode_text_data_is_a_string_and_no_body_is_null() {
        let headers = binary_headers(&[("content-type", "text/plain; charset=utf-8")]);
        let [event] = parse(&headers, b"disk almost full")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(event.data["data"], "disk almost full");
        assert_eq!(event.data["datacontenttype"], "text/plain; charset=utf-8");

        let [event] = parse(&binary_headers(&[]), b"")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(event.data["data"], Value::Null);
        assert_eq!(event.data.get("datacontenttype"), None);
    }

    #[test]
    fn structured_mode_refuses_missing_attributes_by_name() {
        for attribute in ["specversion", "id", "source", "type"] {
            let mut event = fixture();
            event.as_object_mut().unwrap().remove(attribute);
            assert_eq!(
                structured_error(&event),
                format!("CloudEvent: `{attribute}` is missing")
            );
        }
        let mut event = fixture();
        event["type"] = json!("");
        assert_eq!(structured_error(&event), "CloudEvent: `type` is empty");
        event["type"] = json!(7);
        assert_eq!(
            structured_error(&event),
            "CloudEvent: `type` must be a string, not a number"
        );
    }

    #[test]
    fn other_spec_versions_are_refused() {
        let mut event = fixture();
        event["specversion"] = json!("0.3");
        assert_eq!(
            structured_error(&event),
            "CloudEvent: `specversion` is \"0.3\"; expected \"1.0\""
        );
        let headers = binary_headers(&[]);
        let mut headers = headers;
        headers.insert("ce-specversion", HeaderValue::from_static("2.0"));
        assert_eq!(
            parse(&headers, b"").unwrap_err().to_string(),
            "CloudEvent: `ce-specversion` is \"2.0\"; expected \"1.0\""
        );
    }

    #[test]
    fn reserved_types_are_refused() {
        let mut event = fixture();
        event["type"] = json!("host.lost");
        let err = structured_error(&event);
        assert!(
            err.starts_with("CloudEvent: event type \"host.lost\" is reserved"),
            "{err}"
        );
        let mut headers = binary_headers(&[]);
        headers.insert("ce-type", HeaderValue::from_static("levee.approve"));
        let err = parse(&headers, b"").unwrap_err().to_string();
        assert!(err.contains("\"levee.approve\" is reserved"), "{err}");
    }

    #[test]
    fn a_bad_time_is_refused() {
        let mut event = fixture();
        event["time"] = json!("2024-05-01 17:31");
        let err = structured_error(&event);
        assert!(
            err.starts_with("CloudEvent: `time` is not an RFC 3339 time (\"2024-05-01 17:31\")"),
            "{err}"
        );
        let headers = binary_headers(&[("ce-time", "noon")]);
        let err = parse(&headers, b"").unwrap_err().to_string();
        assert!(
            err.starts_with("CloudEvent: `ce-time` is not an RFC 3339 time"),
            "{err}"
        );
    }

    #[test]
    fn data_and_data_base64_together_are_refused() {
        let mut event = fixture();
        event["data_base64"] = json!("AAEC");
        assert_eq!(
            structured_error(&event),
            "CloudEvent: `data` and `data_base64` are both present; a CloudEvent carries one"
        );
    }

    #[test]
    fn batch_errors_name_the_entry() {
        let headers = headers(&[("content-type", "application/cloudevents-batch+json")]);
        let mut batch: Value = serde_json::from_str(BATCH_FIXTURE).unwrap();
        batch[1].as_object_mut().unwrap().remove("id");
        let body = serde_json::to_vec(&batch).unwrap();
        assert_eq!(
            parse(&headers, &body).unwrap_err().to_string(),
            "CloudEvent batch[1]: `id` is missing"
        );
        assert_eq!(
            parse(&headers, STRUCTURED_FIXTURE.as_bytes())
                .unwrap_err()
                .to_string(),
            "CloudEvent batch: must be a JSON array, not an object"
        );
        let many = Value::Array(vec![fixture(); 1001]);
        assert_eq!(
            parse(&headers, &serde_json::to_vec(&many).unwrap())
                .unwrap_err()
                .to_string(),
            "1001 events in one request, more than the limit of 1000"
        );
    }

    #[test]
    fn structured_bad_json_names_line_and_column() {
        let err = parse(&structured_headers(), b"{\n\"type\": \"x\",,\n}")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("body is not JSON: "), "{err}");
        assert!(err.contains("line 2 column 13"), "{err}");
    }

    #[test]
    fn binary_mode_names_a_missing_header() {
        let mut headers = binary_headers(&[]);
        headers.remove("ce-type");
        assert_eq!(
            parse(&headers, b"").unwrap_err().to_string(),
            "CloudEvent: header `ce-type` is missing"
        );
        headers.insert("ce-type", HeaderValue::from_static(""));
        assert_eq!(
            parse(&headers, b"").unwrap_err().to_string(),
            "CloudEvent: header `ce-type` is empty"
        );
    }

    #[test]
    fn plain_json_without_ce_headers_says_how_to_send_a_cloudevent() {
        let headers = headers(&[("content-type", "application/json")]);
        let err = parse(&headers, STRUCTURED_FIXTURE.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("not a CloudEvent: Content-Type is \"application/json\""),
            "{err}"
        );
        assert!(err.contains("application/cloudevents+json"), "{err}");
    }

    #[test]
    fn binary_mode_refuses_bad_bodies() {
        let headers = binary_headers(&[("content-type", "application/json")]);
        let err = parse(&headers, b"{\"a\":\n tru}").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "CloudEvent data (the body), Content-Type application/json is not JSON: "
            ),
            "{err}"
        );
        assert!(err.contains("line 2 column"), "{err}");

        let headers = binary_headers(&[("content-type", "application/octet-stream")]);
        let err = parse(&headers, &[0xff, 0xfe, 0x00])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("CloudEvent data (the body) is not UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn binary_mode_refuses_bad_header_values() {
        let headers = binary_headers(&[("ce-subject", "100%")]);
        assert_eq!(
            parse(&headers, b"").unwrap_err().to_string(),
            "CloudEvent: header `ce-subject` has a `%` not followed by two hex digits"
        );
        let headers = binary_headers(&[("ce-subject", "%FF")]);
        assert_eq!(
            parse(&headers, b"").unwrap_err().to_string(),
            "CloudEvent: header `ce-subject` is not UTF-8 once percent-decoded"
        );
        let headers = binary_headers(&[("ce-id", "evt-2")]);
        assert_eq!(
            parse(&headers, b"").unwrap_err().to_string(),
            "CloudEvent: header `ce-id` is given more than once"
        );
    }

    #[test]
    fn an_oversize_source_used_as_subject_names_the_header() {
        let long = "s".repeat(257);
        let mut headers = binary_headers(&[]);
        headers.insert("ce-source", HeaderValue::from_str(&long).unwrap());
        assert_eq!(
            parse(&headers, b"").unwrap_err().to_string(),
            "CloudEvent: header `ce-source` (the event subject) is 257 bytes, more than the limit of 256"
        );
    }
}
