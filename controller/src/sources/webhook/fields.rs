//! Reading fields out of JSON objects so that every refusal names the part
//! of the payload (`at`) and the field's path in it (`labels.alertname`).
//! Serde's derive would say "missing field" without the path or the
//! index of the alert it was in.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{PayloadError, shown};

/// Parses a whole request body as JSON.
pub(super) fn parse_body(body: &[u8]) -> Result<Value, PayloadError> {
    if body.trim_ascii().is_empty() {
        return Err(PayloadError::EmptyBody);
    }
    serde_json::from_slice(body).map_err(|cause| PayloadError::NotJson {
        what: "body".to_owned(),
        cause,
    })
}

/// "a string", "an object"...: what a value is, for error messages.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 time.
pub(super) fn parse_time(at: &str, field: &str, value: &str) -> Result<i64, PayloadError> {
    let time = OffsetDateTime::parse(value, &Rfc3339).map_err(|cause| PayloadError::BadTime {
        at: at.to_owned(),
        field: field.to_owned(),
        value: shown(value),
        cause,
    })?;
    Ok(time.unix_timestamp() * 1000 + i64::from(time.millisecond()))
}

/// A JSON object inside a payload part. `null` counts as absent, since
/// senders write optional fields either way.
#[derive(Debug, Clone)]
pub(super) struct Obj<'a> {
    at: &'a str,
    /// Path of this object within `at`, with a trailing dot (`labels.`).
    prefix: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    /// The payload part `at` itself, which must be an object.
    pub(super) fn root(at: &'a str, value: &'a Value) -> Result<Self, PayloadError> {
        match value {
            Value::Object(map) => Ok(Self {
                at,
                prefix: String::new(),
                map,
            }),
            other => Err(PayloadError::NotAnObject {
                at: at.to_owned(),
                found: kind(other),
            }),
        }
    }

    /// An object found at `path` inside `at` (e.g. SNS's `Message`).
    pub(super) fn nested(at: &'a str, path: &str, value: &'a Value) -> Result<Self, PayloadError> {
        match value {
            Value::Object(map) => Ok(Self {
                at,
                prefix: format!("{path}."),
                map,
            }),
            other => Err(PayloadError::WrongType {
                at: at.to_owned(),
                field: path.to_owned(),
                expected: "an object",
                found: kind(other),
            }),
        }
    }

    pub(super) fn at(&self) -> &'a str {
        self.at
    }

    /// The field's path as shown in errors.
    pub(super) fn path(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    pub(super) fn map(&self) -> &'a Map<String, Value> {
        self.map
    }

    pub(super) fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// The field's value as is, `null` when absent.
    pub(super) fn value(&self, field: &str) -> Value {
        self.get(field).cloned().unwrap_or(Value::Null)
    }

    fn missing(&self, field: &str) -> PayloadError {
        PayloadError::Missing {
            at: self.at.to_owned(),
            field: self.path(field),
        }
    }

    fn wrong_type(&self, field: &str, expected: &'static str, found: &Value) -> PayloadError {
        PayloadError::WrongType {
            at: self.at.to_owned(),
            field: self.path(field),
            expected,
            found: kind(found),
        }
    }

    /// A required, non-empty string.
    pub(super) fn str(&self, field: &str) -> Result<&'a str, PayloadError> {
        match self.opt_str(field)? {
            None => Err(self.missing(field)),
            Some("") => Err(PayloadError::Empty {
                at: self.at.to_owned(),
                field: self.path(field),
            }),
            Some(s) => Ok(s),
        }
    }

    pub(super) fn opt_str(&self, field: &str) -> Result<Option<&'a str>, PayloadError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(field, "a string", other)),
        }
    }

    /// A required RFC 3339 time, as the string and as Unix milliseconds.
    pub(super) fn time(&self, field: &str) -> Result<(&'a str, i64), PayloadError> {
        let text = self.str(field)?;
        Ok((text, parse_time(self.at, &self.path(field), text)?))
    }

    pub(super) fn opt_time(&self, field: &str) -> Result<Option<i64>, PayloadError> {
        match self.opt_str(field)? {
            None => Ok(None),
            Some(text) => parse_time(self.at, &self.path(field), text).map(Some),
        }
    }

    /// A required object.
    pub(super) fn object(&self, field: &str) -> Result<Obj<'a>, PayloadError> {
        self.opt_object(field)?.ok_or_else(|| self.missing(field))
    }

    pub(super) fn opt_object(&self, field: &str) -> Result<Option<Obj<'a>>, PayloadError> {
        self.get(field)
            .map(|value| Obj::nested(self.at, &self.path(field), value))
            .transpose()
    }

    /// An optional object's value, `{}` when absent, so data documents
    /// keep one shape.
    pub(super) fn object_or_empty(&self, field: &str) -> Result<Value, PayloadError> {
        Ok(Value::Object(
            self.opt_object(field)?
                .map(|obj| obj.map.clone())
                .unwrap_or_default(),
        ))
    }

    /// A required array.
    pub(super) fn array(&self, field: &str) -> Result<&'a [Value], PayloadError> {
        match self.get(field) {
            None => Err(self.missing(field)),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.wrong_type(field, "an array", other)),
        }
    }

    /// This object as a JSON value.
    pub(super) fn to_value(&self) -> Value {
        Value::Object(self.map.clone())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_name_their_path_and_part_in_errors() {
        let value = json!({"labels": {"severity": 3, "empty": ""}, "n": null});
        let root = Obj::root("alerts[1]", &value).unwrap();
        let labels = root.object("labels").unwrap();

        let err = labels.str("alertname").unwrap_err().to_string();
        assert_eq!(err, "alerts[1]: `labels.alertname` is missing");
        let err = labels.str("severity").unwrap_err().to_string();
        assert_eq!(
            err,
            "alerts[1]: `labels.severity` must be a string, not a number"
        );
        let err = labels.str("empty").unwrap_err().to_string();
        assert_eq!(err, "alerts[1]: `labels.empty` is empty");
        // null is absent, not a wrong type.
        assert_eq!(root.opt_str("n").unwrap(), None);
        let err = root.array("labels").unwrap_err().to_string();
        assert_eq!(err, "alerts[1]: `labels` must be an array, not an object");
    }

    #[test]
    fn root_must_be_an_object() {
        let err = Obj::root("SNS message", &json!([1])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "SNS message: must be a JSON object, not an array"
        );
    }

    #[test]
    fn parse_body_reports_line_and_column() {
        let err = parse_body(b"{\n  \"a\": 1,\n  oops\n}")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("body is not JSON: "), "{err}");
        assert!(err.contains("line 3 column 3"), "{err}");
        assert_eq!(
            parse_body(b"  \n").unwrap_err().to_string(),
            "body is empty"
        );
    }

    #[test]
    fn times_parse_to_unix_milliseconds() {
        assert_eq!(
            parse_time("x", "t", "2024-05-01T10:00:00.123456789Z").unwrap(),
            1_714_557_600_123
        );
        assert_eq!(
            parse_time("x", "t", "2024-05-01T12:00:00.5+02:00").unwrap(),
            1_714_557_600_500
        );
        // Before the epoch (Alertmanager's zero time) stays exact.
        assert_eq!(
            parse_time("x", "t", "1969-12-31T23:59:59.250Z").unwrap(),
            -750
        );
        let err = parse_time("CloudEvent", "time", "yesterday")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("CloudEvent: `time` is not an RFC 3339 time (\"yesterday\")"),
            "{err}"
        );
    }
}
