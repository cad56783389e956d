//! Event patterns in the style of AWS EventBridge.
//!
//! A pattern is a JSON object whose leaves are lists of matchers; a list is
//! an OR, keys are an AND. Matchers: an exact scalar, `{"prefix": ".."}`,
//! `{"suffix": ".."}`, `{"exists": bool}`, `{"anything-but": scalar | [..]}`
//! and `{"numeric": [">", 80, "<=", 100]}`. Against an array field a list
//! matches when any element matches.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use thiserror::Error;

/// A rule's `match` as written, with its compiled form. It is compiled
/// once, when specs are parsed (or read back from the log or a snapshot),
/// never per event; it serialises as what was written.
#[derive(Debug, Clone)]
pub struct EventPattern {
    source: Value,
    compiled: Result<Pattern, PatternError>,
}

impl EventPattern {
    pub fn new(source: Value) -> Self {
        let compiled = Pattern::compile(&source);
        Self { source, compiled }
    }

    /// The pattern as written.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Why the pattern does not compile, if it does not.
    pub fn problem(&self) -> Option<&PatternError> {
        self.compiled.as_ref().err()
    }

    /// Whether `document` matches. A pattern that does not compile (only
    /// possible in state written by another version: specs are checked
    /// when accepted) matches nothing.
    pub fn matches(&self, document: &Value) -> bool {
        self.compiled
            .as_ref()
            .is_ok_and(|pattern| pattern.matches(document))
    }
}

impl PartialEq for EventPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for EventPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EventPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::new)
    }
}

/// A compiled pattern, ready to match documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    fields: Vec<(String, FieldPattern)>,
}

#[derive(Debug, Clone, PartialEq)]
enum FieldPattern {
    Nested(Pattern),
    AnyOf(Vec<Matcher>),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Exact(Value),
    Prefix(String),
    Suffix(String),
    Exists(bool),
    AnythingBut(Vec<Value>),
    Numeric(Vec<(Comparison, f64)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Comparison {
    Less,
    LessOrEqual,
    Equal,
    GreaterOrEqual,
    Greater,
}

/// Why a pattern could not be compiled; `path` names the offending field.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum PatternError {
    #[error("pattern must be an object of fields")]
    NotAnObject,
    #[error("at `{path}`: expected a list of matchers or a nested object")]
    NotAList { path: String },
    #[error("at `{path}`: the list of matchers is empty")]
    EmptyList { path: String },
    #[error(
        "at `{path}`: unknown matcher `{name}` (expected prefix, suffix, exists, anything-but or numeric)"
    )]
    UnknownMatcher { path: String, name: String },
    #[error("at `{path}`: matcher `{name}` {problem}")]
    BadMatcher {
        path: String,
        name: String,
        problem: &'static str,
    },
}

impl Pattern {
    pub fn compile(value: &Value) -> Result<Self, PatternError> {
        let Value::Object(_) = value else {
            return Err(PatternError::NotAnObject);
        };
        compile_object(value, "")
    }

    /// Whether `document` matches every field of the pattern.
    pub fn matches(&self, document: &Value) -> bool {
        self.fields.iter().all(|(name, field)| {
            let value = document.get(name);
            match field {
                FieldPattern::Nested(inner) => value.is_some_and(|value| inner.matches(value)),
                FieldPattern::AnyOf(matchers) => {
                    matchers.iter().any(|matcher| matcher.matches(value))
                }
            }
        })
    }
}

fn compile_object(value: &Value, path: &str) -> Result<Pattern, PatternError> {
    let Value::Object(map) = value else {
        return Err(PatternError::NotAList { path: path.into() });
    };
    let mut fields = Vec::with_capacity(map.len());
    for (name, inner) in map {
        let inner_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let field = match inner {
            Value::Object(_) => FieldPattern::Nested(compile_object(inner, &inner_path)?),
            Value::Array(items) if items.is_empty() => {
                return Err(PatternError::EmptyList { path: inner_path });
            }
            Value::Array(items) => FieldPattern::AnyOf(
                items
                    .iter()
                    .map(|item| compile_matcher(item, &inner_path))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(PatternError::NotAList { path: inner_path }),
        };
        fields.push((name.clone(), field));
    }
    Ok(Pattern { fields })
}

fn compile_matcher(item: &Value, path: &str) -> Result<Matcher, PatternError> {
    let Value::Object(map) = item else {
        return Ok(Matcher::Exact(item.clone()));
    };
    let bad = |name: &str, problem| PatternError::BadMatcher {
        path: path.into(),
        name: name.into(),
        problem,
    };
    let (name, argument) = match map.iter().next() {
        Some(entry) if map.len() == 1 => entry,
        _ => return Err(bad("{..}", "must have exactly one key")),
    };
    match name.as_str() {
        "prefix" => argument
            .as_str()
            .map(|s| Matcher::Prefix(s.into()))
            .ok_or_else(|| bad(name, "takes a string")),
        "suffix" => argument
            .as_str()
            .map(|s| Matcher::Suffix(s.into()))
            .ok_or_else(|| bad(name, "takes a string")),
        "exists" => argument
            .as_bool()
            .map(Matcher::Exists)
            .ok_or_else(|| bad(name, "takes true or false")),
        "anything-but" => match argument {
            Value::Array(values) => Ok(Matcher::AnythingBut(values.clone())),
            Value::Object(_) => Err(bad(name, "takes a value or a list of values")),
            scalar => Ok(Matcher::AnythingBut(vec![scalar.clone()])),
        },
        "numeric" => compile_numeric(argument).ok_or_else(|| {
            bad(
                name,
                "takes pairs of an operator (<, <=, =, >=, >) and a number",
            )
        }),
        _ => Err(PatternError::UnknownMatcher {
            path: path.into(),
            name: name.clone(),
        }),
    }
}

fn compile_numeric(argument: &Value) -> Option<Matcher> {
    let items = argument.as_array()?;
    if items.is_empty() || items.len() % 2 != 0 {
        return None;
    }
    let mut bounds = Vec::new();
    for pair in items.chunks(2) {
        let comparison = match pair[0].as_str()? {
            "<" => Comparison::Less,
            "<=" => Comparison::LessOrEqual,
            "=" => Comparison::Equal,
            ">=" => Comparison::GreaterOrEqual,
            ">" => Comparison::Greater,
            _ => return None,
        };
        bounds.push((comparison, pair[1].as_f64()?));
    }
    Some(Matcher::Numeric(bounds))
}

impl Matcher {
    fn matches(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Matcher::Exists(expected), value) => value.is_some() == *expected,
            (_, None) => false,
            (_, Some(Value::Array(items))) => items.iter().any(|item| self.matches_scalar(item)),
            (_, Some(scalar)) => self.matches_scalar(scalar),
        }
    }

    fn matches_scalar(&self, value: &Value) -> bool {
        match self {
            Matcher::Exact(expected) => numbers_equal(expected, value).unwrap_or(expected == value),
            Matcher::Prefix(prefix) => value
                .as_str()
                .is_some_and(|s| s.starts_with(prefix.as_str())),
            Matcher::Suffix(suffix) => value.as_str().is_some_and(|s| s.ends_with(suffix.as_str())),
            Matcher::Exists(expected) => *expected,
            Matcher::AnythingBut(excluded) => !excluded
                .iter()
                .any(|other| numbers_equal(other, value).unwrap_or(other == value)),
            Matcher::Numeric(bounds) => value.as_f64().is_some_and(|number| {
                bounds.iter().all(|(comparison, bound)| match comparison {
                    Comparison::Less => number < *bound,
                    Comparison::LessOrEqual => number <= *bound,
                    Comparison::Equal => number == *bound,
                    Comparison::GreaterOrEqual => number >= *bound,
                    Comparison::Greater => number > *bound,
                })
            }),
        }
    }
}

/// `1` and `1.0` are the same number in a pattern.
fn numbers_equal(left: &Value, right: &Value) -> Option<bool> {
    Some(left.as_f64()? == right.as_f64()?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn matches(pattern: Value, document: Value) -> bool {
        Pattern::compile(&pattern).unwrap().matches(&document)
    }

    #[test]
    fn exact_values_in_a_list_are_an_or() {
        let pattern = json!({"type": ["host.process.exited", "host.lost"]});
        assert!(matches(pattern.clone(), json!({"type": "host.lost"})));
        assert!(!matches(pattern, json!({"type": "host.process.started"})));
    }

    #[test]
    fn fields_are_an_and_and_nest() {
        let pattern = json!({"type": ["t"], "data": {"service": ["clock"]}});
        assert!(matches(
            pattern.clone(),
            json!({"type": "t", "data": {"service": "clock"}})
        ));
        assert!(!matches(
            pattern.clone(),
            json!({"type": "t", "data": {"service": "web"}})
        ));
        assert!(!matches(pattern, json!({"type": "t"})));
    }

    #[test]
    fn prefix_suffix_exists_and_anything_but() {
        assert!(matches(
            json!({"type": [{"prefix": "host."}]}),
            json!({"type": "host.lost"})
        ));
        assert!(!matches(
            json!({"type": [{"prefix": "host."}]}),
            json!({"type": "app.x"})
        ));
        assert!(matches(
            json!({"subject": [{"suffix": ".log"}]}),
            json!({"subject": "a.log"})
        ));
        assert!(matches(
            json!({"data": {"signal": [{"exists": false}]}}),
            json!({"data": {}})
        ));
        assert!(!matches(
            json!({"data": {"signal": [{"exists": true}]}}),
            json!({"data": {}})
        ));
        assert!(matches(
            json!({"data": {"code": [{"anything-but": [0]}]}}),
            json!({"data": {"code": 137}})
        ));
        assert!(!matches(
            json!({"data": {"code": [{"anything-but": 0}]}}),
            json!({"data": {"code": 0.0}})
        ));
    }

    #[test]
    fn numeric_ranges_and_array_fields() {
        let pattern = json!({"data": {"cpu": [{"numeric": [">", 80, "<=", 100]}]}});
        assert!(matches(pattern.clone(), json!({"data": {"cpu": 80.5}})));
        assert!(!matches(pattern.clone(), json!({"data": {"cpu": 80}})));
        assert!(!matches(pattern, json!({"data": {"cpu": "high"}})));
        assert!(matches(json!({"tags": ["b"]}), json!({"tags": ["a", "b"]})));
    }

    #[test]
    fn malformed_patterns_name_the_field() {
        assert_eq!(
            Pattern::compile(&json!([1])),
            Err(PatternError::NotAnObject)
        );
        assert_eq!(
            Pattern::compile(&json!({"a": {"b": []}})),
            Err(PatternError::EmptyList { path: "a.b".into() })
        );
        assert_eq!(
            Pattern::compile(&json!({"a": 3})),
            Err(PatternError::NotAList { path: "a".into() })
        );
        let err = Pattern::compile(&json!({"a": [{"regex": "x"}]})).unwrap_err();
        assert_eq!(
            err,
            PatternError::UnknownMatcher {
                path: "a".into(),
                name: "regex".into()
            }
        );
        assert!(Pattern::compile(&json!({"a": [{"numeric": [">"]}]})).is_err());
    }
}
