//! A `[[log_pattern]]` compiled: which lines match, and what an event says
//! about a matching line.

use levee_common::agent_config::LogPattern;
use levee_common::event::MAX_EVENT_DATA_BYTES;
use regex::Regex;
use serde_json::{Map, Value, json};
use thiserror::Error;

/// Most bytes of a line, and of each capture, put in an event.
const MAX_LINE_IN_EVENT: usize = 4 * 1024;
const MAX_CAPTURE_IN_EVENT: usize = 1024;

#[derive(Debug, Error)]
#[error("log_pattern `{name}`: `regex` does not compile: {source}")]
pub struct MatcherError {
    pub name: String,
    pub source: regex::Error,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub config: LogPattern,
    regex: Regex,
}

/// A matching line, before the rate limit decides whether it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub line: String,
    pub captures: Map<String, Value>,
}

impl Matcher {
    pub fn compile(config: &LogPattern) -> Result<Self, MatcherError> {
        let regex = Regex::new(&config.regex).map_err(|source| MatcherError {
            name: config.name.clone(),
            source,
        })?;
        Ok(Self {
            config: config.clone(),
            regex,
        })
    }

    /// Compiles every pattern, failing on the first that does not compile.
    pub fn compile_all(configs: &[LogPattern]) -> Result<Vec<Self>, MatcherError> {
        configs.iter().map(Self::compile).collect()
    }

    /// The line, cut for an event, and its named groups that took part in
    /// the match, if it matches.
    pub fn matches(&self, line: &str) -> Option<Capture> {
        let found = self.regex.captures(line)?;
        let captures = self
            .regex
            .capture_names()
            .flatten()
            .filter_map(|name| {
                let text = found.name(name)?.as_str();
                Some((
                    name.to_owned(),
                    Value::from(cut(text, MAX_CAPTURE_IN_EVENT)),
                ))
            })
            .collect();
        Some(Capture {
            line: cut(line, MAX_LINE_IN_EVENT).to_owned(),
            captures,
        })
    }

    /// The event data for a match sent after `suppressed` were held back.
    pub fn event_data(&self, found: Capture, suppressed: u64) -> Value {
        let mut data = json!({
            "pattern": self.config.name,
            "path": self.config.path.display().to_string(),
            "line": found.line,
            "captures": found.captures,
        });
        if suppressed > 0 {
            data["suppressed"] = suppressed.into();
        }
        // Escaping (a control byte is six bytes in JSON) and many groups
        // could pass the controllers' limit, which would refuse the event:
        // keep the line, shortened, and say the captures were dropped.
        if data.to_string().len() > MAX_EVENT_DATA_BYTES / 2 {
            data["captures"] = json!({});
            data["captures_dropped"] = true.into();
            if let Some(line) = data["line"].as_str() {
                data["line"] = cut(line, MAX_LINE_IN_EVENT / 4).into();
            }
        }
        data
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(regex: &str) -> Matcher {
        Matcher::compile(&LogPattern {
            name: "http-5xx".into(),
            path: "/var/log/access.log".into(),
            regex: regex.into(),
            event_type: "host.log.matched".into(),
            max_events_per_minute: 60,
            poll_ms: 250,
        })
        .unwrap()
    }

    #[test]
    fn a_match_carries_its_named_captures() {
        let pattern =
            pattern(r#""GET (?P<path>\S+) HTTP/1\.1" (?P<status>5\d\d)(?: (?P<ms>\d+)ms)?"#);
        assert_eq!(pattern.matches(r#""GET / HTTP/1.1" 200"#), None);
        let found = pattern
            .matches(r#"10.0.0.1 "GET /cart HTTP/1.1" 503"#)
            .unwrap();
        let data = pattern.event_data(found, 0);
        assert_eq!(
            data,
            json!({
                "pattern": "http-5xx",
                "path": "/var/log/access.log",
                "line": r#"10.0.0.1 "GET /cart HTTP/1.1" 503"#,
                // `ms` took no part in the match: absent, not null.
                "captures": { "path": "/cart", "status": "503" },
            })
        );
    }

    #[test]
    fn held_back_matches_are_counted_in_the_next_event() {
        let pattern = pattern("ERROR");
        let found = pattern.matches("ERROR disk").unwrap();
        assert_eq!(pattern.event_data(found, 41)["suppressed"], 41);
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let pattern = pattern("(?P<all>é+)");
        let line = "é".repeat(10_000);
        let found = pattern.matches(&line).unwrap();
        assert_eq!(found.line.len(), MAX_LINE_IN_EVENT);
        assert_eq!(
            found.captures["all"].as_str().unwrap().len(),
            MAX_CAPTURE_IN_EVENT
        );
        // An odd limit falls back to the previous boundary.
        assert_eq!(cut("éé", 3), "é");
    }

    #[test]
    fn data_stays_well_under_the_event_limit() {
        // 64 nested groups, each capturing the whole line.
        let regex = (0..64).fold(".+".to_owned(), |inner, n| format!("(?P<g{n}>{inner})"));
        let pattern = pattern(&regex);
        let line = "\u{1}".repeat(16 * 1024);
        let data = pattern.event_data(pattern.matches(&line).unwrap(), 0);
        assert!(
            data.to_string().len() <= MAX_EVENT_DATA_BYTES / 2,
            "{}",
            data.to_string().len()
        );
        assert_eq!(data["captures_dropped"], true);
    }

    #[test]
    fn a_bad_regex_names_the_pattern_and_the_problem() {
        let err = Matcher::compile(&LogPattern {
            name: "broken".into(),
            path: "/var/log/a".into(),
            regex: "(unclosed".into(),
            event_type: "host.log.matched".into(),
            max_events_per_minute: 60,
            poll_ms: 250,
        })
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("log_pattern `broken`: `regex` does not compile:"),
            "{message}"
        );
        assert!(message.contains("unclosed group"), "{message}");
    }
}
