//! Reading the CLI's JSON output in tests and benchmarks.

use serde_json::Value;

/// A timestamp as the CLI prints it (RFC 3339) in milliseconds since the
/// epoch.
pub fn millis(value: &Value) -> i64 {
    let text = value.as_str().expect("a timestamp");
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}
