//! The agent's one reading of wall-clock time (event times, task report
//! times). Durations use `Instant`, which no clock change moves.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by this host's clock.
#[allow(clippy::disallowed_methods)] // The one place the wall clock is read.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
