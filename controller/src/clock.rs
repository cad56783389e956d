//! The controller's one reading of wall-clock time.
//!
//! Applying the replicated state never reads a clock: times come from the
//! command that the leader proposed. Everything that stamps a command, and
//! the CLI, reads the time here, so there is one place to change (or to
//! inject a test clock) when the leader's clock must be checked or skewed.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// Milliseconds since the Unix epoch by this host's clock.
pub fn now_ms() -> i64 {
    wall()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// This host's wall-clock time, for certificate validity.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from(wall())
}

#[allow(clippy::disallowed_methods)] // The one place the wall clock is read.
fn wall() -> SystemTime {
    SystemTime::now()
}
